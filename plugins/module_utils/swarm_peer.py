"""One BitTorrent peer of the bundle's swarm, on libtorrent-rasterbar (the engine of qBittorrent and Deluge).

Standard library plus the libtorrent manylinux wheel that the bundle carries (``p2p/wheels/``): the wheel is
unpacked with zipfile onto sys.path, so a host needs neither pip nor a distribution package. The same file is
imported by the Ansible module ``airgap_swarm_fetch`` (which makes the torrent and supervises the peer) and run as
a program under systemd (``python3 swarm_peer.py JOB.json``), where it seeds or downloads until it is stopped.

The torrent is BitTorrent v2 only: every piece is checked against its SHA-256 merkle hash as it arrives, a
corrupt piece is dropped and fetched again (from another peer when the sender keeps failing: libtorrent's smart
ban), and files are aligned to pieces, so a host can select only the files it needs. It is made deterministically
(sorted paths, fixed piece size, no dates or creator), so the same bundle gives the same infohash on every run.
No tracker, DHT or local service discovery: each peer is told every other peer's address and the depot's (the
control node knows the inventory); peer exchange (ut_pex) spreads the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import signal
import sys
import time
import zipfile
from types import ModuleType
from typing import Any

PROGRAM_VERSION = 1
TORRENT_NAME = "bundle"
MIN_PIECE = 256 << 10
MAX_PIECE = 16 << 20
TARGET_PIECES = 2048
STATUS_EVERY_S = 0.25
RECONNECT_EVERY_S = 2.0
RECONNECT_ALONE_S = 0.5  # while connected to no one (start-up: the others are still starting)
FLUSH_EVERY_S = 2.0
_WHEEL_RE = re.compile(r"^libtorrent-[^-]+-cp(\d)(\d+)-cp\d+-(.+)\.whl$")


class SwarmError(Exception):
    """A one-line reason the swarm could not do what was asked."""


# --- the engine from the bundle's wheel --------------------------------------------------------------------


def pick_wheel(wheels: list[str]) -> str:
    """The libtorrent wheel for this interpreter and machine, from the bundle's wheel list."""
    want_py = (str(sys.version_info.major), str(sys.version_info.minor))
    machine = platform.machine()
    for wheel in sorted(wheels):
        match = _WHEEL_RE.match(os.path.basename(wheel))
        if match and (match.group(1), match.group(2)) == want_py and match.group(3).endswith(machine):
            return wheel
    names = ", ".join(os.path.basename(w) for w in wheels) or "none"
    raise SwarmError(f"no libtorrent wheel for python {'.'.join(want_py)} on {machine} in the bundle (has: {names})")


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def unpack_wheel(wheel: str, lib_dir: str, expected_sha256: str | None = None) -> tuple[str, bool]:
    """Unpack ``wheel`` into ``lib_dir/<wheel name>`` once (atomically); returns that directory and if it is new."""
    target = os.path.join(lib_dir, os.path.basename(wheel).removesuffix(".whl"))
    if os.path.isdir(target):
        return target, False
    if expected_sha256 and sha256_file(wheel) != expected_sha256:
        raise SwarmError(f"{os.path.basename(wheel)} is altered (sha256 differs from bundle.yaml)")
    os.makedirs(lib_dir, mode=0o755, exist_ok=True)
    partial = f"{target}.partial-{os.getpid()}"
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if member.startswith("/") or ".." in member.split("/"):
                raise SwarmError(f"{os.path.basename(wheel)}: unsafe member {member!r}, refused")
        archive.extractall(partial)
    os.rename(partial, target)
    return target, True


def import_libtorrent(path: str) -> ModuleType:
    if path not in sys.path:
        sys.path.insert(0, path)
    import libtorrent  # type: ignore[import-not-found,unused-ignore]

    return libtorrent


# --- the torrent -------------------------------------------------------------------------------------------


def piece_size_for(total: int) -> int:
    """A power of two giving about TARGET_PIECES pieces, within [256 KiB, 16 MiB]: a function of the size only."""
    size = MIN_PIECE
    while size < MAX_PIECE and total // size > TARGET_PIECES:
        size *= 2
    return size


def make_torrent(lt: ModuleType, root: str, paths: list[str]) -> bytes:
    """The v2 torrent of ``paths`` (relative to ``root``), byte-identical on every run for the same files."""
    entries = [(path, os.path.getsize(os.path.join(root, path))) for path in sorted(set(paths))]
    files = [lt.create_file_entry(f"{TORRENT_NAME}/{path}", size) for path, size in entries]
    creator = lt.create_torrent(files, piece_size_for(sum(s for _, s in entries)), lt.create_torrent.v2_only)
    creator.set_creator("")
    creator.set_creation_date(0)
    lt.set_piece_hashes(creator, _parent_of(root))
    return bytes(lt.bencode(creator.generate()))


def _parent_of(root: str) -> str:
    """set_piece_hashes reads ``<parent>/bundle/<path>``: a directory holding a ``bundle`` link to ``root``."""
    parent = root.rstrip("/") + ".swarm-view"
    link = os.path.join(parent, TORRENT_NAME)
    os.makedirs(parent, mode=0o755, exist_ok=True)
    if os.path.realpath(link) != os.path.realpath(root):
        if os.path.islink(link):
            os.unlink(link)
        os.symlink(os.path.abspath(root), link)
    return parent


def seed_view(root: str) -> str:
    """The save path under which ``root`` is the torrent's ``bundle`` directory (for a seeder of an unpacked tree)."""
    return _parent_of(root)


def torrent_summary(lt: ModuleType, data: bytes) -> dict[str, Any]:
    info = lt.torrent_info(lt.bdecode(data))
    return {
        "infohash": str(info.info_hashes().v2),
        "pieces": info.num_pieces(),
        "piece_size": info.piece_length(),
        "total_size": info.total_size(),
    }


