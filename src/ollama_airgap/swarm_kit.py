"""The swarm kit: libtorrent-rasterbar's manylinux wheels, carried in the bundle for ``bundle_transport: p2p``.

With ``fleet: {p2p: true}`` (or ``{p2p: {python: ["3.11"], platforms: [manylinux_2_17_x86_64]}}``) the bundle
carries ``p2p/wheels/libtorrent-*.whl`` for the hosts' Pythons and platforms, downloaded with
``wheelhouse.download_wheels`` (pip checks each file against the index's sha256) and listed in bundle.yaml with size
and sha256 like every file. Hosts unpack the wheel with zipfile onto sys.path (plugins/module_utils/swarm_peer.py):
no pip and no distribution package. Default Python: the building machine's; default platforms: manylinux_2_17 for
each of the spec's ollama architectures. The package index: the deploy kit's (``--kit-index-url``), else
$OLLAMA_AIRGAP_P2P_INDEX_URL, else PyPI.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bundle import Entry
from .errors import SpecError
from .hashing import sha256_file
from .wheelhouse import check_platform, check_python, download_wheels, machine_python

LIBTORRENT_REQUIREMENT = "libtorrent==2.1.1"
INDEX_ENV = "OLLAMA_AIRGAP_P2P_INDEX_URL"  # a package index for the wheels when no --kit-index-url is given
P2P_WHEELS_DIR = "p2p/wheels"
P2P_KEYS = {"python", "platforms"}
ARCH_PLATFORM = {"amd64": "manylinux_2_17_x86_64", "arm64": "manylinux_2_17_aarch64"}


@dataclass(frozen=True)
class P2PSpec:
    """``fleet.p2p``: the hosts' Pythons and wheel platforms (empty: the defaults above)."""

    pythons: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()

    def resolved(self, architectures: Sequence[str]) -> P2PSpec:
        platforms = self.platforms or tuple(ARCH_PLATFORM[a] for a in architectures if a in ARCH_PLATFORM)
        return P2PSpec(self.pythons or (machine_python(),), platforms)


def parse_p2p_spec(value: Any, fail: Callable[[str, str], SpecError]) -> P2PSpec | None:
    """``p2p:`` absent or false = no swarm kit, true = defaults, else {python: [...], platforms: [...]}."""
    if value is None or value is False:
        return None
    if value is True:
        return P2PSpec()
    if not isinstance(value, dict) or set(value) - P2P_KEYS:
        raise fail("fleet.p2p", f"must be true, false or a mapping with keys from {sorted(P2P_KEYS)}")
    found: dict[str, tuple[str, ...]] = {}
    for key, check in (("python", check_python), ("platforms", check_platform)):
        items = value.get(key, [])
        items = [items] if isinstance(items, str) else items
        if not isinstance(items, list) or any(not isinstance(item, str) for item in items):
            raise fail(f"fleet.p2p.{key}", 'must be a list of quoted strings (e.g. "3.11")')
        try:
            found[key] = tuple(dict.fromkeys(check(item) for item in items))
        except SpecError as exc:
            raise fail(f"fleet.p2p.{key}", str(exc)) from None
    return P2PSpec(found["python"], found["platforms"])


def p2p_entries(
    spec: P2PSpec | None,
    architectures: Sequence[str],
    cache_root: Path,
    index_url: str | None = None,
    find_links: tuple[Path, ...] = (),
) -> tuple[list[Entry], dict[str, Any]]:
    """The wheels' bundle entries (kept under ``cache_root/p2p-wheels``) and bundle.yaml's ``p2p`` record."""
    if spec is None:
        return [], {}
    resolved = spec.resolved(architectures)
    if not resolved.platforms:
        raise SpecError(f"fleet.p2p: no wheel platform for {list(architectures)}; name fleet.p2p.platforms")
    wheels = download_wheels(
        [LIBTORRENT_REQUIREMENT],
        cache_root / "p2p-wheels",
        list(resolved.pythons),
        list(resolved.platforms),
        index_url=index_url or os.environ.get(INDEX_ENV) or None,
        find_links=list(find_links) or None,
    )
    entries = [Entry(f"{P2P_WHEELS_DIR}/{w.name}", w.stat().st_size, sha256_file(w), w) for w in wheels]
    meta = {
        "p2p": {
            "engine": LIBTORRENT_REQUIREMENT,
            "python": list(resolved.pythons),
            "platforms": list(resolved.platforms),
            "wheels": [e.path for e in entries],
        }
    }
    return entries, meta
