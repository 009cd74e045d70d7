"""Container images in `bundle build`: pulled with the project's own registry client from the test bed's real
docker-registry (token auth, like ghcr.io), written as a docker-archive, and proven with the real `podman load` and
`skopeo inspect docker-archive:` (no docker or skopeo is used to build the archive)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from ollama_airgap.cache import BlobCache
from ollama_airgap.cli.main import main
from ollama_airgap.container_image import parse_image_reference, read_archive_manifest, resolve_image
from ollama_airgap.download import Fetcher
from ollama_airgap.registry import RegistryClient
from testbed.mirrors import Mirrors
from testbed.registry import RegistryPusher
from testbed.webui_image import PushedImage, push_webui_image

pytestmark = pytest.mark.mirrors

IMAGE = "ghcr.io/open-webui/open-webui:test"
ARCHIVE_PATH = "images/open-webui_test.docker.tar"
# This machine runs containers only with runc and cgroupfs (see TESTBED.md).
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]


def _mirror_args(mirrors: Mirrors) -> list[str]:
    return ["--mirror", f"registry.ollama.ai={mirrors.registry_url}", "--mirror", f"ghcr.io={mirrors.registry_url}"]


@pytest.fixture(scope="module")
def pushed(mirrors_token_auth: Mirrors, tmp_path_factory: pytest.TempPathFactory) -> PushedImage:
    issuer = mirrors_token_auth.token_issuer
    assert issuer is not None
    pusher = RegistryPusher(mirrors_token_auth.registry_url, credentials=issuer.credentials)
    return push_webui_image(mirrors_token_auth.registry_url, tmp_path_factory.mktemp("webui-image"), pusher=pusher)


@pytest.fixture(scope="module")
def image_build(mirrors_token_auth: Mirrors, pushed: PushedImage, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A bundle with one model, the 0.14.1 release and the stand-in image, built once through the CLI (subprocess-
    free, in-process: the CLI entry point)."""
    tmp = tmp_path_factory.mktemp("image-build")
    spec = tmp / "webui.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "webui",
                "ollama": {"version": "0.14.1", "architectures": ["amd64"]},
                "models": ["tinyllama:latest"],
                "images": [IMAGE],
            }
        )
    )
    cache, out = tmp / "cache", tmp / "webui.tar"
    github = mirrors_token_auth.release_base_url.split("/ollama/ollama/")[0]
    args = ["build", str(spec), "--cache", str(cache), "-o", str(out), "-q", "--mirror", f"github.com={github}"]
    assert main([*args, *_mirror_args(mirrors_token_auth)]) == 0
    with tarfile.open(out) as tar:
        manifest = yaml.safe_load(tar.extractfile("bundle.yaml").read())  # type: ignore[union-attr]
        tar.extract(ARCHIVE_PATH, tmp / "unpacked", filter="data")
    return {
        "tmp": tmp,
        "spec": spec,
        "cache": cache,
        "out": out,
        "args": args,
        "manifest": manifest,
        "archive": tmp / "unpacked" / ARCHIVE_PATH,
    }


def test_bundle_records_the_registry_image(image_build: dict, pushed: PushedImage) -> None:
    amd64 = pushed.platforms["linux/amd64"]
    (entry,) = image_build["manifest"]["images"]
    assert entry["reference"] == IMAGE
    assert entry["platform"] == "linux/amd64"
    assert entry["digest"] == amd64.manifest_digest
    assert entry["config_digest"] == entry["image_id"] == amd64.config_digest
    assert entry["layers"] == [diff_id for _, _, diff_id in amd64.layers]
    assert entry["repo_tags"] == [IMAGE]
    assert entry["path"] == ARCHIVE_PATH
    files = {f["path"]: f for f in image_build["manifest"]["files"]}
    assert files[ARCHIVE_PATH]["sha256"] == entry["sha256"]
    assert files[ARCHIVE_PATH]["size"] == entry["size"] == image_build["archive"].stat().st_size
    # Pinned by the platform manifest's digest in the lock (bundle.yaml's copy and the file next to the archive).
    assert image_build["manifest"]["lock"]["images"] == {IMAGE: amd64.manifest_digest}
    lock = yaml.safe_load(image_build["out"].with_name("webui.lock.yaml").read_text())
    assert lock["images"] == {IMAGE: amd64.manifest_digest}


def test_pull_is_byte_exact(image_build: dict, pushed: PushedImage) -> None:
    """Every blob in the cache is the registry's blob, byte for byte; the archive's config is the same bytes, and
    each layer.tar is the registry layer decompressed (its sha256 is the config's diff_id)."""
    amd64 = pushed.platforms["linux/amd64"]
    cache = BlobCache(image_build["cache"])
    for digest in [amd64.config_digest, *(digest for digest, _, _ in amd64.layers)]:
        assert cache.path(digest).read_bytes() == pushed.blob_paths[digest].read_bytes()
    with tarfile.open(image_build["archive"]) as tar:
        (doc,) = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert doc["RepoTags"] == [IMAGE]
        assert tar.extractfile(doc["Config"]).read() == amd64.config  # type: ignore[union-attr]
        for name, (_, _, diff_id) in zip(doc["Layers"], amd64.layers, strict=True):
            data = tar.extractfile(name).read()  # type: ignore[union-attr]
            assert "sha256:" + hashlib.sha256(data).hexdigest() == diff_id
    assert read_archive_manifest(image_build["archive"]) == [doc]


