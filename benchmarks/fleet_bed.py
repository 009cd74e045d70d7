"""An N-host fleet on the test bed for the fleet benchmarks (control-node push, depot, peer-to-peer).

The hosts are the test bed's systemd-nspawn machines on the bridge ``oatb0``. Each host's link is limited with
``tc`` (a token bucket, ``tbf``) on both ends of its veth: the machine-side ``oatb-vN`` shapes what the host
receives, the namespace-side ``host0`` what it sends. The control node (this machine) reaches the hosts through the
bridge device itself, so a ``tbf`` on ``oatb0`` shapes the control node's link, and traffic between hosts (depot to
host, peer to peer) never crosses it.

    with fleet_bed(17) as bed:                     # node1 .. node17
        bed.shape_all(200)                         # every host link 200 Mbit/s each way
        bed.shape_control(200)                     # the control node's link too
        inventory = bed.inventory({"ollama_airgap_depot": bed.hosts[:1], "ollama_hosts": bed.hosts[1:5]})

Shared with the peer-to-peer benchmark (helper "swarm"); keep the interface stable.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from testbed.config import BRIDGE
from testbed.hosts import NSPAWN_HOST_VARS, SSH_KEY, STATE_DIR, Host, TestHosts

# A token bucket deep enough for a GSO super-packet of a veth (64 KiB) many times over at these rates.
BURST = "512kb"
LATENCY = "100ms"
INVENTORY_DIR = STATE_DIR / "inventory"


def _tc(*argv: str, namespace: str | None = None, check: bool = True) -> None:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    result = subprocess.run([*prefix, "tc", *argv], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise RuntimeError(f"tc {' '.join(argv)} failed: {result.stderr.strip()}")


def limit(device: str, mbit: float | None, namespace: str | None = None) -> None:
    """A tbf of ``mbit`` Mbit/s on the egress of ``device`` (None removes it)."""
    if mbit is None:
        _tc("qdisc", "del", "dev", device, "root", namespace=namespace, check=False)
        return
    rate = f"{int(mbit * 1000)}kbit"
    _tc("qdisc", "replace", "dev", device, "root", "tbf", "rate", rate, "burst", BURST, "latency", LATENCY,
        namespace=namespace)  # fmt: skip


def host_veth(host: Host) -> str:
    return f"oatb-v{host.index}"


def shape_host(host: Host, mbit: float | None) -> None:
    """Limit the host's link to ``mbit`` Mbit/s in each direction (None: unlimited)."""
    limit(host_veth(host), mbit)  # towards the host
    limit("host0", mbit, namespace=host.netns)  # from the host


def shape_control(mbit: float | None) -> None:
    """Limit the control node's link (the bridge device: this machine to any host)."""
    limit(BRIDGE, mbit)


def host_entry(host: Host) -> dict[str, str]:
    return {
        "ansible_host": host.address,
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(SSH_KEY),
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        "ansible_python_interpreter": "/usr/bin/python3",
    }


def write_inventory(
    path: Path, groups: Mapping[str, Sequence[Host]], group_vars: Mapping[str, object] | None = None
) -> Path:
    """An inventory with one group per key (the test bed's nspawn settings as ``all`` vars)."""
    children = {name: {"hosts": {h.name: host_entry(h) for h in members}} for name, members in groups.items()}
    document = {"all": {"vars": {**NSPAWN_HOST_VARS, **dict(group_vars or {})}, "children": children}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@dataclass
class FleetBed:
    hosts: list[Host]
    shaped: set[str] = field(default_factory=set)

    def shape_all(self, mbit: float | None, hosts: Sequence[Host] | None = None) -> None:
        for host in hosts if hosts is not None else self.hosts:
            shape_host(host, mbit)

    def shape_control(self, mbit: float | None) -> None:
        shape_control(mbit)

    def unshape(self) -> None:
        for host in self.hosts:
            shape_host(host, None)
        shape_control(None)

    def inventory(self, groups: Mapping[str, Sequence[Host]], name: str = "fleet.yml", **group_vars: object) -> Path:
        return write_inventory(INVENTORY_DIR / name, groups, group_vars)


@contextlib.contextmanager
def fleet_bed(count: int) -> Iterator[FleetBed]:
    """Boot ``count`` test bed hosts (node1..node<count>), yield them, shut them down and remove all shaping."""
    bed = TestHosts(owned_by_this_process=True)
    try:
        fleet = FleetBed(bed.up(count))
        try:
            yield fleet
        finally:
            fleet.unshape()
    finally:
        bed.down()
