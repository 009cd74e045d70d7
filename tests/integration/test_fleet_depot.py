"""Fleet mode with a depot: one depot host and four hosts booted onto the session's test bed.

playbooks/depot.yml delivers the bundle (built with ``fleet: {depot: true}``) to the depot host, runs the bundle's
own Distribution registry there (roles/depot) and loads the bundle into it; the four hosts then deploy with
``bundle_transport=depot``, fetching every file from the depot by sha256 straight into the staging tree beside their
bundle root (plugins/modules/airgap_depot_fetch.py with ``root``), and run ollama with the bundle's models. Then
the faults: a corrupt piece, the depot stopping mid-transfer, a host dropping off the network mid-transfer; each
converges on a re-run.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from host_api import api

from testbed.config import GATEWAY, OLLAMA_VERSION_ZST
from testbed.faultproxy import Fault, fault_proxy
from testbed.hosts import NSPAWN_HOST_VARS, SSH_KEY, Host, TestHosts
from testbed.mirrors import Mirrors

if TYPE_CHECKING:
    from conftest import PlaybookResult, PlaybookRunner

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.hosts
ROOT = "/var/lib/ollama-airgap/bundle"
STATE = "/var/lib/ollama-airgap"  # the staging tree a fetch fills sits here, beside the bundle root
MODELS = ["tinyqwen:0.5b", "tinyllama:latest"]
HOST_PHASES = ("playbooks/bundle.yml", "playbooks/ollama.yml", "playbooks/models.yml")


@dataclass
class Fleet:
    depot: Host
    hosts: list[Host]
    bundle: Path
    digest: str
    run: PlaybookRunner

    @property
    def depot_url(self) -> str:
        return f"http://{self.depot.address}:5000"


def write_inventory(path: Path, depot: Host, hosts: list[Host]) -> Path:
    def entry(host: Host) -> dict[str, str]:
        return {
            "ansible_host": host.address, "ansible_user": "root", "ansible_ssh_private_key_file": str(SSH_KEY),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            "ansible_python_interpreter": "/usr/bin/python3",
        }  # fmt: skip

    groups = {"ollama_airgap_depot": [depot], "ollama_hosts": hosts}
    children: dict[str, dict] = {
        name: {"hosts": {h.name: entry(h) for h in members}} for name, members in groups.items()
    }
    children["ollama_hosts"]["vars"] = {"bundle_transport": "depot"}  # inventory, not -e: the depot itself gets push
    path.write_text(yaml.safe_dump({"all": {"vars": NSPAWN_HOST_VARS, "children": children}}))
    return path


@pytest.fixture(scope="module")
def fleet(test_hosts: TestHosts, mirrors: Mirrors, tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    from conftest import PlaybookRunner, build_bundle

    tmp = tmp_path_factory.mktemp("fleet")
    spec = yaml.safe_load((REPO / "bundles/demo.yaml").read_text())
    spec.update(name="fleet", models=MODELS, fleet={"depot": True})
    spec["ollama"].update(version=OLLAMA_VERSION_ZST, architectures=["amd64"])
    (tmp / "fleet.yaml").write_text(yaml.safe_dump(spec))
    bundle = build_bundle(mirrors, tmp / "fleet.yaml", tmp / "fleet.tar", tmp / "cache")
    digest = subprocess.run(["sha256sum"], input=_member(bundle, "bundle.yaml"), capture_output=True, check=True)
    started = time.monotonic()
    depot, *hosts = test_hosts.add(5)
    print(f"\n[fleet] 5 more hosts up in {time.monotonic() - started:.1f} s")
    inventory = write_inventory(tmp / "inventory.yml", depot, hosts)
    (tmp / "vars.yml").write_text(yaml.safe_dump({"bundle_src": str(bundle)}))
    return Fleet(depot, hosts, bundle, digest.stdout.split()[0].decode(), PlaybookRunner(inventory, tmp / "vars.yml"))


def _member(archive: Path, name: str) -> bytes:
    import tarfile

    with tarfile.open(archive) as tar:
        member = tar.extractfile(name)
        assert member is not None
        return member.read()


def ok(result: PlaybookResult) -> PlaybookResult:
    assert result.returncode == 0, result.explain()
    return result


def unchanged(result: PlaybookResult, hosts: list[Host]) -> None:
    ok(result)
    assert all(result.recap[h.name]["changed"] == 0 for h in hosts), result.explain()


def limit(hosts: list[Host]) -> list[str]:
    return ["--limit", ",".join(h.name for h in hosts)]


def forget(host: Host) -> None:
    """Drop the host's verification record: the next run fetches the whole bundle from the depot again."""
    host.ssh("rm -f /var/lib/ollama-airgap/verified/*.json")


def shape(host: Host, mbit: int | None) -> None:
    """A tbf on the host's veth (what it receives); None removes it."""
    veth = f"oatb-v{host.index}"
    if mbit is None:
        subprocess.run(["tc", "qdisc", "del", "dev", veth, "root"], capture_output=True, check=False)
    else:
        subprocess.run(["tc", "qdisc", "replace", "dev", veth, "root", "tbf", "rate", f"{mbit}mbit", "burst", "64kb",
                        "latency", "200ms"], check=True)  # fmt: skip


