#!/usr/bin/python
"""Ansible module: seed or fetch a verified ollama-airgap bundle over BitTorrent (libtorrent from the bundle)."""
# ruff: noqa: E402  (Ansible modules document themselves before their imports)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: airgap_swarm_fetch
short_description: Seed a bundle from the depot, or fetch it into staging from the depot and the other hosts
description:
  - Peer-to-peer delivery of a bundle (C(bundle_transport=p2p)). The engine is libtorrent-rasterbar, from the
    manylinux wheel that the bundle carries under C(p2p/wheels/), unpacked with zipfile; no pip, no distribution
    package. The peer runs as a transient systemd unit (O(unit)) so it goes on seeding after the module returns;
    C(state=stopped) ends it once every host of the play has its files.
  - C(state=seeding) (on the depot) makes the v2 torrent of the verified tree O(root) (deterministic; the same
    bundle gives the same infohash; cached as C(<state_dir>/swarm/<digest>.torrent)) and starts a seeder of it.
  - C(state=fetched) (on a host) joins the swarm with O(torrent), downloads the files it wants (O(files), default
    all) into O(save_path)C(/bundle) (every piece checked against its SHA-256 hash, a corrupt one fetched again),
    and returns when they are complete. It fails with one line naming the host when no byte arrives for
    O(stall_timeout) seconds (depot and peers gone) or O(timeout) passes. The caller then verifies the tree with
    C(airgap_bundle) and swaps it in atomically; a re-run resumes from the pieces already in O(save_path).
options:
  state:
    description: What to do.
    type: str
    choices: [seeding, fetched, stopped]
    default: fetched
  digest:
    description: sha256 of the bundle's bundle.yaml (names the torrent and the job). Required unless stopped.
    type: str
  root:
    description: With C(seeding), the verified, unpacked bundle to seed.
    type: path
  paths:
    description:
      - With C(seeding), every file of the bundle relative to O(root) (bundle.yaml and SHA256SUMS too).
      - C(bundle.yaml.sig) is added when O(root) holds it.
    type: list
    elements: str
  torrent:
    description: With C(fetched), the torrent (base64) that C(state=seeding) returned.
    type: str
  save_path:
    description: With C(fetched), the staging directory; the files land in its C(bundle) subdirectory.
    type: path
  files:
    description: With C(fetched), only these files (relative paths); all when omitted.
    type: list
    elements: str
  wheels:
    description: The bundle's libtorrent wheels, its C(files) entries (C(path), C(sha256)) from bundle.yaml.
    type: list
    elements: dict
  wheel_dir:
    description: The directory on this machine holding those wheels (by file name).
    type: path
  state_dir:
    description: Where the engine, the torrent, the job and its status live (C(<state_dir>/swarm)).
    type: path
    default: /var/lib/ollama-airgap
  listen:
    description: ADDRESS:PORT this peer accepts connections on.
    type: str
    default: 0.0.0.0:6881
  peers:
    description: ADDRESS:PORT of the other peers and the depot; at most O(max_peers) are dialled, the rest come by PEX.
    type: list
    elements: str
    default: []
  self_address:
    description: This peer's own ADDRESS:PORT in O(peers), left out of the dialled set.
    type: str
  max_peers:
    description: How many of O(peers) to dial (a window starting after O(self_address), plus every peer listed first).
    type: int
    default: 40
  first_peers:
    description: How many leading entries of O(peers) (the depot) are always dialled.
    type: int
    default: 1
  unit:
    description: Name of the transient systemd unit running the peer.
    type: str
    default: ollama-airgap-swarm
  host_name:
    description: The name used in messages (the inventory name).
    type: str
  stall_timeout:
    description: Seconds without a new byte after which a fetch fails.
    type: int
    default: 60
  timeout:
    description: Seconds a fetch may take in all.
    type: int
    default: 7200
  seed_max:
    description: Seconds a peer seeds at most, if nothing stops it (a forgotten seeder ends by itself).
    type: int
    default: 21600
  upload_limit:
    description: Bytes per second this peer sends at most (0 is no limit), e.g. to spare the depot's link.
    type: int
    default: 0
