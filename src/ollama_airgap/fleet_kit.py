"""The fleet kit: the depot's engine, CNCF Distribution's registry, carried in the bundle.

With ``fleet: {depot: true}`` in the spec, the bundle carries the registry release of each of the bundle's
architectures, fetched like any upstream artifact from Distribution's GitHub releases (or the ``github.com``
mirror) and checked against the ``.sha256`` file each release publishes beside the tarball
(``registry_2.8.3_linux_amd64.tar.gz`` + ``registry_2.8.3_linux_amd64.tar.gz.sha256``). The deploy side
(roles/depot) installs it on the depot host, loads the bundle into it, and hosts fetch from it
(``bundle_transport: depot``). Without the key nothing changes: the bundle deploys by push as before.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .bundle import Entry
from .cache import BlobCache
from .download import Fetcher
from .errors import FetchError, SpecError, VerifyError
from .hashing import HEX_RE
from .progress import Reporter
from .swarm_kit import P2PSpec, parse_p2p_spec

DISTRIBUTION_VERSION = "2.8.3"
RELEASE_PATH = "/distribution/distribution/releases/download/v{version}/{name}"
FLEET_KEYS = {"depot", "p2p"}
DEPOT_KEYS = {"version", "url"}
VERSION_RE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")
_SUM_RE = re.compile(r"^([0-9a-fA-F]{64})\s+\*?(\S+)\s*$")


@dataclass(frozen=True)
class FleetSpec:
    depot: bool = False
    version: str = DISTRIBUTION_VERSION
    url: str = ""  # base URL standing in for https://github.com (default: the spec's github.com mirror)
    p2p: P2PSpec | None = None  # swarm_kit.py: libtorrent wheels for bundle_transport p2p


@dataclass(frozen=True)
class DepotFile:
    version: str
    arch: str
    sha256: str
    size: int
    url: str

    @property
    def name(self) -> str:
        return asset_name(self.version, self.arch)

    @property
    def bundle_path(self) -> str:
        return f"depot/distribution/{self.version}/{self.name}"


def asset_name(version: str, arch: str) -> str:
    return f"registry_{version}_linux_{arch}.tar.gz"


def parse_fleet_spec(value: Any, fail: Callable[[str, str], SpecError]) -> FleetSpec:
    """``fleet: {depot: true}`` or ``fleet: {depot: {version: 2.8.3, url: https://mirror}}``; absent: no depot."""
    if value is None:
        return FleetSpec()
    if not isinstance(value, dict) or set(value) - FLEET_KEYS:
        raise fail("fleet", f"must be a mapping with keys from {sorted(FLEET_KEYS)}")
    depot = value.get("depot", False)
    p2p = parse_p2p_spec(value.get("p2p"), fail)
    if isinstance(depot, bool):
        return FleetSpec(depot=depot, p2p=p2p)
    if not isinstance(depot, dict) or set(depot) - DEPOT_KEYS:
        raise fail("fleet.depot", f"must be true, false or a mapping with keys from {sorted(DEPOT_KEYS)}")
    version = str(depot.get("version", DISTRIBUTION_VERSION)).removeprefix("v")
    if not VERSION_RE.match(version):
        raise fail("fleet.depot.version", f"{version!r} is not a Distribution release like 2.8.3")
    url = depot.get("url", "")
    if url and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
        raise fail("fleet.depot.url", f"{url!r} is not an http(s) URL")
    return FleetSpec(depot=True, version=version, url=url.rstrip("/"), p2p=p2p)


def resolve_depot(fleet: FleetSpec, base_url: str, architectures: tuple[str, ...], fetcher: Fetcher) -> list[DepotFile]:
    """The registry tarball of each architecture, with the sha256 its release publishes and its size."""
    if not fleet.depot:
        return []
    base = (fleet.url or base_url).rstrip("/")
    files = []
    for arch in architectures:
        name = asset_name(fleet.version, arch)
        url = base + RELEASE_PATH.format(version=fleet.version, name=name)
        what = f"distribution v{fleet.version} {name}"
        text = fetcher.get_bytes(url + ".sha256", what=what + ".sha256", limit=4096).decode("utf-8", "replace")
        match = _SUM_RE.match(text.strip())
        if not match or match.group(2).lstrip("./") != name or not HEX_RE.match(match.group(1).lower()):
            raise VerifyError(f"{what}: {url}.sha256 does not read '<sha256>  {name}'")
        head = fetcher.request("HEAD", url, what=what)
        size = int(head.headers.get("Content-Length", "-1"))
        if size < 0:
            raise FetchError(f"{what}: {url} gave no Content-Length")
        files.append(DepotFile(fleet.version, arch, match.group(1).lower(), size, url))
    return files


def fetch_depot(files: list[DepotFile], fetcher: Fetcher, cache: BlobCache, reporter: Reporter) -> list[Entry]:
    """Fetch each tarball into the cache (checked in-stream against the published sha256); the bundle entries."""
    entries = []
    for item in files:
        digest = "sha256:" + item.sha256
        if not (cache.has(digest) and cache.check(digest, item.size)):
            partial = fetcher.download(
                item.url, cache.partial(digest), sha256=item.sha256, size=item.size,
                what=f"distribution v{item.version} {item.name}", progress=reporter.task(item.name, item.size),
            )  # fmt: skip
            cache.commit(digest, partial)
        entries.append(Entry(item.bundle_path, item.size, item.sha256, cache.path(digest)))
    return entries


def fleet_meta(files: list[DepotFile]) -> dict[str, Any]:
    """bundle.yaml's ``fleet`` key (read by roles/depot): the engine and its tarball per architecture."""
    if not files:
        return {}
    return {
        "fleet": {
            "depot": {
                "engine": "distribution",
                "version": files[0].version,
                "binary": "registry",
                "files": [
                    {
                        "arch": f.arch,
                        "name": f.name,
                        "path": f.bundle_path,
                        "sha256": f.sha256,
                        "size": f.size,
                        "url": f.url,
                    }
                    for f in files
                ],
            }
        }
    }
