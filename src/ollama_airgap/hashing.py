"""sha256 of files and streams, with OpenSSL doing the work in large chunks (about 1 GB/s with SHA-NI)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

CHUNK = 1 << 20
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
HEX_RE = re.compile(r"^[0-9a-f]{64}$")

Progress = Callable[[int], None]


def sha256_file(path: Path, progress: Progress | None = None, hasher: hashlib._Hash | None = None) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks into one reused buffer."""
    digest = hasher or hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as handle:
        while n := handle.readinto(buf):
            digest.update(view[:n])
            if progress:
                progress(n)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_hex(digest: str) -> str:
    """``sha256:<hex>`` → ``<hex>``, refusing anything else (digests come from untrusted manifests)."""
    if not DIGEST_RE.match(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return digest.split(":", 1)[1]
