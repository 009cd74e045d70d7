"""`bundle build` against the test bed's real docker-registry and nginx mirrors (no hand-written HTTP fakes)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import yaml

from ollama_airgap.cache import BlobCache
from ollama_airgap.cli.main import main
from ollama_airgap.hashing import sha256_file
from ollama_airgap.names import parse_model_name
from testbed.config import OLLAMA_VERSION_CURRENT, OLLAMA_VERSION_ZST
from testbed.faultproxy import Fault, fault_proxy
from testbed.mirrors import Mirrors
from testbed.registry import ModelEntry, RegistryPusher, start_registry
from testbed.standin_server import Standin, start_standin, write_standin
from testbed.zoo import KINDS

pytestmark = pytest.mark.mirrors

MODELS = ["tinyllama:latest", "tinyllama:1.1b", "tinyllama:1.1b-q4_0", "tinyqwen:0.5b", "acme/tiny-assistant:v1"]


def mirror_args(mirrors: Mirrors) -> list[str]:
    github = urlsplit(mirrors.release_base_url)
    return [
        "--mirror",
        f"registry.ollama.ai={mirrors.registry_url}",
        "--mirror",
        f"github.com={github.scheme}://{github.netloc}",
    ]


def write_spec(path: Path, version: str = "0.14.1", models: list[str] | None = None, **extra: object) -> Path:
    spec = {"name": "demo", "ollama": {"version": version, "architectures": ["amd64", "arm64"]}}
    spec["models"] = MODELS if models is None else models
    spec.update(extra)
    path.write_text(yaml.safe_dump(spec))
    return path


def build(
    tmp_path: Path, mirrors: Mirrors, spec: Path, cache: Path, out: Path, *more: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["build", str(spec), "--cache", str(cache), "-o", str(out), "--json", *mirror_args(mirrors), *more])
    captured = capsys.readouterr()
    result = json.loads(captured.out) if captured.out.strip() else {}
    result["stderr"] = captured.err
    return code, result


@pytest.fixture(scope="module")
def first_build(mirrors: Mirrors, tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("build")
    spec = write_spec(tmp / "demo.yaml")
    cache, out = tmp / "cache", tmp / "demo.tar"
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("bundle")),
            "build",
            str(spec),
            "--cache",
            str(cache),
            "-o",
            str(out),
            "--json",
            *mirror_args(mirrors),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", "progress bars must stay quiet when not a TTY"
    return {"tmp": tmp, "spec": spec, "cache": cache, "out": out, "result": json.loads(proc.stdout)}


def test_full_build_is_verified_and_complete(first_build: dict, mirrors: Mirrors) -> None:
    out: Path = first_build["out"]
    assert main(["verify", str(out), "-q"]) == 0
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
    # .tar.zst releases travel as plain tars (issue 13: hosts need no zstd)
    assert "ollama/0.14.1/ollama-linux-amd64.tar" in names and "ollama/0.14.1/ollama-linux-arm64.tar" in names
    assert not any(n.endswith(".zst") for n in names)
    assert "ollama/0.14.1/sha256sum.txt" in names
    for model in MODELS:
        entry = mirrors.catalog[model]
        repo, tag = entry.repository, entry.tag
        assert f"models/manifests/registry.ollama.ai/{repo}/{tag}" in names
        assert f"modelfiles/registry.ollama.ai/{repo}/{tag}.Modelfile" in names
        for blob in entry.blobs():
            assert f"models/blobs/sha256-{blob.digest[7:]}" in names
    with tarfile.open(out) as tar:
        all_names = tar.getnames()
    assert len(all_names) == len(set(all_names)), "shared blobs are packed once"
    assert first_build["result"]["fetched_blobs"] > 0


def test_native_layout_is_byte_exact_with_the_registry(first_build: dict, mirrors: Mirrors, tmp_path: Path) -> None:
    subprocess.run(["tar", "-xf", str(first_build["out"]), "-C", str(tmp_path)], check=True)
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=tmp_path, check=True)
    for model in MODELS:
        entry = mirrors.catalog[model]
        manifest = tmp_path / f"models/manifests/registry.ollama.ai/{entry.repository}/{entry.tag}"
        assert manifest.read_bytes() == entry.manifest
        for blob in entry.blobs():
            assert (tmp_path / f"models/blobs/sha256-{blob.digest[7:]}").read_bytes() == blob.path.read_bytes()


def test_modelfile_equals_what_the_registry_layers_say(first_build: dict, mirrors: Mirrors, tmp_path: Path) -> None:
    from ollama_airgap.ollama_model import parse_modelfile

    subprocess.run(["tar", "-xf", str(first_build["out"]), "-C", str(tmp_path)], check=True)
    for model in MODELS:
        entry = mirrors.catalog[model]
        path = tmp_path / f"modelfiles/registry.ollama.ai/{entry.repository}/{entry.tag}.Modelfile"
        modelfile = parse_modelfile(path.read_text(), str(path))
        types = {blob.media_type: blob for blob in entry.layers}
        gguf = types["application/vnd.ollama.image.model"]
        assert (path.parent / modelfile.from_).resolve() == (tmp_path / f"models/blobs/sha256-{gguf.digest[7:]}")
        assert modelfile.template == types["application/vnd.ollama.image.template"].content.decode()
        if "application/vnd.ollama.image.system" in types:
            assert modelfile.system == types["application/vnd.ollama.image.system"].content.decode()
        else:
            assert modelfile.system is None
        params = json.loads(types["application/vnd.ollama.image.params"].content)
        expected = sorted(
            (k, str(v)) for k, values in params.items() for v in (values if isinstance(values, list) else [values])
        )
        assert sorted(modelfile.parameters) == expected
        licenses = [b.content.decode() for b in entry.layers if b.media_type.endswith(".license")]
        assert modelfile.licenses == licenses
        if "application/vnd.ollama.image.messages" in types:
            messages = json.loads(types["application/vnd.ollama.image.messages"].content)
            assert modelfile.messages == [(m["role"], m["content"]) for m in messages]


def test_second_build_downloads_no_blob_bytes(
    first_build: dict, mirrors: Mirrors, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, result = build(
        tmp_path, mirrors, first_build["spec"], first_build["cache"], tmp_path / "again.tar", capsys=capsys
    )
    assert code == 0, result
    assert result["fetched_blobs"] == 0
    # Only manifests and sha256sum.txt are asked for again: no blob or release bytes.
    blob_bytes = sum(f.stat().st_size for f in (first_build["cache"] / "blobs/sha256").iterdir())
    assert result["bytes_downloaded"] < 64 * 1024 < blob_bytes
    assert (tmp_path / "again.tar").read_bytes() != b""


def test_rebuild_from_lock_gives_same_content(
    first_build: dict, mirrors: Mirrors, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lock = first_build["out"].with_name("demo.lock.yaml")
    code, result = build(
        tmp_path,
        mirrors,
        first_build["spec"],
        tmp_path / "fresh-cache",
        tmp_path / "locked.tar",
        "--lock",
        str(lock),
        capsys=capsys,
    )
    assert code == 0, result
    with tarfile.open(first_build["out"]) as a, tarfile.open(tmp_path / "locked.tar") as b:
        assert a.extractfile("SHA256SUMS").read() == b.extractfile("SHA256SUMS").read()
    assert (tmp_path / "locked.tar").read_bytes() == first_build["out"].read_bytes()


def test_old_release_falls_back_to_tgz(mirrors: Mirrors, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path / "old.yaml", version="0.13.5", models=["tinyqwen"])
    code, result = build(tmp_path, mirrors, spec, tmp_path / "cache", tmp_path / "old.tar", capsys=capsys)
    assert code == 0, result
    with tarfile.open(tmp_path / "old.tar") as tar:
        names = tar.getnames()
    assert "ollama/0.13.5/ollama-linux-amd64.tgz" in names
    assert not any(n.endswith(".tar.zst") for n in names)


def test_resume_of_a_partial_blob_downloads_only_the_rest(
    mirrors: Mirrors, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = mirrors.catalog["tinyllama:1.1b-q4_0"]
    gguf = entry.layer("application/vnd.ollama.image.model")
    cache = tmp_path / "cache"
    (cache / "partial").mkdir(parents=True)
    data = gguf.path.read_bytes()
    half = len(data) // 2
    (cache / "partial" / gguf.digest[7:]).write_bytes(data[:half])  # what a cut-off transfer leaves
    spec = write_spec(tmp_path / "s.yaml", models=["tinyllama:1.1b-q4_0"])
    code, result = build(tmp_path, mirrors, spec, cache, tmp_path / "r.tar", capsys=capsys)
    assert code == 0, result
    release_bytes = sum(a.size for a in mirrors.releases.assets if a.version == "0.14.1")
    others = sum(b.size for b in entry.blobs()) - gguf.size
    assert result["bytes_downloaded"] <= release_bytes + others + (len(data) - half) + 64 * 1024
    assert (cache / "blobs/sha256" / gguf.digest[7:]).read_bytes() == data


def test_corrupt_blob_in_registry_is_rejected(
    mirrors: Mirrors, tmp_path: Path, tmp_path_factory, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = mirrors.catalog["tinyllama:1.1b-q4_0"]
    license_blob = next(b for b in entry.layers if b.media_type.endswith(".template"))
    hexd = license_blob.digest[7:]
    stored = mirrors.registry.data_dir / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"
    original = stored.read_bytes()
    try:
        stored.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        spec = write_spec(tmp_path / "s.yaml", models=["tinyllama:1.1b-q4_0"])
        code, result = build(tmp_path, mirrors, spec, tmp_path / "cache", tmp_path / "bad.tar", capsys=capsys)
    finally:
        stored.write_bytes(original)
    assert code == 3
    assert f"blob {license_blob.digest}: digest mismatch" in result["stderr"]
    assert not (tmp_path / "bad.tar").exists()
    assert not (tmp_path / "cache/blobs/sha256" / hexd).exists()
    assert not (tmp_path / "cache/partial" / hexd).exists()


def test_missing_model_names_the_registry(mirrors: Mirrors, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path / "s.yaml", models=["nosuchmodel:7b"])
    code, result = build(tmp_path, mirrors, spec, tmp_path / "cache", tmp_path / "x.tar", capsys=capsys)
    assert code == 4
    assert (
        f"registry.ollama.ai/library/nosuchmodel:7b: not found in registry {mirrors.registry_url}" in result["stderr"]
    )


def test_missing_release_version(mirrors: Mirrors, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path / "s.yaml", version="0.99.0", models=["tinyqwen"])
    code, result = build(tmp_path, mirrors, spec, tmp_path / "cache", tmp_path / "x.tar", capsys=capsys)
    assert code == 4 and "ollama release v0.99.0: no sha256sum.txt" in result["stderr"]


def test_token_auth_registry(mirrors_token_auth: Mirrors, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path / "s.yaml", models=["tinyqwen:0.5b"])
    code, result = build(tmp_path, mirrors_token_auth, spec, tmp_path / "cache", tmp_path / "t.tar", capsys=capsys)
    assert code == 0, result
    assert main(["verify", str(tmp_path / "t.tar"), "-q"]) == 0


def test_store_models_are_read_and_verified_from_disk(
    first_build: dict, mirrors: Mirrors, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    entry = mirrors.catalog["tinyqwen:latest"]
    (store / "manifests/registry.ollama.ai/library/tinyqwen").mkdir(parents=True)
    (store / "manifests/registry.ollama.ai/library/tinyqwen/latest").write_bytes(entry.manifest)
    (store / "blobs").mkdir()
    for blob in entry.blobs():
        shutil.copy(blob.path, store / "blobs" / f"sha256-{blob.digest[7:]}")
    spec = write_spec(tmp_path / "s.yaml", models=[], store_models=[{"path": str(store), "models": ["tinyqwen"]}])
    code, result = build(tmp_path, mirrors, spec, tmp_path / "cache", tmp_path / "s.tar", capsys=capsys)
    assert code == 0, result
    assert result["models"][0]["source"] == "store"
    assert result["models"][0]["manifest_digest"] == entry.digest
    # A rotten blob in the store is refused, naming the file.
    gguf = store / "blobs" / f"sha256-{entry.layer('application/vnd.ollama.image.model').digest[7:]}"
    data = bytearray(gguf.read_bytes())
    data[100] ^= 1
    gguf.write_bytes(bytes(data))
    code, result = build(tmp_path, mirrors, spec, tmp_path / "cache2", tmp_path / "s2.tar", capsys=capsys)
    assert code == 3 and f"{gguf} is corrupt" in result["stderr"]


def test_local_gguf_with_template(
    mirrors: Mirrors, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = mirrors.catalog["tinyllama"].gguf_path
    spec = write_spec(
        tmp_path / "s.yaml",
        models=[],
        local_models=[
            {
                "name": "mine:v1",
                "gguf": str(gguf),
                "template": "{{ .Prompt }}",
                "system": "be brief",
                "parameters": {"stop": ["</s>"], "temperature": 0.2},
            }
        ],
    )
    code, result = build(tmp_path, mirrors, spec, tmp_path / "cache", tmp_path / "l.tar", capsys=capsys)
    assert code == 0, result
    with tarfile.open(tmp_path / "l.tar") as tar:
        text = tar.extractfile("modelfiles/registry.ollama.ai/library/mine/v1.Modelfile").read().decode()
    assert 'TEMPLATE """{{ .Prompt }}"""' in text and "PARAMETER stop </s>" in text
    assert 'SYSTEM """be brief"""' in text and "PARAMETER temperature 0.2" in text
    # A rebuild hashes the GGUF in place and does not copy it into the cache again.
    assert (tmp_path / "cache/blobs/sha256" / sha256_file(gguf)).is_file()
    copies: list[Path] = []
    original = BlobCache.import_file
    monkeypatch.setattr(BlobCache, "import_file", lambda self, src, *a: copies.append(src) or original(self, src, *a))
    code, result = build(tmp_path, mirrors, spec, tmp_path / "cache", tmp_path / "l2.tar", capsys=capsys)
    assert code == 0, result
    assert copies == []


def test_inspect_and_split_join_on_a_real_build(
    first_build: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["inspect", str(first_build["out"]), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {m["short"] for m in info["models"]} == {
        "tinyllama:latest",
        "tinyllama:1.1b",
        "tinyllama:1.1b-q4_0",
        "tinyqwen:0.5b",
        "acme/tiny-assistant:v1",
    }
    assert all(m["licenses"] for m in info["models"])
    assert main(["split", str(first_build["out"]), "--size", "1M", "--out-dir", str(tmp_path), "-q"]) == 0
    parts = tmp_path / "demo.tar.parts.yaml"
    assert main(["join", str(parts), "-o", str(tmp_path / "joined.tar"), "-q"]) == 0
    assert (tmp_path / "joined.tar").read_bytes() == first_build["out"].read_bytes()


def test_create_from_bundle_modelfile_equals_pull(
    first_build: dict, start_standin_server: Callable[..., Standin], tmp_path: Path
) -> None:
    """`ollama create -f` from the bundle gives the same template, parameters, system prompt and license as the
    pulled model (here: the registry's manifest and blobs restored into the store as `ollama pull` writes them)."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    subprocess.run(["tar", "-xf", str(first_build["out"]), "-C", str(bundle)], check=True)
    models = tmp_path / "models"
    shutil.copytree(bundle / "models", models)
    server = start_standin_server(models)
    for model in MODELS:
        name = parse_model_name(model)
        modelfile = bundle / f"modelfiles/{name.host}/{name.namespace}/{name.model}/{name.tag}.Modelfile"
        created = f"created-{name.model}:{name.tag}"
        result = server.cli("create", created, "-f", str(modelfile))
        assert result.returncode == 0, result.stderr
        pulled = requests.post(f"{server.url}/api/show", json={"model": name.short}, timeout=10).json()
        made = requests.post(f"{server.url}/api/show", json={"model": created}, timeout=10).json()
        for field in ("template", "parameters", "system", "license", "messages"):
            assert made.get(field) == pulled.get(field), (model, field)
        assert pulled["template"] and pulled["parameters"] and pulled["license"]
        if name.namespace == "acme":
            assert pulled["system"] and pulled["messages"]


# --- every kind of model in the registry zoo (issue 11) ----------------------------------------------------------

MODEL_MEDIA = "application/vnd.ollama.image.model"
REFUSED_KINDS = ("cloud", "requires-too-new")


def bundled_kinds(mirrors: Mirrors) -> list[ModelEntry]:
    return [entry for entry in mirrors.catalog if entry.kind not in REFUSED_KINDS]


def cache_digests(cache: Path) -> set[str]:
    blobs = cache / "blobs/sha256"
    return {f"sha256:{p.name}" for p in blobs.iterdir()} if blobs.is_dir() else set()


@pytest.fixture(scope="module")
def kinds_build(mirrors: Mirrors, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One build of every zoo model ollama can run from a bundle, pinned to today's ollama, unpacked."""
    tmp = tmp_path_factory.mktemp("kinds")
    spec = tmp / "kinds.yaml"
    names = [entry.short_name for entry in bundled_kinds(mirrors)]
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "kinds",
                "ollama": {"version": OLLAMA_VERSION_CURRENT, "architectures": ["amd64"]},
                "models": names,
            }
        )
    )
    out = tmp / "kinds.tar"
    argv = ["build", str(spec), "--cache", str(tmp / "cache"), "-o", str(out), "--json", *mirror_args(mirrors)]
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("bundle")), *argv], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    tree = tmp / "tree"
    tree.mkdir()
    subprocess.run(["tar", "-xf", str(out), "-C", str(tree)], check=True)
    meta = yaml.safe_load((tree / "bundle.yaml").read_text())
    return {"out": out, "tree": tree, "models": {m["short"]: m for m in meta["models"]}, "names": names}


