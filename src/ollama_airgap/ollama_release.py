"""The pinned ollama release for each architecture, fetched from GitHub releases (or a mirror of them) and
checked against the release's own sha256sum.txt."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .cache import BlobCache
from .download import Fetcher, Progress
from .errors import FetchError, NotFoundError, VerifyError
from .hashing import HEX_RE

RELEASE_PATH = "/ollama/ollama/releases/download/v{version}/{name}"
# install.sh tries the newer .tar.zst first and falls back to .tgz (releases up to 0.13 ship only .tgz).
ARCHIVE_SUFFIXES = (".tar.zst", ".tgz")
_SUM_LINE = re.compile(r"^([0-9a-fA-F]{64})\s+\*?(?:\./)?(?:dist/)?(\S+)$")


@dataclass(frozen=True)
class ReleaseFile:
    version: str
    name: str  # e.g. ollama-linux-amd64.tgz
    sha256: str
    size: int
    url: str

    @property
    def bundle_path(self) -> str:
        return f"ollama/{self.version}/{self.name}"


def release_url(base_url: str, version: str, name: str) -> str:
    return base_url.rstrip("/") + RELEASE_PATH.format(version=version, name=name)


def parse_sha256sums(text: str, source: str) -> dict[str, str]:
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _SUM_LINE.match(line.strip())
        if not match:
            raise VerifyError(f"{source}: line {number} is not '<sha256>  <file>'")
        sums[match.group(2).rsplit("/", 1)[-1]] = match.group(1).lower()
    return sums


def asset_names(arch: str, rocm: bool = False) -> list[str]:
    return [f"ollama-linux-{arch}"] + ([f"ollama-linux-{arch}-rocm"] if rocm else [])


class ReleaseFetcher:
    def __init__(self, base_url: str, fetcher: Fetcher) -> None:
        self.base_url = base_url
        self.fetcher = fetcher

    def sha256sums(self, version: str) -> tuple[bytes, dict[str, str]]:
        url = release_url(self.base_url, version, "sha256sum.txt")
        try:
            data = self.fetcher.get_bytes(url, what=f"ollama {version} sha256sum.txt", limit=1 << 20)
        except NotFoundError:
            raise NotFoundError(
                f"ollama release v{version}: no sha256sum.txt at {url} (is the version right?)"
            ) from None
        return data, parse_sha256sums(data.decode("utf-8", "replace"), url)

    def resolve(self, version: str, flavour: str, sums: dict[str, str], pinned: str | None = None) -> ReleaseFile:
        """Pick the archive form as install.sh does: the .tar.zst when the release has it, else the .tgz."""
        candidates = [flavour + s for s in ARCHIVE_SUFFIXES]
        if pinned:
            candidates = [pinned]
        for name in candidates:
            url = release_url(self.base_url, version, name)
            try:
                resp = self.fetcher.request("HEAD", url, what=f"ollama {version} {name}")
            except NotFoundError:
                continue
            if name not in sums:
                raise VerifyError(f"ollama release v{version}: {name} is not listed in its sha256sum.txt")
            size = int(resp.headers.get("Content-Length", "-1"))
            if size < 0:
                raise FetchError(f"ollama release v{version}: {url} gave no Content-Length")
            return ReleaseFile(version=version, name=name, sha256=sums[name], size=size, url=url)
        tried = ", ".join(candidates)
        raise NotFoundError(f"ollama release v{version}: none of {tried} found under {self.base_url}")

    def fetch(self, release: ReleaseFile, cache: BlobCache, progress: Progress | None = None) -> None:
        digest = "sha256:" + release.sha256
        if not HEX_RE.match(release.sha256):
            raise VerifyError(f"{release.name}: bad sha256 {release.sha256!r}")
        if cache.has(digest):
            return
        partial = self.fetcher.download(
            release.url,
            cache.partial(digest),
            sha256=release.sha256,
            size=release.size,
            what=f"ollama v{release.version} {release.name}",
            progress=progress,
        )
        cache.commit(digest, partial)
