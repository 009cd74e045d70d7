"""`airgap-testbed up --hosts N | down | status`: the whole test bed from one command.

`up` starts the upstream mirrors (docker-registry seeded like registry.ollama.ai, nginx serving GitHub-shaped
ollama releases) and N systemd hosts, and writes STATE_DIR/testbed.json with everything a demo needs: the Ansible
inventory and the `--mirror` arguments for `bundle build`. `down` ends every process by PID and removes the
namespaces, links and mounts.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from testbed import config
from testbed.hosts import INVENTORY_PATH, TestBedError, TestHosts, pid_alive
from testbed.mirrors import Mirrors, start_mirrors
from testbed.webui_image import push_webui_image

STATE_FILE = config.STATE_DIR / "testbed.json"


def mirror_arguments(mirrors: Mirrors) -> list[str]:
    """`bundle build` flags that point its real download code at the test bed's mirrors."""
    github = urlsplit(mirrors.release_base_url)
    return [
        f"registry.ollama.ai={mirrors.registry_url}",
        f"ghcr.io={mirrors.registry_url}",
        f"github.com={github.scheme}://{github.netloc}",
    ]


def _stop_pids(pids: list[int], timeout: float = 15) -> None:
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def up(count: int, with_mirrors: bool = True) -> dict[str, Any]:
    if STATE_FILE.exists():
        down()
    state: dict[str, Any] = {"inventory": None, "mirrors": None, "mirror_pids": []}
    mirrors = None
    if with_mirrors:
        mirrors = start_mirrors(config.STATE_DIR / "mirrors")
        state["mirrors"] = mirror_arguments(mirrors)
        state["registry_url"] = mirrors.registry_url
        state["release_base_url"] = mirrors.release_base_url
        state["mirror_pids"] = list(mirrors.pids)
        image = push_webui_image(mirrors.registry_url, config.STATE_DIR / "webui-image")
        state["webui_image"] = f"ghcr.io/{image.repository}:{image.tag}"
        STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
        STATE_FILE.write_text(json.dumps(state, indent=2))
    if count:
        try:
            hosts = TestHosts().up(count)
        except BaseException:
            down()
            raise
        state["inventory"] = str(INVENTORY_PATH)
        state["hosts"] = {host.name: host.address for host in hosts}
    STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
    STATE_FILE.write_text(json.dumps(state, indent=2))
    return state


def down() -> None:
    pids: list[int] = []
    if STATE_FILE.exists():
        pids = json.loads(STATE_FILE.read_text()).get("mirror_pids", [])
    _stop_pids(pids)
    TestHosts().down()
    STATE_FILE.unlink(missing_ok=True)


def status() -> dict[str, Any]:
    state = json.loads(STATE_FILE.read_text()) if STATE_FILE.exists() else {}
    state["mirror_pids_alive"] = [pid for pid in state.get("mirror_pids", []) if pid_alive(pid)]
    state["hosts_status"] = TestHosts().status()
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="airgap-testbed", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up", help="start the mirrors and N hosts")
    start.add_argument("--hosts", type=int, default=2)
    start.add_argument("--no-mirrors", action="store_true")
    sub.add_parser("down", help="stop everything the test bed started")
    sub.add_parser("status", help="what is running")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("airgap-testbed: must run as root (network namespaces, systemd-nspawn)", file=sys.stderr)
        return 2
    try:
        if args.command == "up":
            print(json.dumps(up(args.hosts, not args.no_mirrors), indent=2))
        elif args.command == "down":
            down()
        else:
            print(json.dumps(status(), indent=2, default=str))
    except TestBedError as exc:
        print(f"airgap-testbed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