"""

RETURN = r"""
infohash:
  description: The torrent's v2 infohash (C(seeding), C(fetched)).
  type: str
  returned: success
torrent:
  description: The torrent, base64 (C(seeding)).
  type: str
  returned: when state is seeding
bytes:
  description: Payload bytes downloaded, from the depot and from peers (C(fetched)).
  type: int
  returned: when state is fetched
seconds:
  description: How long the fetch took.
  type: float
  returned: when state is fetched
hash_failures:
  description: Pieces that failed their hash check and were fetched again.
  type: int
  returned: when state is fetched
"""

import base64
import json
import os
import subprocess
import sys
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ollama_airgap.deploy.plugins.module_utils import swarm_peer as engine

POLL_S = 0.2


def swarm_dir(state_dir: str) -> str:
    return os.path.join(state_dir, "swarm")


def install_engine(state_dir: str) -> str:
    """Write this engine's source where the systemd unit runs it (rewritten only when it differs)."""
    loader = getattr(engine, "__loader__", None)
    source = loader.get_source(engine.__name__) if loader is not None else None
    if source is None:
        with open(engine.__file__, encoding="utf-8") as handle:
            source = handle.read()
    path = os.path.join(swarm_dir(state_dir), "swarm_peer.py")
    try:
        with open(path, encoding="utf-8") as handle:
            if handle.read() == source:
                return path
    except FileNotFoundError:
        pass
    with open(path + ".partial", "w", encoding="utf-8") as handle:
        handle.write(source)
    os.replace(path + ".partial", path)
    return path


def load_engine(module: AnsibleModule, lib_dir: str) -> tuple[Any, str]:
    wheels = module.params["wheels"] or []
    by_path = {os.path.join(module.params["wheel_dir"], os.path.basename(str(w.get("path")))): w.get("sha256")
               for w in wheels}  # fmt: skip
    wheel = engine.pick_wheel(list(by_path))
    path, _ = engine.unpack_wheel(wheel, lib_dir, by_path[wheel])
    return engine.import_libtorrent(path), path


def systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)


def unit_active(unit: str) -> bool:
    return systemctl("is-active", "--quiet", unit).returncode == 0


def unit_loaded(unit: str) -> bool:
    shown = systemctl("show", "--property=LoadState", "--value", unit).stdout.strip()
    return shown not in ("", "not-found")