def test_every_kind_is_recorded_as_ollama_sees_it(kinds_build: dict, mirrors: Mirrors) -> None:
    kinds = {entry.kind for entry in bundled_kinds(mirrors)}
    assert kinds == set(KINDS) - set(REFUSED_KINDS), "the zoo lost a kind"
    for entry in bundled_kinds(mirrors):
        meta = kinds_build["models"][entry.short_name]
        assert meta["capabilities"] == list(entry.capabilities), entry.short_name
        assert meta["embedding_length"] == entry.embedding_length, entry.short_name
        assert meta["requires"] == entry.requires
        restore_only = entry.restore_only
        assert meta["restore_only"] is restore_only, entry.short_name
        modelfile = kinds_build["tree"] / f"modelfiles/registry.ollama.ai/{entry.repository}/{entry.tag}.Modelfile"
        if restore_only:
            assert meta["modelfile"] is None and not modelfile.exists()
            assert meta["restore_only_reason"] and "\n" not in meta["restore_only_reason"]
        else:
            assert meta["modelfile"] == str(modelfile.relative_to(kinds_build["tree"])) and modelfile.is_file()
            assert meta["restore_only_reason"] == ""


def test_modelfile_of_each_kind_names_every_weight_layer(kinds_build: dict, mirrors: Mirrors) -> None:
    from ollama_airgap.ollama_model import parse_modelfile

    tree: Path = kinds_build["tree"]
    for entry in bundled_kinds(mirrors):
        if kinds_build["models"][entry.short_name]["restore_only"]:
            continue
        path = tree / f"modelfiles/registry.ollama.ai/{entry.repository}/{entry.tag}.Modelfile"
        modelfile = parse_modelfile(path.read_text(), str(path))

        def blobs(media: str) -> list[Path]:
            return [tree / f"models/blobs/sha256-{b.digest[7:]}" for b in entry.layers_of(media)]  # noqa: B023

        def named(value: str) -> Path:
            return (path.parent / value).resolve()  # noqa: B023

        prefix = "application/vnd.ollama.image."
        assert [named(modelfile.from_)] == blobs(MODEL_MEDIA)
        assert [named(p) for p in modelfile.projectors] == blobs(prefix + "projector")
        assert [named(a) for a in modelfile.adapters] == blobs(prefix + "adapter")
        assert ([named(modelfile.draft)] if modelfile.draft else []) == blobs(prefix + "draft")
        template = entry.layers_of(prefix + "template") or entry.layers_of(prefix + "prompt")
        assert modelfile.template == (template[-1].content.decode() if template else None), entry.short_name


