"""The test bed's mirrors serve what registry.ollama.ai and GitHub releases serve, the way they serve it."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests
import zstandard
from gguf import GGUFReader

from testbed.mirrors import Mirrors, start_mirrors
from testbed.registry import (
    CONFIG_V1,
    MANIFEST_V2,
    MEDIA_ADAPTER,
    MEDIA_DRAFT,
    MEDIA_JSON,
    MEDIA_LICENSE,
    MEDIA_MESSAGES,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_PROJECTOR,
    MEDIA_PROMPT,
    MEDIA_SYSTEM,
    MEDIA_TEMPLATE,
    MEDIA_TENSOR,
    Blob,
    ModelEntry,
    sha256_digest,
)
from testbed.releases import parse_checksums

pytestmark = pytest.mark.mirrors

ACCEPT_MANIFEST = {"Accept": MANIFEST_V2}


def _get(url: str, **kwargs: object) -> requests.Response:
    response = requests.get(url, timeout=30, **kwargs)  # type: ignore[arg-type]
    response.raise_for_status()
    return response


# --- registry ---


def test_seeded_tags(mirrors: Mirrors) -> None:
    url = mirrors.registry_url
    repositories = _get(f"{url}/v2/_catalog").json()["repositories"]
    # The session's registry also holds what image tests push (open-webui/open-webui): the zoo is a subset.
    assert set(mirrors.catalog.repositories()) <= set(repositories)
    repositories = mirrors.catalog.repositories()
    assert {"acme/tiny-assistant", "library/tinyllama", "library/tinyqwen", "library/llava"} <= set(repositories)
    for repository in repositories:
        served = _get(f"{url}/v2/{repository}/tags/list").json()["tags"]
        assert sorted(served) == mirrors.catalog.tags(repository)
    assert sorted(_get(f"{url}/v2/library/tinyllama/tags/list").json()["tags"]) == [
        "1.1b",
        "1.1b-q4_0",
        "latest",
    ]
    assert sorted(_get(f"{url}/v2/library/tinyqwen/tags/list").json()["tags"]) == ["0.5b", "latest"]
    assert _get(f"{url}/v2/acme/tiny-assistant/tags/list").json()["tags"] == ["v1"]


def test_manifests_served_with_media_types_and_digest(mirrors: Mirrors) -> None:
    assert len(mirrors.catalog) == 24
    for entry in mirrors.catalog:
        response = _get(f"{mirrors.registry_url}/v2/{entry.repository}/manifests/{entry.tag}", headers=ACCEPT_MANIFEST)
        assert response.headers["Content-Type"] == MANIFEST_V2
        assert response.content == entry.manifest
        assert response.headers["Docker-Content-Digest"] == sha256_digest(response.content) == entry.digest
        manifest = json.loads(response.content)
        assert manifest["schemaVersion"] == 2
        assert manifest["mediaType"] == MANIFEST_V2
        assert manifest["config"]["mediaType"] == CONFIG_V1
        assert [layer["mediaType"] for layer in manifest["layers"]] == [layer.media_type for layer in entry.layers]
        if entry.kind not in ("tensor", "cloud"):
            assert manifest["layers"][0]["mediaType"] == MEDIA_MODEL
        # The manifest also answers by digest, as ollama pulls pinned models.
        by_digest = _get(
            f"{mirrors.registry_url}/v2/{entry.repository}/manifests/{entry.digest}", headers=ACCEPT_MANIFEST
        )
        assert by_digest.content == entry.manifest


def test_tags_and_layers(mirrors: Mirrors) -> None:
    catalog = mirrors.catalog
    assert catalog["tinyllama"].digest == catalog["tinyllama:1.1b"].digest
    assert catalog["tinyllama:1.1b-q4_0"].digest != catalog["tinyllama"].digest
    assert catalog["tinyqwen:latest"].digest == catalog["library/tinyqwen:0.5b"].digest
    assistant = catalog["acme/tiny-assistant:v1"]
    assert {layer.media_type for layer in assistant.layers} == {
        MEDIA_MODEL,
        MEDIA_TEMPLATE,
        MEDIA_SYSTEM,
        MEDIA_LICENSE,
        MEDIA_PARAMS,
        MEDIA_MESSAGES,
    }
    messages = json.loads(assistant.layer(MEDIA_MESSAGES).content or b"")
    assert messages and all(set(message) == {"role", "content"} for message in messages)
    params = json.loads(catalog["tinyllama"].layer(MEDIA_PARAMS).content or b"")
    assert params["stop"] and params["num_ctx"] == 2048
    template = (catalog["tinyllama"].layer(MEDIA_TEMPLATE).content or b"").decode()
    assert "{{ .System }}" in template and "{{ .Content }}" in template


def test_config_blob_is_ollama_config(mirrors: Mirrors) -> None:
    for entry in mirrors.catalog:
        response = _get(f"{mirrors.registry_url}/v2/{entry.repository}/blobs/{entry.config.digest}")
        config = json.loads(response.content)
        assert config == entry.config_json
        assert config.get("requires", "") == entry.requires
        assert tuple(config.get("capabilities", entry.capabilities)) == entry.capabilities
        if entry.kind in ("tensor", "cloud"):
            continue  # checked in test_zoo_manifests_and_configs_as_served
        assert config["model_format"] == "gguf"
        assert config["model_family"] in config["model_families"]
        assert config["os"] == "linux" and config["architecture"] == "amd64"
        # Configs pushed before ollama 0.32.7 carry rootfs; newer ones do not (commit 5a173edb6).
        if "rootfs" in config:
            assert config["rootfs"] == {"type": "layers", "diff_ids": [layer.digest for layer in entry.layers]}
    assert json.loads(mirrors.catalog["tinyllama:1.1b-q4_0"].config.content or b"")["file_type"] == "Q4_0"


def test_blobs_by_digest(mirrors: Mirrors) -> None:
    for entry in mirrors.catalog:
        for blob in entry.blobs():
            response = _get(f"{mirrors.registry_url}/v2/{entry.repository}/blobs/{blob.digest}")
            assert int(response.headers["Content-Length"]) == blob.size == len(response.content)
            assert sha256_digest(response.content) == blob.digest
            assert response.headers["Docker-Content-Digest"] == blob.digest
            if blob.content is not None:
                assert response.content == blob.content
            assert response.content == mirrors.catalog.blob_paths[blob.digest].read_bytes()


def test_blob_range_request(mirrors: Mirrors) -> None:
    entry = mirrors.catalog["tinyqwen"]
    model = entry.layer(MEDIA_MODEL)
    expected = model.path.read_bytes()
    start, end = 1000, 70_000
    response = requests.get(
        f"{mirrors.registry_url}/v2/{entry.repository}/blobs/{model.digest}",
        headers={"Range": f"bytes={start}-{end}"},
        timeout=30,
    )
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{model.size}"
    assert response.content == expected[start : end + 1]


def test_blobs_are_shared(mirrors: Mirrors) -> None:
    catalog = mirrors.catalog
    license_digests = {entry.layer(MEDIA_LICENSE).digest for entry in catalog if entry.layers_of(MEDIA_LICENSE)}
    assert len(license_digests) == 1
    assert catalog["tinyqwen"].layer(MEDIA_TEMPLATE) == catalog["acme/tiny-assistant:v1"].layer(MEDIA_TEMPLATE)
    shared_model = catalog["tinyqwen"].layer(MEDIA_MODEL)
    assert catalog["acme/tiny-assistant:v1"].layer(MEDIA_MODEL).digest == shared_model.digest
    # Distribution stores one copy per digest, whichever repositories link it.
    stored = list(mirrors.registry.data_dir.rglob(f"blobs/sha256/*/{shared_model.digest.split(':')[1]}/data"))
    assert len(stored) == 1
    for repository in ("library/tinyqwen", "acme/tiny-assistant"):
        response = requests.head(f"{mirrors.registry_url}/v2/{repository}/blobs/{shared_model.digest}", timeout=30)
        assert response.status_code == 200


def test_unknown_model_is_404(mirrors: Mirrors) -> None:
    response = requests.get(
        f"{mirrors.registry_url}/v2/library/nosuchmodel/manifests/latest", headers=ACCEPT_MANIFEST, timeout=30
    )
    assert response.status_code == 404
    # Distribution 2.8 answers MANIFEST_UNKNOWN for a repository it never saw; newer ones NAME_UNKNOWN.
    assert response.json()["errors"][0]["code"] in {"MANIFEST_UNKNOWN", "NAME_UNKNOWN"}


def _string_field(reader: GGUFReader, key: str) -> str:
    field = reader.fields[key]
    return bytes(field.parts[field.data[0]]).decode()


def test_ggufs_read_back(mirrors: Mirrors) -> None:
    chat = mirrors.catalog.by_kind("chat")
    gguf_paths = {entry.gguf_path for entry in chat if entry.gguf_path is not None}
    assert len(gguf_paths) == 3
    for path in gguf_paths:
        assert 400_000 < path.stat().st_size < 3_000_000
        reader = GGUFReader(path)
        assert _string_field(reader, "general.architecture") == "llama"
        tokens_field = reader.fields["tokenizer.ggml.tokens"]
        tokens = [bytes(tokens_field.parts[index]).decode() for index in tokens_field.data]
        assert tokens[:3] == ["<unk>", "<s>", "</s>"]
        assert "<0x0A>" in tokens and "▁the" in tokens
        assert len(tokens) > 300
        assert "messages" in _string_field(reader, "tokenizer.chat_template")
        assert reader.tensors[0].name == "token_embd.weight"
        assert int(reader.tensors[0].shape[1]) == len(tokens)


def test_ggufs_are_deterministic(tmp_path: Path, mirrors: Mirrors) -> None:
    from testbed.gguf_models import write_tiny_gguf

    first = write_tiny_gguf(tmp_path / "a.gguf", name="same", seed=5)
    second = write_tiny_gguf(tmp_path / "b.gguf", name="same", seed=5)
    other = write_tiny_gguf(tmp_path / "c.gguf", name="same", seed=6)
    assert first.read_bytes() == second.read_bytes() != other.read_bytes()
    # The seeded model equals a fresh write with the same arguments, so registry digests are stable.
    entry = mirrors.catalog["tinyllama"]
    rewritten = write_tiny_gguf(tmp_path / "tinyllama.gguf", name="TinyLlama 1.1B Chat", seed=11)
    assert sha256_digest(rewritten.read_bytes()) == entry.layer(MEDIA_MODEL).digest


# --- the model zoo: every kind, as the registry serves it ---

ZOO_KINDS = {
    "chat": [
        "tinyllama:latest",
        "tinyllama:1.1b",
        "tinyllama:1.1b-q4_0",
        "tinyqwen:latest",
        "tinyqwen:0.5b",
        "acme/tiny-assistant:v1",
    ],
    "vision-projector": ["llava:7b", "llava:latest", "moondream:latest", "moondream:1.8b"],
    "vision-inline": ["gemma3:4b", "qwen2.5vl:3b"],
    "split": ["acme/split-llama:v1"],
    "embedding": ["nomic-embed-text:latest", "nomic-embed-text:v1.5"],
    "tools-thinking": ["qwen3:0.6b", "qwen2.5:0.5b"],
    "adapter": ["acme/tiny-lora:v1"],
    "draft": ["acme/speculative-qwen:v1"],
    "tensor": ["acme/tiny-safetensors:v1"],
    "requires-ok": ["acme/requires-030:v1"],
    "requires-too-new": ["acme/requires-099:v1"],
    "legacy-prompt": ["acme/legacy-prompt:v1"],
    "cloud": ["gpt-oss:120b-cloud"],
}


def test_zoo_has_every_kind(mirrors: Mirrors) -> None:
    catalog = mirrors.catalog
    assert catalog.kinds() == ZOO_KINDS
    assert [entry.capabilities for entry in catalog.by_kind("tools-thinking")] == [
        ("completion", "tools", "thinking"),
        ("completion", "tools"),
    ]
    assert {entry.capabilities for entry in catalog.by_kind("vision-projector") + catalog.by_kind("vision-inline")} == {
        ("completion", "vision")
    }
    assert catalog["nomic-embed-text"].capabilities == ("embedding",)
    assert catalog["nomic-embed-text"].embedding_length == 64
    assert [entry.short_name for entry in catalog if entry.restore_only] == [
        "acme/split-llama:v1",
        "acme/tiny-safetensors:v1",
    ]
    with pytest.raises(KeyError):
        catalog.by_kind("no-such-kind")


def _served_manifest(mirrors: Mirrors, entry: ModelEntry) -> dict[str, Any]:
    url = f"{mirrors.registry_url}/v2/{entry.repository}/manifests/{entry.tag}"
    response = _get(url, headers=ACCEPT_MANIFEST)
    assert response.content == entry.manifest
    manifest: dict[str, Any] = json.loads(response.content)
    return manifest


def _served_config(mirrors: Mirrors, entry: ModelEntry) -> dict[str, Any]:
    response = _get(f"{mirrors.registry_url}/v2/{entry.repository}/blobs/{entry.config.digest}")
    config: dict[str, Any] = json.loads(response.content)
    assert config == entry.config_json
    return config


def _media_types(manifest: dict[str, Any]) -> list[str]:
    return [layer["mediaType"] for layer in manifest["layers"]]


def test_zoo_manifests_and_configs_as_served(mirrors: Mirrors) -> None:
    catalog = mirrors.catalog
    for entry in catalog.by_kind("vision-projector"):
        manifest = _served_manifest(mirrors, entry)
        assert _media_types(manifest)[:2] == [MEDIA_MODEL, MEDIA_PROJECTOR]
        assert _served_config(mirrors, entry)["model_families"][-1] == "clip"
    for entry in catalog.by_kind("vision-inline"):
        assert _media_types(_served_manifest(mirrors, entry)).count(MEDIA_PROJECTOR) == 0

    split = catalog["acme/split-llama:v1"]
    assert _media_types(_served_manifest(mirrors, split))[:4] == [MEDIA_MODEL] * 3 + [MEDIA_TEMPLATE]
    assert "rootfs" not in _served_config(mirrors, split)  # written by ollama >= 0.32.7

    embed = catalog["nomic-embed-text:v1.5"]
    assert _media_types(_served_manifest(mirrors, embed)) == [MEDIA_MODEL, MEDIA_LICENSE, MEDIA_PARAMS]
    assert _served_config(mirrors, embed)["model_family"] == "nomic-bert"

    lora = catalog["acme/tiny-lora:v1"]
    assert _media_types(_served_manifest(mirrors, lora))[:2] == [MEDIA_MODEL, MEDIA_ADAPTER]
    assert lora.layer(MEDIA_MODEL) == catalog["tinyllama"].layer(MEDIA_MODEL)  # the adapter's base, shared

    draft = catalog["acme/speculative-qwen:v1"]
    assert _media_types(_served_manifest(mirrors, draft))[:2] == [MEDIA_MODEL, MEDIA_DRAFT]
    assert _served_config(mirrors, draft)["draft"] == {"model_format": "gguf", "architecture": "llama"}

    tensor = catalog["acme/tiny-safetensors:v1"]
    manifest = _served_manifest(mirrors, tensor)
    assert set(_media_types(manifest)) == {MEDIA_TENSOR, MEDIA_JSON}
    assert all(layer["name"] for layer in manifest["layers"])
    assert next(layer["name"] for layer in manifest["layers"] if layer["mediaType"] == MEDIA_JSON) == "config.json"
    assert _served_config(mirrors, tensor) == {
        "model_format": "safetensors",
        "model_family": "",
        "model_families": None,
        "model_type": "",
        "file_type": "",
        "requires": "0.19.0",
        "capabilities": ["completion"],
        "architecture": "",
        "os": "",
    }
    assert tensor.gguf_path is None

    assert _served_config(mirrors, catalog["acme/requires-030:v1"])["requires"] == "0.30.0"
    assert _served_config(mirrors, catalog["acme/requires-099:v1"])["requires"] == "0.99.0"
    assert catalog["acme/requires-099:v1"].requires == "0.99.0" and catalog["tinyllama"].requires == ""

    legacy = catalog["acme/legacy-prompt:v1"]
    assert _media_types(_served_manifest(mirrors, legacy)) == [MEDIA_MODEL, MEDIA_PROMPT, MEDIA_LICENSE]
    assert "{{ .Prompt }}" in (legacy.layer(MEDIA_PROMPT).content or b"").decode()

    cloud = catalog["gpt-oss:120b-cloud"]
    assert _served_manifest(mirrors, cloud)["layers"] == []
    config = _served_config(mirrors, cloud)
    assert (config["remote_host"], config["remote_model"]) == ("https://ollama.com:443", "gpt-oss:120b")
    assert tuple(config["capabilities"]) == cloud.capabilities and config["model_format"] == ""
    assert cloud.config.size < 400 and cloud.gguf_path is None


def test_zoo_ggufs_served_read_back(mirrors: Mirrors, tmp_path: Path) -> None:
    """Every GGUF layer fetched from the registry reads back with the keys that decide its role."""
    seen: dict[str, Blob] = {}
    for entry in mirrors.catalog:
        for blob in entry.layers:
            if blob.media_type in (MEDIA_MODEL, MEDIA_PROJECTOR, MEDIA_ADAPTER, MEDIA_DRAFT):
                seen.setdefault(blob.digest, blob)
                if blob.media_type == MEDIA_MODEL and blob == entry.layer(MEDIA_MODEL):
                    reader = _fetch_gguf(mirrors, entry.repository, blob, tmp_path)
                    arch = _string_field(reader, "general.architecture")
                    assert int(reader.fields[f"{arch}.embedding_length"].parts[-1][0]) == entry.embedding_length
                    assert (f"{arch}.pooling_type" in reader.fields) == ("embedding" in entry.capabilities)
                    assert (f"{arch}.vision.block_count" in reader.fields) == (entry.kind == "vision-inline")
    assert len(seen) == 17
    for blob in seen.values():
        repository = next(e.repository for e in mirrors.catalog if blob in e.layers)
        reader = _fetch_gguf(mirrors, repository, blob, tmp_path)
        if blob.media_type == MEDIA_PROJECTOR:
            assert _string_field(reader, "general.architecture") == "clip"
            assert bool(reader.fields["clip.has_vision_encoder"].parts[-1][0])
        elif blob.media_type == MEDIA_ADAPTER:
            assert _string_field(reader, "general.type") == "adapter"
            assert _string_field(reader, "adapter.type") == "lora"
        else:
            assert "tokenizer.ggml.tokens" in reader.fields or "split.no" in reader.fields


def _fetch_gguf(mirrors: Mirrors, repository: str, blob: Blob, tmp_path: Path) -> GGUFReader:
    data = _get(f"{mirrors.registry_url}/v2/{repository}/blobs/{blob.digest}").content
    assert sha256_digest(data) == blob.digest
    path = tmp_path / blob.digest.replace(":", "-")
    path.write_bytes(data)
    return GGUFReader(path)


# --- releases ---


def _unpack(data: bytes, filename: str) -> tarfile.TarFile:
    if filename.endswith(".tar.zst"):
        data = zstandard.ZstdDecompressor().decompress(data)
        return tarfile.open(fileobj=io.BytesIO(data), mode="r:")
    return tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")


def test_release_redirects_like_github(mirrors: Mirrors) -> None:
    asset = mirrors.releases.assets[0]
    response = requests.get(f"{mirrors.release_base_url}/{asset.url_path}", allow_redirects=False, timeout=30)
    assert response.status_code == 302
    location = response.headers["Location"]
    assert "/releases/download/" not in location and location.endswith(
        f"filename%3D{asset.filename}&rsct=application%2Foctet-stream"
    )
    followed = _get(location)
    assert followed.headers["Content-Type"] == "application/octet-stream"
    assert int(followed.headers["Content-Length"]) == asset.size


@pytest.mark.parametrize(
    ("tag", "filename"),
    [
        ("v0.13.5", "ollama-linux-amd64.tar.zst"),  # the old version has no .tar.zst
        ("v0.14.1", "ollama-linux-amd64.tgz"),  # the new version has no .tgz
        ("v9.9.9", "ollama-linux-amd64.tgz"),
    ],
)
def test_missing_release_asset_is_404(mirrors: Mirrors, tag: str, filename: str) -> None:
    response = requests.get(f"{mirrors.release_base_url}/{tag}/{filename}", allow_redirects=False, timeout=30)
    assert response.status_code == 404


def test_release_archives_match_sha256sum(mirrors: Mirrors) -> None:
    from testbed import config

    styles = {}
    for version in config.OLLAMA_VERSIONS:
        sums = parse_checksums(_get(f"{mirrors.release_base_url}/v{version}/sha256sum.txt").text)
        raw_lines = _get(f"{mirrors.release_base_url}/v{version}/sha256sum.txt").text.splitlines()
        assert all(line.split("  ")[1].startswith("./ollama-linux-") for line in raw_lines)
        assert set(sums) == {a.filename for a in mirrors.releases.assets if a.version == version}
        for filename, digest in sums.items():
            served = _get(f"{mirrors.release_base_url}/v{version}/{filename}").content
            assert hashlib.sha256(served).hexdigest() == digest
        styles[version] = {name.split(".", 1)[1] for name in sums}
    assert styles[config.OLLAMA_VERSION_TGZ] == {"tgz"}
    assert styles[config.OLLAMA_VERSION_ZST] == {"tar.zst"}


def test_release_archive_layout(mirrors: Mirrors) -> None:
    """The 0.13/0.14 archives; today's (base + overlays) are checked in test_releases.py."""
    from testbed import config

    older = [a for a in mirrors.releases.assets if a.version != config.OLLAMA_VERSION_CURRENT]
    assert {(a.version, a.arch) for a in older} == {
        (version, arch) for version in ("0.13.5", "0.14.1") for arch in ("amd64", "arm64")
    }
    for asset in older:
        data = _get(f"{mirrors.release_base_url}/{asset.url_path}").content
        with _unpack(data, asset.filename) as archive:
            members = {member.name.rstrip("/"): member for member in archive.getmembers()}
            binary = members["bin/ollama"]
            assert binary.isfile() and binary.mode & 0o777 == 0o755
            assert binary.uid == binary.gid == 0
            # bin/ollama is the stand-in zipapp, its version baked in as ollama_standin/_version.py.
            script = archive.extractfile(binary).read()  # type: ignore[union-attr]
            assert script.startswith(b"#!")
            with zipfile.ZipFile(io.BytesIO(script)) as app:
                assert f'"{asset.version}"' in app.read("ollama_standin/_version.py").decode()
            assert members["lib/ollama"].isdir()
            libraries = [name for name in members if name.startswith("lib/ollama/") and members[name].isfile()]
            assert "lib/ollama/libggml-base.so" in libraries
            assert "lib/ollama/cuda_v12/libggml-cuda.so" in libraries
            for library in libraries:
                assert archive.extractfile(members[library]).read().startswith(b"PLACEHOLDER ")  # type: ignore[union-attr]


