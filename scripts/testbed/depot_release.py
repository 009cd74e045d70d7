"""CNCF Distribution's release, shaped like GitHub's, built from Debian's docker-registry binary.

The real release (github.com/distribution/distribution/releases/tag/v2.8.3) publishes per platform
``registry_2.8.3_linux_amd64.tar.gz`` (members ``LICENSE``, ``README.md``, ``registry``) and beside it
``registry_2.8.3_linux_amd64.tar.gz.sha256`` (``<hex>  <name>``). The test bed serves the same names from its
GitHub-releases stand-in (nginx), with Debian's /usr/bin/docker-registry (Distribution 2.8.2, a Go binary linked
only against libc) as ``registry``:

    <root>/distribution/distribution/releases/download/v2.8.3/registry_2.8.3_linux_amd64.tar.gz[.sha256]
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

DEPOT_VERSION = "2.8.3"
DEPOT_RELEASES_PATH = "distribution/distribution/releases/download"
REGISTRY_BINARY = Path("/usr/bin/docker-registry")
MTIME = 1_700_000_000  # fixed: the tarball's bytes (and sha256) are the same on every run


def _member(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, MTIME
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


def build_depot_release(root: Path, version: str = DEPOT_VERSION, binary: Path = REGISTRY_BINARY) -> Path:
    """Write the amd64 registry tarball and its .sha256 under ``root``; returns the tarball's path."""
    name = f"registry_{version}_linux_amd64.tar.gz"
    directory = root / DEPOT_RELEASES_PATH / f"v{version}"
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    raw = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=MTIME, compresslevel=1) as zipped,
        tarfile.open(fileobj=zipped, mode="w") as tar,
    ):
        _member(tar, "LICENSE", b"Apache License 2.0 (CNCF Distribution)\n", 0o644)
        _member(tar, "README.md", b"# registry (test bed: Debian's docker-registry binary)\n", 0o644)
        _member(tar, "registry", binary.read_bytes(), 0o755)
    data = raw.getvalue()
    target.write_bytes(data)
    (directory / f"{name}.sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
    return target
