"""A GitHub-releases-shaped tree of ollama release archives that carry the ollama stand-in.

Layout, as under https://github.com/ollama/ollama/releases/download::

    <root>/ollama/ollama/releases/download/v<version>/ollama-linux-<arch>.tgz       (versions <= 0.13)
    <root>/ollama/ollama/releases/download/v<version>/ollama-linux-<arch>.tar.zst   (versions >= 0.14)
    <root>/ollama/ollama/releases/download/v<version>/sha256sum.txt

Each archive holds ``bin/ollama`` (the stand-in, mode 755) and ``lib/ollama/`` with placeholder libraries,
like the real ones. Archives are deterministic: fixed mtimes, owners and compression settings.

The current version (config.OLLAMA_VERSION_CURRENT) is shaped like today's releases, as ollama's
scripts/build_linux.sh and scripts/deduplicate_cuda_libs.sh pack them (see current_tars)::

    ollama-linux-amd64.tar.zst            bin/ollama, lib/ollama/{llama-server, libggml-*, cuda_v12/, cuda_v13/,
                                          vulkan/}
    ollama-linux-amd64-rocm.tar.zst       lib/ollama/rocm_v7_2/ only
    ollama-linux-amd64-mlx.tar.zst        lib/ollama/mlx_cuda_v13/, its CUDA libraries symlinks into ../cuda_v13
    ollama-linux-arm64.tar.zst            bin/ollama, lib/ollama/{llama-server, libggml-*, cuda_v12/, cuda_v13/}
    ollama-linux-arm64-jetpack5.tar.zst   ./lib/ollama/cuda_jetpack5/ (tar c ./lib/..., so "./" members)
    ollama-linux-arm64-jetpack6.tar.zst   ./lib/ollama/cuda_jetpack6/
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
_Files = dict[str, tuple[bytes, int]]  # archive path -> (content, mode)

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
    flavour: str = ""  # "" (the base archive), "rocm", "mlx", "jetpack5", "jetpack6"

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

    def asset(self, version: str, arch: str, flavour: str = "") -> ReleaseAsset:
        for asset in self.assets:
            if asset.version == version and asset.arch == arch and asset.flavour == flavour:
                return asset
        raise KeyError(f"no release asset for {version} {arch} {flavour or 'base'}")

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


def _add_member(archive: tarfile.TarFile, name: str, data: bytes | None, mode: int, link: str | None = None) -> None:
    member = tarfile.TarInfo(name)
    member.mtime = ARCHIVE_MTIME
    member.uid = member.gid = 0
    member.uname = member.gname = "root"
    member.mode = mode
    if link is not None:
        member.type = tarfile.SYMTYPE
        member.linkname = link
        member.mode = 0o777
        archive.addfile(member)
    elif data is None:
        member.type = tarfile.DIRTYPE
        archive.addfile(member)
    else:
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))


def standin_binary(version: str) -> bytes:
    """bin/ollama of every release: the ollama stand-in for ``version``."""
    from testbed.standin_server import zipapp_bytes

    return zipapp_bytes(version)


def pack_tar(files: _Files, links: dict[str, str] | None = None, prefix: str = "", below: str = "") -> bytes:
    """An uncompressed tar: a directory member for every parent (those under ``below`` only, as ``tar c
    lib/ollama/rocm_v*`` packs no lib/), then files and symlinks, sorted, with fixed metadata. ``prefix`` ("./")
    imitates ``tar c ./lib/...``."""
    links = links or {}
    names = list(files) + list(links)
    parents = {str(parent) for name in names for parent in Path(name).parents if str(parent) != "."}
    directories = sorted(d for d in parents if d.startswith(below))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for directory in directories:
            _add_member(archive, prefix + directory + "/", None, 0o755)
        for name in sorted(names):
            if name in links:
                _add_member(archive, prefix + name, None, 0o777, link=links[name])
            else:
                data, mode = files[name]
                _add_member(archive, prefix + name, data, mode)
    return buffer.getvalue()


def build_tar(version: str, arch: str) -> bytes:
    """The uncompressed tar of one pre-0.30 release: bin/ollama and lib/ollama/... (sorted, fixed metadata)."""
    files: _Files = {"bin/ollama": (standin_binary(version), 0o755)}
    for library, size in _LIBRARIES[arch].items():
        files[library] = (placeholder_library(library.rsplit("/", 1)[-1], version, arch, size), 0o755)
    return pack_tar(files)


# Since 0.30 ollama runs llama.cpp's llama-server; the -mlx overlay exists since 0.23.1.
CURRENT_LAYOUT_SINCE = (0, 30, 0)
MLX_SINCE = (0, 23, 1)

# Versioned CUDA/ROCm runtime libraries: (directory, library, soname version, full version), packed as
# libfoo.so -> libfoo.so.12 -> libfoo.so.12.8.90, as NVIDIA's and AMD's redistributables are.
_RUNTIMES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "cuda_v12": (("libcudart", "12", "12.8.90"), ("libcublas", "12", "12.8.4.1"), ("libcublasLt", "12", "12.8.4.1")),
    "cuda_v13": (("libcudart", "13", "13.0.96"), ("libcublas", "13", "13.1.0.3"), ("libcublasLt", "13", "13.1.0.3")),
    "rocm_v7_2": (("libhipblas", "3", "3.0.0"), ("librocblas", "5", "5.0.0"), ("libamdhip64", "7", "7.2.26015")),
    "cuda_jetpack5": (("libcudart", "11.0", "11.4.298"), ("libcublas", "11", "11.6.6.84")),
    "cuda_jetpack6": (("libcudart", "12", "12.6.68"), ("libcublas", "12", "12.6.1.4")),
}
_CPU_VARIANTS = {
    "amd64": ("x64", "sse42", "sandybridge", "haswell", "skylakex", "icelake", "alderlake"),
    "arm64": ("armv8.0_1", "armv8.2_1", "armv8.2_2", "armv8.6_1"),
}
# Backend directories of each base archive (its GPU backend library in each), and of each overlay.
_BASE_BACKENDS = {
    "amd64": {"cuda_v12": "libggml-cuda.so", "cuda_v13": "libggml-cuda.so", "vulkan": "libggml-vulkan.so"},
    "arm64": {"cuda_v12": "libggml-cuda.so", "cuda_v13": "libggml-cuda.so"},
}
_OVERLAYS = {
    "amd64": {"rocm": {"rocm_v7_2": "libggml-hip.so"}, "mlx": {"mlx_cuda_v13": "libmlxc.so"}},
    "arm64": {"jetpack5": {"cuda_jetpack5": "libggml-cuda.so"}, "jetpack6": {"cuda_jetpack6": "libggml-cuda.so"}},
}


def current_layout(version: str) -> bool:
    """Releases from 0.30 on are packed as today's: split overlays, llama-server, versioned runtimes."""
    return _version_key(version) >= CURRENT_LAYOUT_SINCE


