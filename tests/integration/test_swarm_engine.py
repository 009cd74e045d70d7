"""The swarm's engine (plugins/module_utils/swarm_peer.py) on the loopback: libtorrent from the real manylinux wheel
(the local PyPI's copy of PyPI's file) unpacked with zipfile, a seeder and peers as separate processes.

Proves: the torrent is deterministic; a depot and 4 peers deliver every byte and the peers serve each other; a
byte flipped on one peer's copy is caught by the piece hash and fetched again; the depot dropping out after one
peer finished leaves the others to finish from it; a peer killed mid-transfer resumes from its pieces. No hosts.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from testbed.registry import free_port

REPO = Path(__file__).resolve().parents[2]
ENGINE = REPO / "plugins" / "module_utils" / "swarm_peer.py"
BLOB = 24 << 20
WAIT_S = 60.0


def load_engine() -> ModuleType:
    spec = importlib.util.spec_from_file_location("swarm_peer_under_test", ENGINE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


engine = load_engine()


@pytest.fixture(scope="module")
def libtorrent_wheel() -> Path:
    from ollama_airgap.swarm_kit import LIBTORRENT_REQUIREMENT
    from testbed.pypi_mirror import cached_wheels

    wheels = [w for w in cached_wheels([LIBTORRENT_REQUIREMENT]) if w.name.startswith("libtorrent-")]
    assert wheels, "no libtorrent wheel for this machine"
    return wheels[0]


@pytest.fixture(scope="module")
def lt_lib(libtorrent_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    lib = tmp_path_factory.mktemp("lib")
    picked = engine.pick_wheel([str(libtorrent_wheel)])
    path, new = engine.unpack_wheel(picked, str(lib), engine.sha256_file(picked))
    assert new and engine.unpack_wheel(picked, str(lib))[1] is False  # unpacked once
    return str(path)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("bundle") / "bundle"
    contents = {"models/blobs/sha256-big": os.urandom(BLOB), "bundle.yaml": b"name: t\n", "SHA256SUMS": b"x\n"}
    for path, data in contents.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    sums = {path: hashlib.sha256(data).hexdigest() for path, data in contents.items()}
    return {"root": root, "paths": sorted(contents), "sha": sums}


@pytest.fixture(scope="module")
def torrent(lt_lib: str, tree: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    lt = engine.import_libtorrent(lt_lib)
    data = engine.make_torrent(lt, str(tree["root"]), tree["paths"])
    path = tmp_path_factory.mktemp("torrent") / "bundle.torrent"
    path.write_bytes(data)
    return path


class Swarm:
    """Peers as processes (``python3 swarm_peer.py JOB``) on 127.0.0.1, each on its own port."""

    def __init__(self, lib: str, torrent: Path, work: Path) -> None:
        self.lib, self.torrent, self.work = lib, torrent, work
        self.ports: dict[str, int] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def port(self, name: str) -> int:
        return self.ports.setdefault(name, free_port())

    def start(self, name: str, save_path: Path | str, peers: list[str], **job: Any) -> None:
        status = self.work / f"{name}.status.json"
        status.unlink(missing_ok=True)
        spec = {
            "lib": self.lib, "torrent": str(self.torrent), "save_path": str(save_path),
            "listen": f"127.0.0.1:{self.port(name)}", "peers": [f"127.0.0.1:{self.port(p)}" for p in peers],
            "status": str(status), "max_s": 120, **job,
        }  # fmt: skip
        job_path = self.work / f"{name}.job.json"
        job_path.write_text(json.dumps(spec))
        with (self.work / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen([sys.executable, str(ENGINE), str(job_path)], stdout=log, stderr=log)

    def status(self, name: str) -> dict[str, Any] | None:
        try:
            return dict(json.loads((self.work / f"{name}.status.json").read_text()))
        except (OSError, ValueError):
            return None

    def wait(self, *names: str, timeout: float = WAIT_S) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = {n: self.status(n) for n in names}
            if all(s and s["state"] == "finished" for s in found.values()):
                return {n: s for n, s in found.items() if s}
            time.sleep(0.2)
        logs = {n: (self.work / f"{n}.log").read_text()[-400:] for n in names}
        raise AssertionError(f"not finished in {timeout} s: {found} {logs}")

    def stop(self, name: str, kill: bool = False) -> None:
        proc = self.procs.pop(name)
        proc.kill() if kill else proc.terminate()
        proc.wait(timeout=20)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


@pytest.fixture
def swarm(lt_lib: str, torrent: Path, tmp_path: Path) -> Iterator[Swarm]:
    bed = Swarm(lt_lib, torrent, tmp_path)
    try:
        yield bed
    finally:
        bed.stop_all()


def same_tree(save_path: Path, tree: dict[str, Any]) -> bool:
    got = {p: engine.sha256_file(str(save_path / "bundle" / p)) for p in tree["paths"]}
    return got == tree["sha"]


def test_torrent_is_deterministic(lt_lib: str, tree: dict[str, Any], torrent: Path) -> None:
    lt = engine.import_libtorrent(lt_lib)
    again = engine.make_torrent(lt, str(tree["root"]), list(reversed(tree["paths"])))
    assert again == torrent.read_bytes()
    summary = engine.torrent_summary(lt, again)
    assert len(summary["infohash"]) == 64 and summary["piece_size"] == engine.piece_size_for(BLOB + 17)


def test_depot_and_four_peers(swarm: Swarm, tree: dict[str, Any], tmp_path: Path) -> None:
    hosts = [f"h{i}" for i in range(1, 5)]
    # The depot's uplink is the bottleneck: the peers must serve each other to finish.
    swarm.start("depot", engine.seed_view(str(tree["root"])), [], seed_mode=True, upload_limit=12 << 20)
    for name in hosts:
        swarm.start(name, tmp_path / name, ["depot", *(h for h in hosts if h != name)])
    done = swarm.wait(*hosts)
    assert all(same_tree(tmp_path / name, tree) for name in hosts)
    assert sum(s["uploaded"] for s in done.values()) > BLOB, done  # pieces went from host to host
    assert all(s["hash_failures"] == 0 for s in done.values())


def test_corrupt_piece_on_a_peer_is_fetched_again(swarm: Swarm, tree: dict[str, Any], tmp_path: Path) -> None:
    swarm.start("depot", engine.seed_view(str(tree["root"])), [], seed_mode=True)
    swarm.start("h1", tmp_path / "h1", ["depot"])
    swarm.wait("h1")
    swarm.stop("depot")
    blob = tmp_path / "h1" / "bundle" / "models" / "blobs" / "sha256-big"
    with blob.open("r+b") as handle:  # h1 already checked its pieces: it now serves one bad byte per 4 MiB
        for offset in range(0, BLOB, 4 << 20):
            handle.seek(offset + 100)
            byte = handle.read(1)
            handle.seek(offset + 100)
            handle.write(bytes([byte[0] ^ 0xFF]))
    swarm.start("depot", engine.seed_view(str(tree["root"])), [], seed_mode=True, upload_limit=8 << 20)
    swarm.start("h2", tmp_path / "h2", ["h1", "depot"])
    status = swarm.wait("h2")["h2"]
    assert status["hash_failures"] >= 1 and status["failed_bytes"] > 0, status
    assert same_tree(tmp_path / "h2", tree)


def test_depot_gone_peers_finish_from_each_other(swarm: Swarm, tree: dict[str, Any], tmp_path: Path) -> None:
    swarm.start("depot", engine.seed_view(str(tree["root"])), [], seed_mode=True)
    swarm.start("h1", tmp_path / "h1", ["depot"])
    swarm.wait("h1")
    swarm.stop("depot", kill=True)  # the depot drops out
    for name in ("h2", "h3"):
        swarm.start(name, tmp_path / name, ["depot", "h1", "h2", "h3"])
    swarm.wait("h2", "h3")
    assert same_tree(tmp_path / "h2", tree) and same_tree(tmp_path / "h3", tree)


def test_killed_peer_resumes_from_its_pieces(swarm: Swarm, tree: dict[str, Any], tmp_path: Path) -> None:
    swarm.start("depot", engine.seed_view(str(tree["root"])), [], seed_mode=True, upload_limit=6 << 20)
    swarm.start("h1", tmp_path / "h1", ["depot"])
    deadline = time.monotonic() + WAIT_S
    while (status := swarm.status("h1")) is None or status["done"] < BLOB // 2:  # pieces reach the disk every 2 s
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    swarm.stop("h1", kill=True)  # a host dropping out mid-transfer (SIGKILL: no goodbye, TCP reset)
    swarm.start("h1", tmp_path / "h1", ["depot"])
    done = swarm.wait("h1")["h1"]
    assert same_tree(tmp_path / "h1", tree)
    assert done["downloaded"] < BLOB, done  # the pieces on disk were checked and kept, not fetched again