def test_each_kind_created_from_its_modelfile_shows_as_pulled(
    kinds_build: dict, mirrors: Mirrors, tmp_path: Path
) -> None:
    """`ollama create -f` (today's ollama, stand-in) from each bundle Modelfile gives the pulled model's template,
    parameters, system, license and capabilities."""
    models = tmp_path / "models"
    shutil.copytree(kinds_build["tree"] / "models", models)
    script = write_standin(tmp_path / "ollama", OLLAMA_VERSION_CURRENT)
    server = start_standin(script, models, tmp_path, tmp_path / "serve.log")
    try:
        for short, meta in kinds_build["models"].items():
            if meta["restore_only"]:
                continue
            created = f"created-{short.replace('/', '-').replace(':', '-')}:v1"
            result = server.cli("create", created, "-f", str(kinds_build["tree"] / meta["modelfile"]))
            assert result.returncode == 0, (short, result.stderr)
            pulled = requests.post(f"{server.url}/api/show", json={"model": short}, timeout=10).json()
            made = requests.post(f"{server.url}/api/show", json={"model": created}, timeout=10).json()
            for field in ("template", "parameters", "system", "license", "messages", "capabilities"):
                assert made.get(field) == pulled.get(field), (short, field)
            assert pulled["capabilities"] == meta["capabilities"], short
    finally:
        server.stop()