def start_unit(module: AnsibleModule, unit: str, program: str, job: str) -> str:
    """Start the peer as transient unit ``unit`` and return the name used.

    A unit of an earlier run may still be loaded (stopping, or not yet collected): it is stopped and waited for;
    if systemd still refuses the name, the peer runs as ``<unit>-<n>`` (state=stopped stops those too).
    """
    systemctl("stop", unit)
    systemctl("reset-failed", unit)
    deadline = time.monotonic() + 5
    while unit_loaded(unit) and time.monotonic() < deadline:
        systemctl("reset-failed", unit)
        time.sleep(0.2)
    error = ""
    for name in [unit, *(f"{unit}-{n}" for n in range(1, 6))]:
        done = subprocess.run(
            ["systemd-run", "--unit", name, "--collect", "--property=Type=exec",
             "--description=ollama-airgap bundle swarm peer", sys.executable, program, job],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode == 0:
            return name
        error = (done.stderr.strip().splitlines() or ["?"])[-1]
    module.fail_json(msg=f"swarm: systemd-run {unit} failed: {error}")
    raise AssertionError("unreachable")


def peer_units(unit: str) -> list[str]:
    """``unit`` and any ``<unit>-<n>`` that start_unit fell back to."""
    listed = systemctl("list-units", "--all", "--plain", "--no-legend", f"{unit}-*.service").stdout
    return [unit, *(line.split()[0].removesuffix(".service") for line in listed.splitlines() if line.strip())]


def journal_tail(unit: str) -> str:
    done = subprocess.run(
        ["journalctl", "--no-pager", "-n", "5", "-u", unit], capture_output=True, text=True, check=False
    )
    return " | ".join(line.strip() for line in done.stdout.splitlines()[-5:])


def dial_set(peers: list[str], own: str | None, first: int, limit: int) -> list[str]:
    """The leading ``first`` peers (the depot) plus a window of the rest that starts after this peer's own entry.

    Every host dials a different slice, so with limit < N the dial graph still connects the swarm, and PEX spreads
    the addresses beyond it (how it scales to 1,000 hosts without a tracker).
    """
    head, rest = peers[:first], [p for p in peers[first:] if p != own]
    if own in peers[first:]:
        start = peers[first:].index(own)
        rest = rest[start:] + rest[:start]
    return head + rest[:limit]


def job_paths(state_dir: str, digest: str, unit: str) -> tuple[str, str]:
    base = os.path.join(swarm_dir(state_dir), f"{unit}-{digest[:16]}")
    return base + ".job.json", base + ".status.json"


def seeding(module: AnsibleModule) -> None:
    p = module.params
    state_dir, digest, root = p["state_dir"], p["digest"], p["root"]
    os.makedirs(swarm_dir(state_dir), mode=0o700, exist_ok=True)
    lt, lib = load_engine(module, os.path.join(swarm_dir(state_dir), "lib"))
    torrent_path = os.path.join(swarm_dir(state_dir), f"{digest}.torrent")
    paths = list(p["paths"])
    if os.path.isfile(os.path.join(root, "bundle.yaml.sig")):
        paths.append("bundle.yaml.sig")  # a signed bundle: hosts check the signature as after a push
    if not os.path.isfile(torrent_path):
        data = engine.make_torrent(lt, root, paths)
        with open(torrent_path + ".partial", "wb") as handle:
            handle.write(data)
        os.replace(torrent_path + ".partial", torrent_path)
    with open(torrent_path, "rb") as handle:
        data = handle.read()
    summary = engine.torrent_summary(lt, data)
    job_path, status_path = job_paths(state_dir, digest, p["unit"])
    job = {
        "lib": lib, "torrent": torrent_path, "save_path": engine.seed_view(root), "listen": p["listen"],
        "peers": [], "seed_mode": True, "status": status_path, "max_s": p["seed_max"],
        "upload_limit": p["upload_limit"],
    }  # fmt: skip
    changed = False
    if not unit_active(p["unit"]) or _read(job_path) != job:
        if not module.check_mode:
            engine.write_json(job_path, job)
            start_unit(module, p["unit"], install_engine(state_dir), job_path)
        changed = True
    module.exit_json(changed=changed, torrent=base64.b64encode(data).decode(), **summary)


def _read(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def fetched(module: AnsibleModule) -> None:
    p = module.params
    state_dir, digest, host = p["state_dir"], p["digest"], p["host_name"] or os.uname().nodename
    if module.check_mode:
        module.exit_json(changed=True, msg="would fetch the bundle from the swarm")
    os.makedirs(swarm_dir(state_dir), mode=0o700, exist_ok=True)
    os.makedirs(p["save_path"], mode=0o700, exist_ok=True)
    lt, lib = load_engine(module, os.path.join(swarm_dir(state_dir), "lib"))
    data = base64.b64decode(p["torrent"])
    torrent_path = os.path.join(swarm_dir(state_dir), f"{digest}.torrent")
    with open(torrent_path, "wb") as handle:
        handle.write(data)
    summary = engine.torrent_summary(lt, data)
    job_path, status_path = job_paths(state_dir, digest, p["unit"])
    peers = dial_set(list(p["peers"]), p["self_address"], p["first_peers"], p["max_peers"])
    job = {
        "lib": lib, "torrent": torrent_path, "save_path": p["save_path"], "listen": p["listen"], "peers": peers,
        "files": p["files"], "seed_mode": False, "status": status_path, "max_s": p["seed_max"],
        "upload_limit": p["upload_limit"],
    }  # fmt: skip
    engine.write_json(job_path, job)
    if os.path.exists(status_path):
        os.unlink(status_path)
    started = time.monotonic()
    unit = start_unit(module, p["unit"], install_engine(state_dir), job_path)
    last_done, last_change, status = -1, time.monotonic(), None
    while True:
        time.sleep(POLL_S)
        now = time.monotonic()
        status = _read(status_path) or status
        if not unit_active(unit):
            module.fail_json(msg=f"swarm: {host}: the peer {unit} ended: {journal_tail(unit)}")
        if status is None:
            if now - started > p["stall_timeout"]:
                module.fail_json(msg=f"swarm: {host}: the peer did not start in {p['stall_timeout']} s")
            continue
        if status["state"] == "error":
            module.fail_json(msg=f"swarm: {host}: {'; '.join(status['errors'])}")
        if status["state"] == "finished":
            break
        if status["done"] != last_done:
            last_done, last_change = status["done"], now
        elif now - last_change > p["stall_timeout"]:
            module.fail_json(
                msg=f"swarm: {host}: no data for {p['stall_timeout']} s from the depot or the peers "
                f"({status['peers']} connected, {status['done']} of {status['wanted']} bytes); re-run to resume",
                status=status,
            )
        if now - started > p["timeout"]:
            module.fail_json(msg=f"swarm: {host}: not complete after {p['timeout']} s", status=status)
    partfile = os.path.join(p["save_path"], "bundle", f".{summary['infohash']}.parts")
    seconds = round(time.monotonic() - started, 2)
    module.exit_json(
        changed=True, bytes=status["downloaded"], seconds=seconds, hash_failures=status["hash_failures"],
        failed_bytes=status["failed_bytes"], uploaded=status["uploaded"], peers=len(peers),
        partfile=partfile if os.path.exists(partfile) else None, **summary,
    )  # fmt: skip


def stopped(module: AnsibleModule) -> None:
    units = peer_units(module.params["unit"])
    active = any(unit_active(unit) for unit in units)
    if active and not module.check_mode:
        systemctl("stop", *units)
    module.exit_json(changed=active)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["seeding", "fetched", "stopped"], "default": "fetched"},
            "digest": {"type": "str"},
            "root": {"type": "path"},
            "paths": {"type": "list", "elements": "str"},
            "torrent": {"type": "str"},
            "save_path": {"type": "path"},
            "files": {"type": "list", "elements": "str"},
            "wheels": {"type": "list", "elements": "dict"},
            "wheel_dir": {"type": "path"},
            "state_dir": {"type": "path", "default": "/var/lib/ollama-airgap"},
            "listen": {"type": "str", "default": "0.0.0.0:6881"},
            "peers": {"type": "list", "elements": "str", "default": []},
            "self_address": {"type": "str"},
            "max_peers": {"type": "int", "default": 40},
            "first_peers": {"type": "int", "default": 1},
            "unit": {"type": "str", "default": "ollama-airgap-swarm"},
            "host_name": {"type": "str"},
            "stall_timeout": {"type": "int", "default": 60},
            "timeout": {"type": "int", "default": 7200},
            "seed_max": {"type": "int", "default": 21600},
            "upload_limit": {"type": "int", "default": 0},
        },
        required_if=[
            ("state", "seeding", ("digest", "root", "paths", "wheels", "wheel_dir")),
            ("state", "fetched", ("digest", "torrent", "save_path", "wheels", "wheel_dir")),
        ],
        supports_check_mode=True,
    )
    try:
        {"seeding": seeding, "fetched": fetched, "stopped": stopped}[module.params["state"]](module)
    except engine.SwarmError as exc:
        module.fail_json(msg=f"swarm: {module.params['host_name'] or os.uname().nodename}: {exc}")


if __name__ == "__main__":
    main()