def test_release_range_request(mirrors: Mirrors) -> None:
    asset = mirrors.releases.asset("0.14.1", "amd64")
    expected = asset.path.read_bytes()
    response = requests.get(
        f"{mirrors.release_base_url}/{asset.url_path}", headers={"Range": "bytes=4096-"}, timeout=30
    )
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes 4096-{asset.size - 1}/{asset.size}"
    assert response.content == expected[4096:]


def test_latest_download_redirects_to_newest(mirrors: Mirrors) -> None:
    response = _get(f"{mirrors.releases_server.url}/ollama/ollama/releases/latest/download/sha256sum.txt")
    from testbed.releases import latest_version

    assert f"/v{latest_version()}/" in response.history[0].headers["Location"]
    assert "ollama-linux-amd64.tar.zst" in response.text


# --- lifecycle ---


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes (and should have been reaped by Popen.wait anyway).
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


def _our_processes(state_dir: Path) -> list[int]:
    """PIDs of any process whose command line mentions this mirror's state dir (nginx workers included)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(state_dir) in cmdline:
                found.append(int(proc.name))
    return found


def test_start_and_stop_leave_nothing_running(tmp_path: Path) -> None:
    started = start_mirrors(tmp_path / "mirrors")
    pids = started.pids
    nginx_workers = [
        int(pid)
        for pid in (
            Path(f"/proc/{started.releases_server.pid}/task/{started.releases_server.pid}/children").read_text().split()
        )
    ]
    assert nginx_workers
    try:
        assert requests.get(f"{started.registry_url}/v2/", timeout=10).status_code == 200
        assert all(_alive(pid) for pid in pids)
    finally:
        started.stop()
    assert not any(_alive(pid) for pid in (*pids, *nginx_workers))
    assert _our_processes(tmp_path) == []
    started.stop()  # idempotent


# --- token auth (ghcr.io-style anonymous pull tokens) ---


def test_token_auth_challenges_then_serves(mirrors_token_auth: Mirrors) -> None:
    from testbed.registry import parse_bearer_challenge

    mirrors = mirrors_token_auth
    issuer = mirrors.token_issuer
    assert issuer is not None
    entry = mirrors.catalog["tinyllama:1.1b"]
    manifest_url = f"{mirrors.registry_url}/v2/{entry.repository}/manifests/{entry.tag}"

    refused = requests.get(manifest_url, headers=ACCEPT_MANIFEST, timeout=30)
    assert refused.status_code == 401
    challenge = parse_bearer_challenge(refused.headers["WWW-Authenticate"])
    assert challenge["realm"] == issuer.realm
    assert challenge["service"] == issuer.service
    assert challenge["scope"] == f"repository:{entry.repository}:pull"

    # Anonymous token, exactly as a client asks the realm the challenge named.
    token = _get(challenge["realm"], params={"service": challenge["service"], "scope": challenge["scope"]}).json()
    assert token["token"] == token["access_token"] and token["expires_in"] > 0
    bearer = {"Authorization": f"Bearer {token['token']}"}
    served = _get(manifest_url, headers={**ACCEPT_MANIFEST, **bearer})
    assert served.content == entry.manifest
    assert served.headers["Docker-Content-Digest"] == entry.digest
    model = entry.layer(MEDIA_MODEL)
    blob = requests.get(
        f"{mirrors.registry_url}/v2/{entry.repository}/blobs/{model.digest}",
        headers={**bearer, "Range": "bytes=0-99"},
        timeout=30,
    )
    assert blob.status_code == 206 and blob.content == model.path.read_bytes()[:100]

    # The pull token is scoped: another repository and pushing are refused.
    other = requests.get(
        f"{mirrors.registry_url}/v2/library/tinyqwen/manifests/latest",
        headers={**ACCEPT_MANIFEST, **bearer},
        timeout=30,
    )
    assert other.status_code == 401
    push_token = _get(
        challenge["realm"],
        params={"service": challenge["service"], "scope": f"repository:{entry.repository}:pull,push"},
    ).json()["token"]
    upload = requests.post(
        f"{mirrors.registry_url}/v2/{entry.repository}/blobs/uploads/",
        headers={"Authorization": f"Bearer {push_token}"},
        timeout=30,
    )
    assert upload.status_code == 401
    assert issuer.issued[-1]["access"] == [{"type": "repository", "name": entry.repository, "actions": ["pull"]}]


def test_token_issuer_rejects_bad_credentials(mirrors_token_auth: Mirrors) -> None:
    issuer = mirrors_token_auth.token_issuer
    assert issuer is not None
    response = requests.get(
        issuer.realm, params={"service": issuer.service}, auth=("testbed-seeder", "wrong"), timeout=30
    )
    assert response.status_code == 401


def test_release_binary_reports_its_version(mirrors: Mirrors, tmp_path: Path) -> None:
    """Unpacked like install.sh does (tar -x into a prefix), bin/ollama runs and knows its version."""
    for version in ("0.13.5", "0.14.1"):
        asset = mirrors.releases.asset(version, "amd64")
        data = _get(f"{mirrors.release_base_url}/{asset.url_path}").content
        prefix = tmp_path / version
        with _unpack(data, asset.filename) as archive:
            archive.extractall(prefix, filter="tar")
        binary = prefix / "bin" / "ollama"
        assert os.access(binary, os.X_OK)
        result = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30, check=True)
        assert version in result.stdout
