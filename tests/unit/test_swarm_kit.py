"""The swarm kit (src/ollama_airgap/swarm_kit.py) and the pure parts of the swarm's engine and module.

``fleet.p2p`` parsing, the wheels' bundle entries (a minimal real wheel served by ``--find-links``, so pip runs
for real and nothing leaves the machine), the wheel the engine picks for an interpreter, the piece size, and the
peers a host dials.
"""

from __future__ import annotations

import hashlib
import importlib
import platform
import sys
import zipfile
from pathlib import Path

import pytest

from ollama_airgap.errors import SpecError
from ollama_airgap.fleet_kit import FleetSpec, parse_fleet_spec
from ollama_airgap.swarm_kit import P2P_WHEELS_DIR, P2PSpec, p2p_entries, parse_p2p_spec

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / ".ansible" / "collections"))
engine = importlib.import_module("ansible_collections.ollama_airgap.deploy.plugins.module_utils.swarm_peer")
module = importlib.import_module("ansible_collections.ollama_airgap.deploy.plugins.modules.airgap_swarm_fetch")


def fail(key: str, problem: str) -> SpecError:
    return SpecError(f"spec: {key}: {problem}")


@pytest.mark.parametrize("value", [None, False])
def test_no_swarm_kit_by_default(value: object) -> None:
    assert parse_p2p_spec(value, fail) is None
    assert parse_fleet_spec({"depot": False} if value is None else {"p2p": value}, fail) == FleetSpec()


def test_p2p_true_and_explicit() -> None:
    assert parse_p2p_spec(True, fail) == P2PSpec()
    got = parse_p2p_spec({"python": ["3.11", "3.12"], "platforms": "manylinux_2_28_aarch64"}, fail)
    assert got == P2PSpec(("3.11", "3.12"), ("manylinux_2_28_aarch64",))
    assert parse_fleet_spec({"depot": True, "p2p": True}, fail).p2p == P2PSpec()
    assert P2PSpec().resolved(["amd64", "arm64"]).platforms == ("manylinux_2_17_x86_64", "manylinux_2_17_aarch64")


@pytest.mark.parametrize(
    ("value", "key"),
    [({"pythons": ["3.11"]}, "fleet.p2p"), ({"python": [3.11]}, "fleet.p2p.python"),
     ({"python": ["2.7"]}, "fleet.p2p.python"), ({"platforms": ["win_amd64"]}, "fleet.p2p.platforms"),
     ("yes", "fleet.p2p")],
)  # fmt: skip
def test_bad_p2p_names_the_key(value: object, key: str) -> None:
    with pytest.raises(SpecError, match=f"spec: {key}: "):
        parse_p2p_spec(value, fail)


def fake_wheel(folder: Path, python: str = "cp311", tag: str = "manylinux_2_17_x86_64") -> Path:
    """A minimal valid wheel named like libtorrent's (pip reads its METADATA for dependencies: none)."""
    path = folder / f"libtorrent-2.1.1-{python}-{python}-{tag}.whl"
    info = "libtorrent-2.1.1.dist-info"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("libtorrent/__init__.py", "version = 'fake'\n")
        wheel.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: libtorrent\nVersion: 2.1.1\n")
        wheel.writestr(f"{info}/WHEEL", f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {python}-{python}-{tag}\n")
        wheel.writestr(f"{info}/RECORD", "")
    return path


def test_p2p_entries_list_each_wheel_with_its_sha256(tmp_path: Path) -> None:
    links = tmp_path / "links"
    links.mkdir()
    wheel = fake_wheel(links)
    entries, meta = p2p_entries(P2PSpec(("3.11",), ("manylinux_2_17_x86_64",)), ["amd64"], tmp_path / "cache",
                                find_links=(links,))  # fmt: skip
    assert [(e.path, e.size, e.sha256) for e in entries] == [
        (f"{P2P_WHEELS_DIR}/{wheel.name}", wheel.stat().st_size, hashlib.sha256(wheel.read_bytes()).hexdigest())
    ]
    assert meta["p2p"]["wheels"] == [entries[0].path] and meta["p2p"]["engine"] == "libtorrent==2.1.1"
    assert p2p_entries(None, ["amd64"], tmp_path) == ([], {})


def test_engine_picks_the_interpreters_wheel_and_unpacks_once(tmp_path: Path) -> None:
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    good = fake_wheel(tmp_path, tag, f"manylinux_2_17_{platform.machine()}")
    other = fake_wheel(tmp_path, "cp39", f"manylinux_2_17_{platform.machine()}")
    assert engine.pick_wheel([str(other), str(good)]) == str(good)
    with pytest.raises(engine.SwarmError, match="no libtorrent wheel for python"):
        engine.pick_wheel([str(other)])
    with pytest.raises(engine.SwarmError, match="is altered"):
        engine.unpack_wheel(str(good), str(tmp_path / "lib"), "0" * 64)
    path, new = engine.unpack_wheel(str(good), str(tmp_path / "lib"), hashlib.sha256(good.read_bytes()).hexdigest())
    assert new and (Path(path) / "libtorrent" / "__init__.py").is_file()
    assert engine.unpack_wheel(str(good), str(tmp_path / "lib")) == (path, False)


def test_piece_size_is_a_power_of_two_within_bounds() -> None:
    assert engine.piece_size_for(0) == engine.MIN_PIECE
    assert engine.piece_size_for(1 << 40) == engine.MAX_PIECE
    size = engine.piece_size_for(4 << 30)
    assert size & (size - 1) == 0 and (4 << 30) // size <= engine.TARGET_PIECES


def test_each_host_dials_the_depot_and_its_own_window() -> None:
    peers = ["depot:6882", *(f"h{i}:6881" for i in range(10))]
    assert module.dial_set(peers, "h3:6881", 1, 3) == ["depot:6882", "h4:6881", "h5:6881", "h6:6881"]
    assert module.dial_set(peers, "h9:6881", 1, 2) == ["depot:6882", "h0:6881", "h1:6881"]
    assert module.dial_set(peers, None, 1, 40) == peers
