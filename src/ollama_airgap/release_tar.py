"""Releases shipped as ``.tar.zst`` (ollama >= 0.14) are carried as a plain ``.tar``, so hosts need no zstd
(some distributions ship without it, ollama#17860): Python's tarfile unpacks it on the host.

The ``.zst`` from the cache is decompressed in one stream that hashes its input (it must still be the upstream
sha256 of the release's sha256sum.txt) and its output (the plain tar's own sha256, recorded in bundle.yaml). The tar
is stored in the blob cache by that digest; ``<cache>/derived/zst-tar/<upstream hex>`` remembers which tar a
``.zst`` gave, so a later build re-hashes the cached tar instead of decompressing again. bundle.yaml's
``ollama.files`` entry chains the two: ``name``/``path``/``sha256``/``size`` are the tar's, ``upstream_archive``,
``upstream_sha256`` and ``upstream_size`` the release file's (its ``url`` too).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import zstandard

from .bundle import Entry
from .cache import BlobCache
from .errors import VerifyError
from .hashing import CHUNK, HEX_RE, sha256_file
from .ollama_release import ReleaseFile
from .progress import Advance

ZST = ".tar.zst"
# A release tar is mostly already-compressed GPU libraries; nothing legitimate expands past this.
MAX_RATIO = 64


@dataclass(frozen=True)
class CarriedRelease:
    """What the bundle carries for one release file: the file itself, or the plain tar made from its .zst."""

    release: ReleaseFile
    name: str
    sha256: str
    size: int
    source: Path

    @property
    def path(self) -> str:
        return f"ollama/{self.release.version}/{self.name}"

    @property
    def converted(self) -> bool:
        return self.name != self.release.name

    def entry(self) -> Entry:
        return Entry(self.path, self.size, self.sha256, self.source)

    def meta(self) -> dict[str, Any]:
        """bundle.yaml's ``ollama.files`` record."""
        r = self.release
        item: dict[str, Any] = {"name": self.name, "path": self.path, "sha256": self.sha256, "size": self.size}
        item["url"] = r.url
        if self.converted:
            item.update(upstream_archive=r.name, upstream_sha256=r.sha256, upstream_size=r.size)
        return item


def _memo(cache: BlobCache, upstream_hex: str) -> Path:
    return cache.root / "derived" / "zst-tar" / upstream_hex


def decompress(source: Path, upstream_sha256: str, name: str, cache: BlobCache, advance: Advance) -> tuple[str, int]:
    """Stream ``source`` (.tar.zst) into a cached plain tar; returns (tar sha256, size). The input must hash to
    ``upstream_sha256`` and be one complete zstd stream, else VerifyError naming ``name`` (nothing is kept)."""
    tmp = cache.partial_dir / f"zst-tar-{os.getpid()}-{upstream_sha256[:16]}"
    hashed_in, hashed_out = hashlib.sha256(), hashlib.sha256()
    limit = max(source.stat().st_size, 1 << 20) * MAX_RATIO
    size = 0
    try:
        with open(source, "rb") as raw, open(tmp, "wb") as out:

            class Hashing:  # what the decompressor reads is hashed on the way
                def read(self, n: int = CHUNK) -> bytes:
                    data = raw.read(n)
                    hashed_in.update(data)
                    advance(len(data))
                    return data

            hashing = cast("IO[bytes]", Hashing())
            reader = zstandard.ZstdDecompressor().stream_reader(hashing, read_size=CHUNK, read_across_frames=True)
            while chunk := reader.read(CHUNK):
                hashed_out.update(chunk)
                out.write(chunk)
                size += len(chunk)
                if size > limit:
                    raise VerifyError(f"{name}: decompresses past {MAX_RATIO}x its size; refused")
            hashed_in.update(raw.read())  # trailing bytes after the last frame still count
    except zstandard.ZstdError as exc:
        tmp.unlink(missing_ok=True)
        if sha256_file(source) != upstream_sha256:
            raise VerifyError(f"{name}: does not match the upstream sha256 {upstream_sha256}") from None
        raise VerifyError(f"{name}: not a valid zstd stream ({exc})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    got = hashed_in.hexdigest()
    if got != upstream_sha256:
        tmp.unlink(missing_ok=True)
        raise VerifyError(f"{name}: sha256 {got} does not match the upstream sha256 {upstream_sha256}")
    digest = hashed_out.hexdigest()
    if cache.has("sha256:" + digest):
        tmp.unlink()
    else:
        cache.commit("sha256:" + digest, tmp)
    return digest, size


def carry(release: ReleaseFile, cache: BlobCache, advance: Advance) -> CarriedRelease:
    """The file the bundle carries for ``release`` (a .tgz as it is; a .tar.zst as its plain tar)."""
    source = cache.path("sha256:" + release.sha256)
    if not release.name.endswith(ZST):
        return CarriedRelease(release, release.name, release.sha256, release.size, source)
    name = release.name.removesuffix(".zst")
    memo = _memo(cache, release.sha256)
    remembered = memo.read_text().split() if memo.is_file() else []
    if len(remembered) == 2 and HEX_RE.match(remembered[0]) and remembered[1].isdigit():
        digest, size = remembered[0], int(remembered[1])
        if cache.has("sha256:" + digest) and cache.check("sha256:" + digest, size):
            advance(release.size)
            return CarriedRelease(release, name, digest, size, cache.path("sha256:" + digest))
    digest, size = decompress(source, release.sha256, release.name, cache, advance)
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(f"{digest} {size}\n")
    return CarriedRelease(release, name, digest, size, cache.path("sha256:" + digest))