def test_inspect_shows_capabilities_and_restore_only(kinds_build: dict, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["inspect", str(kinds_build["out"]), "--json"]) == 0
    models = {m["short"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert models["nomic-embed-text:latest"]["capabilities"] == ["embedding"]
    assert models["acme/tiny-safetensors:v1"]["restore_only"] is True
    assert main(["inspect", str(kinds_build["out"])]) == 0
    text = capsys.readouterr().out
    assert "nomic-embed-text:latest: embedding\n" in text
    assert "acme/tiny-safetensors:v1: completion; restore only: safetensors model" in text


@pytest.mark.parametrize(
    ("kind", "version", "problem"),
    [
        (
            "requires-too-new",
            OLLAMA_VERSION_CURRENT,
            f"requires ollama 0.99.0, the bundle pins ollama {OLLAMA_VERSION_CURRENT}",
        ),
        ("requires-ok", OLLAMA_VERSION_ZST, f"requires ollama 0.30.0, the bundle pins ollama {OLLAMA_VERSION_ZST}"),
        ("cloud", OLLAMA_VERSION_CURRENT, "a cloud model (tag '120b-cloud') runs on ollama.com"),
    ],
)
def test_refused_before_any_blob_download(
    mirrors: Mirrors, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, version: str, problem: str
) -> None:
    entry = mirrors.catalog.by_kind(kind)[0]
    spec = write_spec(tmp_path / "s.yaml", version=version, models=["tinyqwen:0.5b", entry.short_name])
    cache = tmp_path / "cache"
    code, result = build(tmp_path, mirrors, spec, cache, tmp_path / "x.tar", capsys=capsys)
    assert code == 2, result
    lines = result["stderr"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bundle: error: model {entry.short_name}: {problem}"), lines
    assert result["exit_code"] == 2 and not (tmp_path / "x.tar").exists()
    # At most the configs were read: no model layer, no release archive, nothing partial.
    layers = {blob.digest for e in mirrors.catalog for blob in e.layers}
    assert not cache_digests(cache) & layers
    assert not list((cache / "partial").glob("*")) if (cache / "partial").exists() else True
    assert cache_digests(cache) <= {e.config.digest for e in mirrors.catalog}


def test_unknown_layer_type_is_refused(mirrors: Mirrors, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A registry of its own: the session's registry serves exactly the zoo (test_mirrors checks its catalog).
    registry = start_registry(tmp_path / "registry")
    try:
        entry = mirrors.catalog["tinyqwen:0.5b"]
        pusher = RegistryPusher(registry.url)
        future = b"a layer kind from a future ollama"
        digest = "sha256:" + hashlib.sha256(future).hexdigest()
        pusher.push_blob("acme/future", digest, future)
        for blob in entry.blobs():
            pusher.push_blob("acme/future", blob.digest, blob.path)
        document = json.loads(entry.manifest)
        layer = {"mediaType": "application/vnd.ollama.image.hologram", "digest": digest, "size": 33}
        document["layers"].append(layer)
        pusher.put_manifest("acme/future", "v1", json.dumps(document).encode())
        spec = write_spec(tmp_path / "s.yaml", models=["acme/future:v1"])
        args = ["--mirror", f"registry.ollama.ai={registry.url}"]
        code, result = build(tmp_path, mirrors, spec, tmp_path / "cache", tmp_path / "x.tar", *args, capsys=capsys)
    finally:
        registry.stop()
    assert code == 2, result
    index = len(document["layers"]) - 1
    assert result["stderr"] == (
        f"bundle: error: model acme/future:v1: layer {index} has the unknown media type "
        f"'application/vnd.ollama.image.hologram' ({digest[:19]}); this ollama-airgap cannot carry it\n"
    )
    assert not cache_digests(tmp_path / "cache") & {b.digest for b in entry.layers}


def test_registry_sees_the_pinned_ollama_and_its_412_is_one_line(
    mirrors: Mirrors, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path / "s.yaml", models=["tinyqwen:0.5b"])
    with fault_proxy(mirrors.registry_url) as proxy:
        args = ["--mirror", f"registry.ollama.ai={proxy.url}"]
        code, result = build(tmp_path, mirrors, spec, tmp_path / "cache", tmp_path / "ok.tar", *args, capsys=capsys)
        assert code == 0, result
        agents = {hit.user_agent for hit in proxy.log if hit.path.startswith("/v2/")}
        assert agents == {"ollama/0.14.1 (amd64 linux) Go/go1.24.1"}
        message = (
            b'{"errors":[{"code":"UNSUPPORTED","message":"pull model manifest: 412: '
            b'this model requires a newer version of Ollama"}]}'
        )
        proxy.add(Fault("/v2/library/tinyqwen/manifests/0.5b", "status", status=412, body=message))
        code, result = build(tmp_path, mirrors, spec, tmp_path / "c2", tmp_path / "no.tar", *args, capsys=capsys)
    assert code == 2, result
    assert result["stderr"] == (
        f"bundle: error: registry.ollama.ai/library/tinyqwen:0.5b: registry {proxy.url} refuses the client "
        "ollama/0.14.1 (amd64 linux) Go/go1.24.1 (HTTP 412: pull model manifest: 412: this model requires a newer "
        "version of Ollama); pin a newer ollama.version in the spec\n"
    )


def test_draft_model_is_restore_only_for_an_ollama_without_draft(
    mirrors: Mirrors, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ollama 0.14.1's Modelfile parser has no DRAFT command: the model is restored, not created, and builds."""
    entry = mirrors.catalog.by_kind("draft")[0]
    spec = write_spec(tmp_path / "s.yaml", version=OLLAMA_VERSION_ZST, models=[entry.short_name])
    code, result = build(tmp_path, mirrors, spec, tmp_path / "cache", tmp_path / "d.tar", capsys=capsys)
    assert code == 0, result
    (meta,) = result["models"]
    assert meta["restore_only"] is True and meta["modelfile"] is None
    assert meta["restore_only_reason"] == (
        f"its Modelfile needs DRAFT, which ollama {OLLAMA_VERSION_ZST} cannot parse (since 0.23.1)"
    )
    assert meta["capabilities"] == list(entry.capabilities)
    with tarfile.open(tmp_path / "d.tar") as tar:
        assert not [name for name in tar.getnames() if name.startswith("modelfiles/")]


def test_capabilities_follow_the_pinned_ollama_generation(
    mirrors: Mirrors, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pinned to 0.14.1 (before llama-server), bundle.yaml's capabilities are what that ollama's /api/show says
    (the 0.14.1 stand-in, over the bundle's restored store)."""
    kinds = ("chat", "vision-projector", "vision-inline", "embedding", "tools-thinking", "adapter", "legacy-prompt")
    names = [mirrors.catalog.by_kind(kind)[0].short_name for kind in kinds]
    spec = write_spec(tmp_path / "s.yaml", version=OLLAMA_VERSION_ZST, models=names)
    code, result = build(tmp_path, mirrors, spec, tmp_path / "cache", tmp_path / "g.tar", capsys=capsys)
    assert code == 0, result
    tree = tmp_path / "tree"
    tree.mkdir()
    subprocess.run(["tar", "-xf", str(tmp_path / "g.tar"), "-C", str(tree)], check=True)
    server = start_standin(
        write_standin(tmp_path / "ollama", OLLAMA_VERSION_ZST), tree / "models", tmp_path, tmp_path / "s.log"
    )
    try:
        for meta in result["models"]:
            shown = requests.post(f"{server.url}/api/show", json={"model": meta["short"]}, timeout=10).json()
            assert shown["capabilities"] == meta["capabilities"], meta["short"]
    finally:
        server.stop()
