"""A content-addressed blob cache, shared across models and builds.

A blob lives at ``<root>/blobs/sha256/<hex>`` only once its digest has been checked; downloads grow in
``<root>/partial/<hex>`` (kept across runs so a killed build resumes) and are renamed into place atomically.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .errors import VerifyError
from .hashing import CHUNK, digest_hex, sha256_bytes, sha256_file


def default_cache_dir() -> Path:
    base = os.environ.get("OLLAMA_AIRGAP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ollama-airgap"
    )
    return Path(base)


class BlobCache:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.partial_dir = root / "partial"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.partial_dir.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.blobs / digest_hex(digest)

    def partial(self, digest: str) -> Path:
        return self.partial_dir / digest_hex(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def commit(self, digest: str, verified_file: Path) -> Path:
        """Move a file whose digest was checked into the cache (atomic rename on the same file system)."""
        target = self.path(digest)
        os.replace(verified_file, target)
        return target

    def check(self, digest: str, size: int | None = None) -> bool:
        """Re-hash a cached blob; a corrupt one is deleted so the next fetch heals the cache."""
        target = self.path(digest)
        try:
            if size is not None and target.stat().st_size != size:
                target.unlink()
                return False
        except FileNotFoundError:
            return False
        if sha256_file(target) == digest_hex(digest):
            return True
        target.unlink(missing_ok=True)
        return False

    def put_bytes(self, data: bytes) -> str:
        """Store small content (a generated layer) and return its digest."""
        digest = "sha256:" + sha256_bytes(data)
        if not self.has(digest):
            tmp = self.partial(digest)
            tmp.write_bytes(data)
            self.commit(digest, tmp)
        return digest

    def import_file(self, source: Path, digest: str | None, what: str) -> str:
        """Copy a local file (a GGUF, a blob of an ollama store) into the cache, hashing it on the way.
        With ``digest`` given, a file whose content differs is refused."""
        tmp = self.partial_dir / f"import-{os.getpid()}-{source.name}"
        hasher = hashlib.sha256()
        try:
            with open(source, "rb", buffering=0) as src, open(tmp, "wb", buffering=0) as dst:
                buf = bytearray(CHUNK)
                view = memoryview(buf)
                while n := src.readinto(buf):
                    hasher.update(view[:n])
                    dst.write(view[:n])
        except FileNotFoundError:
            tmp.unlink(missing_ok=True)
            raise VerifyError(f"{what}: {source} is missing") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        got = "sha256:" + hasher.hexdigest()
        if digest is not None and got != digest:
            tmp.unlink(missing_ok=True)
            raise VerifyError(f"{what}: {source} is corrupt (sha256 {got}, expected {digest})")
        if self.has(got):
            tmp.unlink()
        else:
            self.commit(got, tmp)
        return got
