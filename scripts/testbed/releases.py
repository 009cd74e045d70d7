"""A GitHub-releases-shaped tree of ollama release archives that carry the ollama stand-in.

Layout, as under https://github.com/ollama/ollama/releases/download::

    <root>/ollama/ollama/releases/download/v<version>/ollama-linux-<arch>.tgz       (versions <= 0.13)
    <root>/ollama/ollama/releases/download/v<version>/ollama-linux-<arch>.tar.zst   (versions >= 0.14)
    <root>/ollama/ollama/releases/download/v<version>/sha256sum.txt

Each archive holds ``bin/ollama`` (the stand-in, mode 755) and ``lib/ollama/`` with placeholder libraries,
like the real ones. Archives are deterministic: fixed mtimes, owners and compression settings.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import zstandard

from testbed import config

ARCHES = ("amd64", "arm64")
RELEASES_PATH = "ollama/ollama/releases/download"
CHECKSUM_FILE = "sha256sum.txt"
# Every archive member gets this mtime (2025-01-01T00:00:00Z), so equal content gives equal bytes.
ARCHIVE_MTIME = 1735689600

ArchiveStyle = Literal["tgz", "tar.zst"]

# Placeholder libraries per architecture (path → size), where the real archives carry ggml backends.
_LIBRARIES: dict[str, dict[str, int]] = {
    "amd64": {
        "lib/ollama/libggml-base.so": 128 * 1024,
        "lib/ollama/libggml-cpu-x64.so": 64 * 1024,
        "lib/ollama/libggml-cpu-haswell.so": 64 * 1024,
        "lib/ollama/cuda_v12/libggml-cuda.so": 384 * 1024,
        "lib/ollama/cuda_v13/libggml-cuda.so": 384 * 1024,
    },
    "arm64": {
        "lib/ollama/libggml-base.so": 128 * 1024,
        "lib/ollama/libggml-cpu-armv8.0_1.so": 64 * 1024,
        "lib/ollama/cuda_v12/libggml-cuda.so": 384 * 1024,
    },
}


@dataclass(frozen=True)
class ReleaseAsset:
    version: str
    arch: str
    filename: str
    path: Path
    sha256: str  # hex
    size: int

    @property
    def tag(self) -> str:
        return f"v{self.version}"

    @property
    def url_path(self) -> str:
        """Path below the release base URL: "v0.13.5/ollama-linux-amd64.tgz"."""
        return f"{self.tag}/{self.filename}"


@dataclass(frozen=True)
class ReleaseTree:
    root: Path  # the web root; files live under root/RELEASES_PATH
    assets: tuple[ReleaseAsset, ...]

    def asset(self, version: str, arch: str) -> ReleaseAsset:
        for asset in self.assets:
            if asset.version == version and asset.arch == arch:
                return asset
        raise KeyError(f"no release asset for {version} {arch}")

    def release_dir(self, version: str) -> Path:
        return self.root / RELEASES_PATH / f"v{version}"

    def checksum_file(self, version: str) -> Path:
        return self.release_dir(version) / CHECKSUM_FILE

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(asset.version for asset in self.assets))


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("-")[0].split("."))


def archive_style(version: str) -> ArchiveStyle:
    """ollama ships .tgz up to 0.13 and .tar.zst from 0.14 on."""
    return "tar.zst" if _version_key(version) >= (0, 14) else "tgz"


def latest_version(versions: Iterable[str] = config.OLLAMA_VERSIONS) -> str:
    return max(versions, key=_version_key)


def placeholder_library(name: str, version: str, arch: str, size: int) -> bytes:
    """A clearly marked stand-in for a ggml library: a text header, then deterministic incompressible filler
    (so archives are big enough, ~1 MB, for Range and resume to matter)."""
    header = (
        f"PLACEHOLDER {name} for ollama {version} linux/{arch}.\n"
        "Not a shared library: the ollama-airgap test bed packs this file where the real release has one.\n"
    ).encode()
    filler = hashlib.shake_256(header).digest(max(0, size - len(header)))
    return header + filler


def _add_member(archive: tarfile.TarFile, name: str, data: bytes | None, mode: int) -> None:
    member = tarfile.TarInfo(name)
    member.mtime = ARCHIVE_MTIME
    member.uid = member.gid = 0
    member.uname = member.gname = "root"
    member.mode = mode
    if data is None:
        member.type = tarfile.DIRTYPE
        archive.addfile(member)
    else:
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))


def build_tar(version: str, arch: str) -> bytes:
    """The uncompressed tar of one release: bin/ollama and lib/ollama/... (sorted, fixed metadata)."""
    from testbed.ollama_standin import render_script

    files: dict[str, tuple[bytes, int]] = {"bin/ollama": (render_script(version).encode(), 0o755)}
    for library, size in _LIBRARIES[arch].items():
        files[library] = (placeholder_library(library.rsplit("/", 1)[-1], version, arch, size), 0o755)
    directories = sorted({str(parent) for name in files for parent in Path(name).parents if str(parent) != "."})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for directory in directories:
            _add_member(archive, directory + "/", None, 0o755)
        for name in sorted(files):
            data, mode = files[name]
            _add_member(archive, name, data, mode)
    return buffer.getvalue()


def compress(tar_bytes: bytes, style: ArchiveStyle) -> bytes:
    if style == "tgz":
        return gzip.compress(tar_bytes, compresslevel=9, mtime=0)
    return zstandard.ZstdCompressor(level=19).compress(tar_bytes)


def _write_atomic(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)


def build_release_tree(
    root: Path,
    *,
    versions: Iterable[str] = config.OLLAMA_VERSIONS,
    arches: Iterable[str] = ARCHES,
) -> ReleaseTree:
    """Write the archives and sha256sum.txt of each version under ``root``; return what was written."""
    assets: list[ReleaseAsset] = []
    arch_list = tuple(arches)
    for version in versions:
        style = archive_style(version)
        release_dir = root / RELEASES_PATH / f"v{version}"
        release_dir.mkdir(parents=True, exist_ok=True)
        for stale in release_dir.iterdir():  # a reused root must not keep files this build would not write
            stale.unlink()
        for arch in arch_list:
            filename = f"ollama-linux-{arch}.{style}"
            data = compress(build_tar(version, arch), style)
            path = release_dir / filename
            _write_atomic(path, data)
            assets.append(ReleaseAsset(version, arch, filename, path, hashlib.sha256(data).hexdigest(), len(data)))
        # The release workflow runs `find . -type f | xargs sha256sum`: "<hex>  ./<file>".
        lines = [
            f"{a.sha256}  ./{a.filename}\n" for a in sorted(assets, key=lambda a: a.filename) if a.version == version
        ]
        _write_atomic(release_dir / CHECKSUM_FILE, "".join(lines).encode())
    return ReleaseTree(root, tuple(assets))


def parse_checksums(text: str) -> dict[str, str]:
    """sha256sum.txt → {filename: hex} (the "./" prefix dropped)."""
    sums: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip():
            digest, _, name = line.partition("  ")
            sums[name.removeprefix("./")] = digest
    return sums