def when_fetching(host: Host, action: Callable[[], None], timeout: float = 120) -> threading.Thread:
    """Run ``action`` once the host has received a few MB from the depot (a partial file is growing)."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = f"find {STATE} -name '*.partial' -exec du -k {{}} + 2>/dev/null | awk '$1 > 1024' | head -1"
            if host.ssh(probe, check=False, timeout=10).stdout.strip():
                action()
                return
            time.sleep(0.2)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_depot_then_four_hosts_deploy_from_it_and_rerun_changes_nothing(fleet: Fleet) -> None:
    depot = ok(fleet.run("playbooks/depot.yml"))
    print(f"\n[fleet] depot.yml: {depot.seconds:.1f} s")
    assert fleet.depot.ssh("systemctl is-active ollama-airgap-depot").stdout.strip() == "active"
    unit = fleet.depot.ssh("systemctl show -p User,NoNewPrivileges,ProtectSystem ollama-airgap-depot").stdout
    assert "User=ollama-depot" in unit and "NoNewPrivileges=yes" in unit and "ProtectSystem=strict" in unit
    tags = json.loads(fleet.depot.ssh("curl -sf http://127.0.0.1:5000/v2/ollama-airgap/bundle/tags/list").stdout)
    assert tags["tags"] == [fleet.digest]

    deploy = ok(fleet.run(*HOST_PHASES))
    print(f"[fleet] bundle+ollama+models on 4 hosts by depot: {deploy.seconds:.1f} s")
    log = fleet.depot.ssh("journalctl -u ollama-airgap-depot --no-pager -o cat").stdout
    for host in fleet.hosts:
        assert host.ssh(f"sha256sum {ROOT}/bundle.yaml").stdout.split()[0] == fleet.digest
        assert "staging" not in host.ssh(f"ls -A {STATE}").stdout  # fetched straight into the root's staging tree
        assert f"{host.address}:" in log  # it fetched from the depot
        names = {m["name"] for m in api(host, "/api/tags")["models"]}
        assert {"tinyqwen:0.5b", "tinyllama:latest"} <= names, names

    unchanged(fleet.run("playbooks/depot.yml"), [fleet.depot])
    unchanged(fleet.run(*HOST_PHASES), fleet.hosts)


def test_a_corrupt_piece_is_fetched_again(fleet: Fleet) -> None:
    host = fleet.hosts[0]
    biggest = host.ssh(f"ls -S {ROOT}/ollama/*/ | head -1").stdout.strip()
    digest = host.ssh(f"sha256sum {ROOT}/ollama/*/{biggest}").stdout.split()[0]
    forget(host)
    with fault_proxy(fleet.depot_url, host=GATEWAY) as proxy:
        proxy.add(Fault(path_contains=digest, kind="corrupt", after_bytes=1 << 20))
        result = ok(fleet.run("playbooks/bundle.yml", extra=[*limit([host]), "-v"], bundle_depot_url=proxy.url))
    assert f"ollama/{OLLAMA_VERSION_ZST}/{biggest}" in result.output.split("refetched")[1][:300], result.explain()
    assert host.ssh(f"sha256sum {ROOT}/ollama/*/{biggest}").stdout.split()[0] == digest


def test_depot_stopping_mid_transfer_leaves_hosts_as_they_were_and_a_rerun_converges(fleet: Fleet) -> None:
    host = fleet.hosts[1]
    before = host.ssh(f"cd {ROOT} && find . -type f -printf '%P %s %i\\n' | sort").stdout
    forget(host)
    shape(host, 16)  # 2 MB/s: the stop lands mid-transfer
    stop = when_fetching(host, lambda: fleet.depot.ssh("systemctl stop ollama-airgap-depot"))
    try:
        failed = fleet.run("playbooks/bundle.yml", extra=limit([host]))
    finally:
        stop.join(timeout=5)
        shape(host, None)
        fleet.depot.ssh("systemctl start ollama-airgap-depot")
    assert failed.returncode != 0
    line = next(line for line in failed.output.splitlines() if "depot http://" in line)
    assert "for the next run to resume" in line and "Connection refused" in line, failed.explain()
    assert host.ssh(f"cd {ROOT} && find . -type f -printf '%P %s %i\\n' | sort").stdout == before  # untouched
    assert host.ssh(f"find {STATE} -name '*.partial' | wc -l").stdout.strip() != "0"  # kept to resume
    time.sleep(2)
    resumed = ok(fleet.run("playbooks/bundle.yml", extra=[*limit([host]), "-v"]))
    kept = re.search(r"resumed_bytes\"?: (\d+)", resumed.output)
    assert kept and int(kept.group(1)) > 0, resumed.explain()
    unchanged(fleet.run(*HOST_PHASES, extra=limit([host])), [host])


def test_a_host_dropping_off_mid_transfer_does_not_stop_the_others(fleet: Fleet) -> None:
    dropped, other = fleet.hosts[2], fleet.hosts[3]
    for host in (dropped, other):
        forget(host)
    shape(dropped, 40)
    veth = f"oatb-v{dropped.index}"
    cut = when_fetching(dropped, lambda: subprocess.run(["ip", "link", "set", veth, "down"], check=True))
    try:
        result = fleet.run("playbooks/bundle.yml", extra=limit([dropped, other]))
    finally:
        cut.join(timeout=5)
        subprocess.run(["ip", "link", "set", veth, "up"], check=True)
        shape(dropped, None)
    assert result.returncode != 0
    assert result.recap[other.name]["failed"] == 0 and result.recap[other.name]["unreachable"] == 0, result.explain()
    assert result.recap[dropped.name]["failed"] + result.recap[dropped.name]["unreachable"] >= 1, result.explain()
    deadline = time.monotonic() + 60
    while dropped.ssh("true", check=False, timeout=10).returncode != 0:
        assert time.monotonic() < deadline, "the host did not come back on the network"
        time.sleep(1)
    ok(fleet.run("playbooks/bundle.yml", extra=limit([dropped, other])))
    unchanged(fleet.run(*HOST_PHASES, extra=limit([dropped, other])), [dropped, other])