def test_platform_selection_from_the_index(mirrors_token_auth: Mirrors, pushed: PushedImage, tmp_path: Path) -> None:
    client = RegistryClient(lambda host: mirrors_token_auth.registry_url, Fetcher())
    ref = parse_image_reference(IMAGE)
    for platform in ("linux/amd64", "linux/arm64", "linux/arm64/v8"):
        resolved = resolve_image(client, ref, platform)
        expected = pushed.platforms[platform.removesuffix("/v8")]
        assert resolved.manifest.digest == expected.manifest_digest
        assert resolved.config.digest == expected.config_digest
        assert resolved.index_digest == pushed.index_digest
    with pytest.raises(Exception, match=r"no image for linux/s390x \(the index offers linux/amd64, linux/arm64\)"):
        resolve_image(client, ref, "linux/s390x")
    # By the lock's digest: the platform manifest directly, no index.
    pinned = resolve_image(client, ref, "linux/amd64", pushed.platforms["linux/amd64"].manifest_digest)
    assert pinned.index_digest is None and pinned.config.digest == pushed.platforms["linux/amd64"].config_digest


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_skopeo_sees_the_registry_image(image_build: dict, pushed: PushedImage) -> None:
    amd64 = pushed.platforms["linux/amd64"]
    source = f"docker-archive:{image_build['archive']}"
    inspected = json.loads(subprocess.run(["skopeo", "inspect", source], capture_output=True, check=True).stdout)
    assert inspected["Layers"] == [diff_id for _, _, diff_id in amd64.layers]
    assert (inspected["Os"], inspected["Architecture"]) == ("linux", "amd64")
    raw_config = subprocess.run(["skopeo", "inspect", "--config", "--raw", source], capture_output=True, check=True)
    assert "sha256:" + hashlib.sha256(raw_config.stdout).hexdigest() == amd64.config_digest


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
def test_podman_loads_the_archive(image_build: dict, pushed: PushedImage) -> None:
    """The real `podman load`: the loaded image's ID and layers are the registry's, under the right tag."""
    amd64 = pushed.platforms["linux/amd64"]
    image_id = amd64.config_digest.removeprefix("sha256:")
    had_it = subprocess.run([*PODMAN, "image", "exists", image_id], check=False).returncode == 0
    try:
        loaded = subprocess.run([*PODMAN, "load", "-i", str(image_build["archive"])], capture_output=True, text=True)
        assert loaded.returncode == 0, loaded.stderr
        assert f"Loaded image: {IMAGE}" in loaded.stdout
        info = json.loads(subprocess.run([*PODMAN, "image", "inspect", IMAGE], capture_output=True, check=True).stdout)[
            0
        ]
        assert info["Id"] == image_id
        assert info["RootFS"]["Layers"] == [diff_id for _, _, diff_id in amd64.layers]
        assert f"{IMAGE}" in info["RepoTags"]
        run = subprocess.run(
            [
                *PODMAN,
                "run",
                "--rm",
                "--network=none",
                "--ulimit",
                "nofile=20000:20000",
                "--ulimit",
                "nproc=1024:1024",
                IMAGE,
                "python3",
                "-c",
                "print(open('/app/PLATFORM').read().strip())",
            ],
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0 and run.stdout.strip() == "linux/amd64", run.stderr
    finally:
        if not had_it:
            subprocess.run([*PODMAN, "rmi", "-f", image_id], capture_output=True, check=False)


def test_rebuild_reuses_the_archive_and_downloads_nothing(
    image_build: dict, mirrors_token_auth: Mirrors, capsys: pytest.CaptureFixture[str]
) -> None:
    out = image_build["tmp"] / "again.tar"
    args = [a if a != str(image_build["out"]) else str(out) for a in image_build["args"]]
    capsys.readouterr()
    assert main([*args, "--json", *_mirror_args(mirrors_token_auth)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["fetched_blobs"] == 0
    with tarfile.open(out) as tar:
        again = yaml.safe_load(tar.extractfile("bundle.yaml").read())  # type: ignore[union-attr]
    assert again["images"] == image_build["manifest"]["images"]
    # And exactly again from the lock (the image by its pinned manifest digest).
    locked = image_build["tmp"] / "locked.tar"
    lock = image_build["out"].with_name("webui.lock.yaml")
    args = [a if a != str(image_build["out"]) else str(locked) for a in image_build["args"]]
    assert main([*args, "--lock", str(lock), *_mirror_args(mirrors_token_auth)]) == 0
    assert locked.read_bytes() == image_build["out"].read_bytes()


def test_verify_refuses_a_corrupt_image_archive(
    image_build: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corrupt = tmp_path / "corrupt.tar"
    shutil.copy(image_build["out"], corrupt)
    with tarfile.open(corrupt) as tar:
        offset = tar.getmember(ARCHIVE_PATH).offset_data + 4096
    with corrupt.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))
    capsys.readouterr()
    assert main(["verify", str(corrupt)]) == 3
    assert f"{ARCHIVE_PATH} is altered" in capsys.readouterr().err
