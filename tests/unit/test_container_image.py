"""Image references, platform selection and the docker-archive writer (no registry: a cache filled by hand)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from ollama_airgap.cache import BlobCache
from ollama_airgap.container_image import (
    Descriptor,
    ResolvedImage,
    image_archive,
    parse_image_reference,
    select_platform,
    write_docker_archive,
)
from ollama_airgap.errors import VerifyError
from ollama_airgap.registry import Manifest


@pytest.mark.parametrize(
    ("text", "host", "repository", "tag", "path"),
    [
        (
            "ghcr.io/open-webui/open-webui:v0.6.5",
            "ghcr.io",
            "open-webui/open-webui",
            "v0.6.5",
            "images/open-webui_v0.6.5.docker.tar",
        ),
        ("nginx", "docker.io", "library/nginx", "latest", "images/nginx_latest.docker.tar"),
        ("localhost:5000/a/b", "localhost:5000", "a/b", "latest", "images/b_latest.docker.tar"),
        ("acme/tool:1.0", "docker.io", "acme/tool", "1.0", "images/tool_1.0.docker.tar"),
    ],
)
def test_parse_reference(text: str, host: str, repository: str, tag: str, path: str) -> None:
    ref = parse_image_reference(text)
    assert (ref.host, ref.repository, ref.tag, ref.bundle_path) == (host, repository, tag, path)
    assert ref.repo_tags == [f"{host}/{repository}:{tag}"]


def test_parse_digest_reference() -> None:
    digest = "sha256:" + "a" * 64
    ref = parse_image_reference(f"ghcr.io/x/y:v1@{digest}")
    assert ref.reference == digest and ref.tag == "v1" and str(ref) == f"ghcr.io/x/y:v1@{digest}"
    only = parse_image_reference(f"ghcr.io/x/y@{digest}")
    assert only.repo_tags == [] and only.bundle_path == "images/y_aaaaaaaaaaaa.docker.tar"


@pytest.mark.parametrize("text", ["", "Upper/case", "x:", "x@sha256:12", "a b", "ghcr.io/x/y:-bad"])
def test_bad_references(text: str) -> None:
    with pytest.raises(ValueError):
        parse_image_reference(text)


def test_select_platform_skips_attestations_and_honours_variants() -> None:
    def entry(arch: str, digest: str, os_name: str = "linux", variant: str | None = None) -> dict:
        platform = {"os": os_name, "architecture": arch, **({"variant": variant} if variant else {})}
        return {"mediaType": "m", "digest": "sha256:" + digest * 64, "size": 1, "platform": platform}

    index = {"manifests": [entry("unknown", "0", "unknown"), entry("amd64", "1"), entry("arm64", "2", variant="v8")]}
    assert select_platform(index, "linux/amd64", "x").digest.endswith("1" * 64)
    assert select_platform(index, "linux/arm64", "x").digest.endswith("2" * 64)
    assert select_platform(index, "linux/arm64/v8", "x").digest.endswith("2" * 64)
    with pytest.raises(VerifyError, match="offers linux/amd64, linux/arm64/v8"):
        select_platform(index, "linux/arm/v7", "x")


def _image(tmp_path: Path, corrupt_diff_id: bool = False) -> tuple[ResolvedImage, BlobCache, bytes]:
    cache = BlobCache(tmp_path / "cache")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    raw = buffer.getvalue()
    layer = cache.put_bytes(gzip.compress(raw, mtime=0))
    diff_id = "sha256:" + hashlib.sha256(raw if not corrupt_diff_id else b"x").hexdigest()
    config = json.dumps({"os": "linux", "architecture": "amd64", "rootfs": {"type": "layers", "diff_ids": [diff_id]}})
    config_digest = cache.put_bytes(config.encode())
    image = ResolvedImage(
        ref=parse_image_reference("ghcr.io/x/y:1"),
        platform="linux/amd64",
        manifest=Manifest(b"{}", "application/vnd.oci.image.manifest.v1+json", "sha256:" + "f" * 64),
        index_digest=None,
        config=Descriptor("c", config_digest, len(config)),
        layers=[Descriptor("l", layer, cache.path(layer).stat().st_size)],
    )
    return image, cache, raw


def test_archive_layout_and_reuse(tmp_path: Path) -> None:
    image, cache, raw = _image(tmp_path)
    built = image_archive(image, cache)
    with tarfile.open(built.path) as tar:
        (doc,) = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert doc["RepoTags"] == ["ghcr.io/x/y:1"]
        assert tar.extractfile(doc["Layers"][0]).read() == raw  # type: ignore[union-attr]
        assert tar.extractfile(doc["Config"]).read() == cache.path(image.config.digest).read_bytes()  # type: ignore[union-attr]
    again = image_archive(image, cache)
    assert again == built and hashlib.sha256(built.path.read_bytes()).hexdigest() == built.sha256


def test_layer_that_is_not_its_diff_id_is_refused(tmp_path: Path) -> None:
    image, cache, _ = _image(tmp_path, corrupt_diff_id=True)
    with pytest.raises(VerifyError, match="does not decompress to its diff_id"):
        write_docker_archive(image, cache, tmp_path / "out.tar")