# --- a running peer ----------------------------------------------------------------------------------------


def session_settings(lt: ModuleType, listen: str) -> dict[str, Any]:
    return {
        "listen_interfaces": listen,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        # TCP only: a LAN needs no uTP congestion yielding, and a killed peer's TCP connections are reset at once
        # (a dead uTP connection lingers at the other end and makes it refuse the restarted peer as a duplicate).
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "allow_multiple_connections_per_ip": True,  # several peers behind one address (and the loopback tests)
        "unchoke_slots_limit": -1,  # a LAN of cooperating hosts: no tit-for-tat
        "connections_limit": 400,
        "alert_mask": lt.alert.category_t.error_notification
        | lt.alert.category_t.status_notification
        | lt.alert.category_t.peer_notification,
        "user_agent": f"ollama-airgap-swarm/{PROGRAM_VERSION}",
    }


def parse_peer(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise SwarmError(f"peer {text!r} is not ADDRESS:PORT")
    return host.strip("[]"), int(port)


class Peer:
    """A libtorrent session holding the one torrent of a job (see ``run_job`` for the job's keys)."""

    def __init__(self, lt: ModuleType, job: dict[str, Any]) -> None:
        self.lt = lt
        self.job = job
        self.session = lt.session(session_settings(lt, job["listen"]))
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(lt.bdecode(open(job["torrent"], "rb").read()))  # noqa: SIM115
        params.save_path = job["save_path"]
        params.flags &= ~lt.torrent_flags.auto_managed  # seed until told to stop, never queued
        params.flags &= ~lt.torrent_flags.paused
        params.upload_limit = int(job.get("upload_limit", 0))  # bytes/s, 0 = none (tests, shared links)
        if job.get("seed_mode"):
            params.flags |= lt.torrent_flags.seed_mode  # a verified tree: pieces are checked lazily when first sent
        wanted = job.get("files")
        if wanted is not None:
            storage = params.ti.files()
            chosen = {f"{TORRENT_NAME}/{path}" for path in wanted}
            params.file_priorities = [4 if storage.file_path(i) in chosen else 0 for i in range(storage.num_files())]
        self.handle = self.session.add_torrent(params)
        self.peers = [parse_peer(p) for p in job.get("peers", [])]
        self.hash_failures = 0
        self.errors: list[str] = []
        self.started_at = time.time()
        self.finished_at: float | None = None

    def reconnect(self) -> None:
        connected = {(p.ip[0], p.ip[1]) for p in self.handle.get_peer_info()}
        for peer in self.peers:
            if peer not in connected:
                self.handle.connect_peer(peer)

    def drain_alerts(self) -> None:
        for alert in self.session.pop_alerts():
            if isinstance(alert, self.lt.hash_failed_alert):
                self.hash_failures += 1
            elif isinstance(alert, (self.lt.torrent_error_alert, self.lt.file_error_alert)):
                self.errors.append(alert.message())

    def status(self) -> dict[str, Any]:
        st = self.handle.status()
        done = st.state in (self.lt.torrent_status.seeding, self.lt.torrent_status.finished) or (
            st.total_wanted > 0 and st.total_wanted_done >= st.total_wanted and not st.checking_resume_data
        )
        if done and self.finished_at is None:
            self.finished_at = time.time()
        return {
            "version": PROGRAM_VERSION,
            "pid": os.getpid(),
            "state": "error" if self.errors else ("finished" if done else str(st.state)),
            "wanted": st.total_wanted,
            "done": st.total_wanted_done,
            "downloaded": st.total_payload_download,
            "uploaded": st.total_payload_upload,
            "rate": st.download_payload_rate,
            "peers": st.num_peers,
            "seeds": st.num_seeds,
            "hash_failures": self.hash_failures,
            "failed_bytes": st.total_failed_bytes,
            "errors": self.errors[-3:],
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "time": time.time(),
        }


def write_json(path: str, data: dict[str, Any]) -> None:
    partial = f"{path}.partial"
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    os.replace(partial, path)


def run_job(job_path: str) -> int:
    """Run the job ``job_path`` (JSON: lib, torrent, save_path, listen, peers, files, seed_mode, upload_limit,
    status, max_s) until SIGTERM or max_s."""
    with open(job_path, encoding="utf-8") as handle:
        job = json.load(handle)
    stop = {"now": False}

    def on_signal(_signum: int, _frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    lt = import_libtorrent(job["lib"])
    peer = Peer(lt, job)
    deadline = time.monotonic() + float(job.get("max_s", 6 * 3600))
    last_connect = last_flush = last_log = 0.0
    while not stop["now"] and time.monotonic() < deadline:
        now = time.monotonic()
        alone = peer.handle.status().num_peers == 0
        if now - last_connect >= (RECONNECT_ALONE_S if alone else RECONNECT_EVERY_S):
            peer.reconnect()
            last_connect = now
        if now - last_flush >= FLUSH_EVERY_S:
            peer.handle.flush_cache()  # written pieces reach the disk: a killed peer resumes from them
            last_flush = now
        peer.drain_alerts()
        status = peer.status()
        write_json(job["status"], status)
        if now - last_log >= 5:
            print(
                f"{status['state']} {status['done']}/{status['wanted']} bytes, {status['rate'] >> 10} KiB/s in, "
                f"{status['peers']} peers, {status['uploaded']} bytes sent, {status['hash_failures']} hash failures",
                flush=True,
            )
            last_log = now
        time.sleep(STATUS_EVERY_S)
    peer.session.remove_torrent(peer.handle)
    return 0


if __name__ == "__main__":
    sys.exit(run_job(sys.argv[1]))
