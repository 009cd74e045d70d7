"""Hosts need no zstd: a .tar.zst release becomes a plain tar at build time (src/ollama_airgap/release_tar.py),
chained to the upstream digest, and the ollama module unpacks plain tars with Python's tarfile."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import tarfile
from pathlib import Path
from types import ModuleType

import pytest
import zstandard

from ollama_airgap import release_tar
from ollama_airgap.cache import BlobCache
from ollama_airgap.errors import VerifyError
from ollama_airgap.ollama_release import ReleaseFile

MODULE = Path(__file__).resolve().parents[2] / "plugins" / "modules" / "airgap_ollama_release.py"


def release_tarball(extra: list[tarfile.TarInfo] | None = None) -> bytes:
    """A release shaped like upstream's: bin/ollama, versioned libraries behind symlinks."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode, info.size = kind, link, mode, len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)

        add("./", kind=tarfile.DIRTYPE)
        add("./bin/", kind=tarfile.DIRTYPE)
        add("./bin/ollama", b"#!/bin/sh\necho ollama\n")
        add("./lib/ollama/", kind=tarfile.DIRTYPE)
        add("./lib/ollama/libggml.so.0.9.1", b"\x7fELF" + b"x" * 5000, mode=0o644)
        add("./lib/ollama/libggml.so.0", kind=tarfile.SYMTYPE, link="libggml.so.0.9.1")
        add("./lib/ollama/libggml.so", kind=tarfile.SYMTYPE, link="libggml.so.0")
        for info in extra or []:
            tar.addfile(info)
    return buffer.getvalue()


def cached_release(cache: BlobCache, name: str, data: bytes) -> ReleaseFile:
    digest = cache.put_bytes(data)
    url = f"http://mirror/ollama/ollama/releases/download/v0.14.1/{name}"
    return ReleaseFile("0.14.1", name, digest.removeprefix("sha256:"), len(data), url)


def test_zst_release_is_carried_as_a_plain_tar_chained_to_the_upstream_digest(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache")
    plain = release_tarball()
    release = cached_release(cache, "ollama-linux-amd64.tar.zst", zstandard.ZstdCompressor().compress(plain))
    carried = release_tar.carry(release, cache, lambda n: None)
    assert carried.name == "ollama-linux-amd64.tar" and carried.path == "ollama/0.14.1/ollama-linux-amd64.tar"
    assert carried.sha256 == hashlib.sha256(plain).hexdigest() and carried.size == len(plain)
    assert carried.source.read_bytes() == plain
    meta = carried.meta()
    assert meta["upstream_archive"] == "ollama-linux-amd64.tar.zst"
    assert meta["upstream_sha256"] == release.sha256 and meta["upstream_size"] == release.size
    assert carried.entry().sha256 == carried.sha256


def test_a_second_build_reuses_the_cached_tar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = BlobCache(tmp_path / "cache")
    release = cached_release(
        cache, "ollama-linux-amd64.tar.zst", zstandard.ZstdCompressor().compress(release_tarball())
    )
    first = release_tar.carry(release, cache, lambda n: None)

    def refuse(*args: object) -> tuple[str, int]:
        raise AssertionError("decompressed again")

    monkeypatch.setattr(release_tar, "decompress", refuse)
    assert release_tar.carry(release, cache, lambda n: None) == first


def test_tgz_release_is_carried_as_it_is(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache")
    release = cached_release(cache, "ollama-linux-amd64.tgz", b"gzip bytes")
    carried = release_tar.carry(release, cache, lambda n: None)
    assert (carried.name, carried.sha256, carried.converted) == (release.name, release.sha256, False)
    assert "upstream_sha256" not in carried.meta()


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_tampered_zst_is_refused_in_one_line_naming_it(tmp_path: Path, damage: str) -> None:
    cache = BlobCache(tmp_path / "cache")
    compressed = zstandard.ZstdCompressor().compress(release_tarball())
    release = cached_release(cache, "ollama-linux-amd64.tar.zst", compressed)
    blob = cache.path("sha256:" + release.sha256)
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        del data[-40:]
    blob.write_bytes(bytes(data))
    with pytest.raises(VerifyError) as caught:
        release_tar.carry(release, cache, lambda n: None)
    message = str(caught.value)
    assert "ollama-linux-amd64.tar.zst" in message and "\n" not in message
    assert not list(cache.partial_dir.iterdir()), "a refused tar is not kept"


# -- the host side: plugins/modules/airgap_ollama_release.py unpacks with tarfile -----------------------------


@pytest.fixture(scope="module")
def module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("airgap_ollama_release", MODULE)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def test_module_unpacks_a_plain_tar_with_tarfile_keeping_symlinks(module: ModuleType, tmp_path: Path) -> None:
    archive = tmp_path / "ollama-linux-amd64.tar"
    archive.write_bytes(release_tarball())
    dest = tmp_path / "release"
    dest.mkdir()
    (dest / "lib" / "ollama").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.write_text("keep")
    (dest / "bin").mkdir()
    (dest / "bin" / "ollama").symlink_to(outside)  # an existing link is replaced, never written through
    assert module.unpack_tar(str(archive), str(dest)) == ""
    assert (dest / "bin" / "ollama").read_text().startswith("#!/bin/sh") and outside.read_text() == "keep"
    assert os.readlink(dest / "lib" / "ollama" / "libggml.so") == "libggml.so.0"
    assert (dest / "lib" / "ollama" / "libggml.so").read_bytes().startswith(b"\x7fELF")
    assert os.access(dest / "bin" / "ollama", os.X_OK)


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize(
    ("member", "why"),
    [
        (_member("../evil"), "unsafe"),
        (_member("./lib/../../evil"), "unsafe"),
        (_member("./lib/escape", tarfile.SYMTYPE, "/etc/passwd"), "links out"),
        (_member("./lib/escape", tarfile.SYMTYPE, "../../etc"), "links out"),
        (_member("./dev/null", tarfile.CHRTYPE), "device"),
    ],
)
def test_module_refuses_hostile_members(module: ModuleType, tmp_path: Path, member: tarfile.TarInfo, why: str) -> None:
    archive = tmp_path / "hostile.tar"
    archive.write_bytes(release_tarball([member]))
    dest = tmp_path / "release"
    dest.mkdir()
    assert why in module.unpack_tar(str(archive), str(dest))
    assert not (tmp_path / "evil").exists()


def test_module_refuses_members_below_a_link_that_leaves(module: ModuleType, tmp_path: Path) -> None:
    dest = tmp_path / "release"
    (dest / "lib").mkdir(parents=True)
    (dest / "lib" / "ollama").symlink_to(tmp_path)  # planted before unpacking
    archive = tmp_path / "r.tar"
    archive.write_bytes(release_tarball())
    assert "below a link" in module.unpack_tar(str(archive), str(dest))