def _library(files: _Files, path: str, version: str, arch: str) -> None:
    files[path] = (placeholder_library(path.rsplit("/", 1)[-1], version, arch, 0), 0o755)


def _backends(files: _Files, links: dict[str, str], backends: dict[str, str], version: str, arch: str) -> None:
    for directory, library in backends.items():
        _library(files, f"lib/ollama/{directory}/{library}", version, arch)
        for name, soname, full in _RUNTIMES.get(directory, ()):
            base = f"lib/ollama/{directory}/{name}.so"
            _library(files, f"{base}.{full}", version, arch)
            links[f"{base}.{soname}"] = f"{name}.so.{full}"
            links[base] = f"{name}.so.{soname}"


def current_tars(version: str, arch: str) -> dict[str, bytes]:
    """The uncompressed tars of a current release for ``arch``: {"": base, "rocm": ..., "mlx": ..., ...}.

    Tiny files (a placeholder header each); the layout is what matters. The -mlx overlay's CUDA libraries are
    relative symlinks into ../cuda_v13 (deduplicate_cuda_libs.sh), so it only works on top of the base archive."""
    files: _Files = {"bin/ollama": (standin_binary(version), 0o755)}
    links: dict[str, str] = {}
    _library(files, "lib/ollama/llama-server", version, arch)
    _library(files, "lib/ollama/libggml-base.so.0.9.7", version, arch)
    links["lib/ollama/libggml-base.so.0"] = "libggml-base.so.0.9.7"
    links["lib/ollama/libggml-base.so"] = "libggml-base.so.0"
    for variant in _CPU_VARIANTS[arch]:
        _library(files, f"lib/ollama/libggml-cpu-{variant}.so", version, arch)
    _backends(files, links, _BASE_BACKENDS[arch], version, arch)
    tars = {"": pack_tar(files, links)}
    for flavour, backends in _OVERLAYS[arch].items():
        if flavour == "mlx" and _version_key(version) < MLX_SINCE:
            continue
        files, links = {}, {}
        _backends(files, links, backends, version, arch)
        if flavour == "mlx":
            _library(files, "lib/ollama/mlx_cuda_v13/libmlx.so", version, arch)
            for name, soname, _full in _RUNTIMES["cuda_v13"]:
                links[f"lib/ollama/mlx_cuda_v13/{name}.so.{soname}"] = f"../cuda_v13/{name}.so.{soname}"
        # build_linux.sh packs the jetpack variants with `tar c ./lib/ollama/cuda_jetpackN`.
        prefix = "./" if flavour.startswith("jetpack") else ""
        tars[flavour] = pack_tar(files, links, prefix=prefix, below="lib/ollama/")
    return tars


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
            tars = current_tars(version, arch) if current_layout(version) else {"": build_tar(version, arch)}
            for flavour, tar_bytes in tars.items():
                filename = f"ollama-linux-{arch}{'-' + flavour if flavour else ''}.{style}"
                data = compress(tar_bytes, style)
                path = release_dir / filename
                _write_atomic(path, data)
                digest = hashlib.sha256(data).hexdigest()
                assets.append(ReleaseAsset(version, arch, filename, path, digest, len(data), flavour))
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
