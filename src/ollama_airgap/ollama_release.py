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

    @property
    def arch(self) -> str:
        return parse_asset_name(self.name)[0]

    @property
    def variant(self) -> str:
        """ "" for the base archive, else the overlay: "rocm", "mlx", "jetpack5", "jetpack6"."""
        return parse_asset_name(self.name)[1]


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


# What each architecture's release offers on top of its base archive (scripts/build_linux.sh upstream): overlays
# unpacked over the base into the same prefix. -mlx's CUDA libraries are symlinks into the base's cuda_v13.
OVERLAYS: dict[str, tuple[str, ...]] = {"amd64": ("rocm", "mlx"), "arm64": ("jetpack5", "jetpack6")}
JETPACKS = (5, 6)
MLX_SINCE = (0, 23, 1)  # first release with ollama-linux-amd64-mlx
_ASSET_RE = re.compile(r"^ollama-linux-(amd64|arm64)(?:-(rocm|mlx|jetpack5|jetpack6))?(\.tar\.zst|\.tgz)$")


def asset_names(arch: str, rocm: bool = False, mlx: bool = False, jetpack: tuple[int, ...] = ()) -> list[str]:
    """Archive names (without suffix) to carry for ``arch``: the base first, then the selected overlays, in the
    order a host unpacks them. Overlays that do not exist for ``arch`` are not asked for."""
    wanted = {"rocm": rocm, "mlx": mlx, **{f"jetpack{n}": n in jetpack for n in JETPACKS}}
    return [f"ollama-linux-{arch}"] + [
        f"ollama-linux-{arch}-{overlay}" for overlay in OVERLAYS.get(arch, ()) if wanted[overlay]
    ]


def parse_asset_name(name: str) -> tuple[str, str]:
    """ "ollama-linux-amd64-rocm.tar.zst" -> ("amd64", "rocm"); the base archive's variant is "" ."""
    match = _ASSET_RE.match(name)
    if not match:
        raise ValueError(f"{name!r} is not an ollama Linux release archive name")
    return match.group(1), match.group(2) or ""


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
