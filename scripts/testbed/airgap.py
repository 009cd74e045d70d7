"""An air-gapped control node and a fleet that has only python3 and systemd, booted onto a running test bed.

- Fleet hosts: the base root file system (no podman), with the ``zstd`` package purged after boot: they prove a
  deployment needs nothing on a host but python3 and systemd.
- Control node: the same base root file system with ``zstd``, ``curl`` and ``rsync`` purged. Debian's python3 stays,
  without python3-pip or python3-venv (no ensurepip), no ansible, no project venv. It gets the test bed's SSH private
  key so that it can reach the fleet as root.
- Network recorder: nftables rules in the control node's network namespace (loaded from this machine with
  ``ip netns exec``, the container has no nft). They accept loopback, replies to connections made to the node
  (this machine's SSH session), and packets to the fleet's addresses; every other packet, and every DNS query on
  any interface, is counted, its destination recorded in a set and rejected. A default route via the bridge is
  added after the rules, so an attempt to reach any IPv4 address leaves a packet to count (without it the kernel
  would answer ENETUNREACH and nothing would be seen); IPv6 is switched off in the namespace. The empty
  resolv.conf makes glibc ask 127.0.0.1:53, which the DNS rule catches.

    bed = TestHosts(owned_by_this_process=True); bed.up(2)
    gap = AirGap.boot(bed)          # node20 (control), node21 + node22 (fleet)
    ...; gap.recorder.counters(); gap.stop()
"""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from testbed import rootfs
from testbed.config import GATEWAY
from testbed.hosts import (
    SSH_KEY,
    Host,
    TestBedError,
    TestHosts,
    _mounts_under,
    _operation_lock,
    _run,
    _signal,
    _wait_gone,
)

# Indices far above the session's hosts (and hosts added by count), so they never collide.
CONTROL_INDEX = 20
FLEET_INDICES = (21, 22)
# Debian packages removed after boot. The fleet: zstd (ollama#17860: some distributions ship without it).
FLEET_PURGED = ("zstd",)
CONTROL_PURGED = ("zstd", "curl", "rsync")
# What must not be on the control node: packages and commands of the connected side.
CONTROL_ABSENT_PACKAGES = (
    "python3-pip",
    "python3-venv",
    "python3.11-venv",
    "python3-setuptools",
    "python3-yaml",
    "python3-jinja2",
    "ansible",
    "ansible-core",
    "zstd",
)
CONTROL_ABSENT_COMMANDS = ("pip", "pip3", "ansible", "ansible-playbook", "ansible-galaxy", "zstd", "curl", "rsync")
NFT_TABLE = "oatb_airgap"
DNS_PORT = 53


def _purge(host: Host, packages: tuple[str, ...]) -> None:
    host.ssh(f"DEBIAN_FRONTEND=noninteractive dpkg --purge {' '.join(packages)}", timeout=120)


def nft_ruleset(fleet: list[str]) -> str:
    """The control node's output filter: loopback, replies and the fleet pass; the rest is counted and rejected."""
    addresses = ", ".join(fleet)
    return f"""\
table inet {NFT_TABLE} {{
    counter fleet {{ }}
    counter beyond {{ }}
    counter dns {{ }}
    set attempted {{ type ipv4_addr . inet_service; flags dynamic; size 4096; }}
    chain output {{
        type filter hook output priority filter; policy accept;
        ct state established,related accept
        meta l4proto {{ tcp, udp }} th dport {DNS_PORT} counter name dns jump refuse
        oif "lo" accept
        ip daddr {{ {addresses} }} counter name fleet accept
        jump refuse
    }}
    chain refuse {{
        meta nfproto ipv4 meta l4proto {{ tcp, udp }} add @attempted {{ ip daddr . th dport }}
        counter name beyond
        reject
    }}
}}
"""


@dataclass
class NetworkRecorder:
    """nftables counters in one network namespace: what left for the fleet and what tried to go beyond it."""

    netns: str
    fleet: list[str]

    def _nft(self, *args: str, stdin: str | None = None) -> str:
        argv = ["ip", "netns", "exec", self.netns, "nft", *args]
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise TestBedError(f"{shlex.join(argv)} failed: {result.stderr.strip()}")
        return result.stdout

    def install(self) -> None:
        """Load the rules, then switch IPv6 off and add the default route (only once the rules hold)."""
        self._nft("-f", "-", stdin=nft_ruleset(self.fleet))
        for setting in ("all", "default", "host0"):
            _run("ip", "netns", "exec", self.netns, "sysctl", "-q", "-w", f"net.ipv6.conf.{setting}.disable_ipv6=1")
        _run("ip", "-n", self.netns, "route", "replace", "default", "via", GATEWAY)

    def counters(self) -> dict[str, int]:
        """Packets per counter: fleet (accepted), beyond (rejected, DNS included) and dns."""
        listing = json.loads(self._nft("-j", "list", "counters", "table", "inet", NFT_TABLE))
        return {
            item["counter"]["name"]: int(item["counter"]["packets"])
            for item in listing["nftables"]
            if "counter" in item
        }

    def attempted(self) -> list[str]:
        """Destinations of the rejected packets, as ADDRESS:PORT."""
        listing = json.loads(self._nft("-j", "list", "set", "inet", NFT_TABLE, "attempted"))
        found = []
        for item in listing["nftables"]:
            for element in item.get("set", {}).get("elem", []):
                value = element.get("elem", {}).get("val", element) if isinstance(element, dict) else element
                address, port = value["concat"]
                found.append(f"{address}:{port}")
        return sorted(found)

    def reset(self) -> None:
        for name in ("fleet", "beyond", "dns"):
            self._nft("reset", "counter", "inet", NFT_TABLE, name)
        self._nft("flush", "set", "inet", NFT_TABLE, "attempted")

    def ruleset(self) -> str:
        return self._nft("list", "table", "inet", NFT_TABLE)


def unavailable_reason() -> str | None:
    """Why the air gap cannot be built here (None when it can): the recorder needs nft on this machine."""
    if shutil.which("nft") is None:
        return "the air-gapped control node's recorder needs nft (apt-get install nftables; scripts/setup.sh)"
    return None


def boot_hosts(bed: TestHosts, indices: tuple[int, ...]) -> list[Host]:
    """Boot hosts with these indices onto the running bed, from the base root file system (no podman).

    They stay out of ``bed.hosts`` and the shared inventory; ``stop_hosts`` (or the bed's ``down``) removes them."""
    hosts = [Host(index) for index in indices]
    with _operation_lock():
        lower = rootfs.ensure_lower_dir(())
        for host in hosts:
            if host.directory.exists():
                raise TestBedError(f"{host.name} exists already ({host.directory})")
            bed._start(host, lower)  # the bed's own start (same package), on the base root
    try:
        with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
            list(pool.map(bed.wait_ready, hosts))
    except BaseException:
        stop_hosts(hosts)
        raise
    return hosts


def stop_hosts(hosts: list[Host], timeout: float = 30) -> None:
    """Power these hosts off (SIGTERM to their supervisors), then unmount and remove their roots and namespaces."""
    with _operation_lock():
        pids = [pid for host in hosts for pid in (host.supervisor_pid(), host.nspawn_pid()) if pid]
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        for pid in _wait_gone(pids, timeout):
            _signal(pid, signal.SIGKILL)
        _wait_gone(pids, 10)
        for host in hosts:
            for pid in _run("ip", "netns", "pids", host.netns, check=False).stdout.split():
                _signal(int(pid), signal.SIGKILL)
            for point in _mounts_under(host.directory):
                if _run("umount", str(point), check=False).returncode != 0:
                    _run("umount", "--lazy", str(point))
            _run("ip", "netns", "del", host.netns, check=False)
            if not _mounts_under(host.directory):
                shutil.rmtree(host.directory, ignore_errors=True)


@dataclass
class AirGap:
    """The control node, the fleet it deploys to and the recorder on the control node's network."""

    control: Host
    fleet: list[Host]
    recorder: NetworkRecorder
    boot_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @classmethod
    def boot(cls, bed: TestHosts) -> AirGap:
        reason = unavailable_reason()
        if reason:
            raise TestBedError(reason)
        started = time.monotonic()
        hosts = boot_hosts(bed, (CONTROL_INDEX, *FLEET_INDICES))
        control, fleet = hosts[0], hosts[1:]
        try:
            with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
                jobs = [pool.submit(_purge, control, CONTROL_PURGED)]
                jobs += [pool.submit(_purge, host, FLEET_PURGED) for host in fleet]
                for job in jobs:
                    job.result()
            _write_hosts_files(hosts)
            _give_key(control)
            recorder = NetworkRecorder(control.netns, [host.address for host in fleet])
            recorder.install()
        except BaseException:
            stop_hosts(hosts)
            raise
        return cls(control, fleet, recorder, time.monotonic() - started)

    def stop(self) -> None:
        """Throw the gap's hosts away: an orderly poweroff gets a few seconds (ollama's stop can take 20 s)."""
        stop_hosts([self.control, *self.fleet], timeout=3)

    def copy_in(self, archive: Path, directory: str = "/root") -> str:
        """Bring a file into the control node through its root directory, the way a USB disk would."""
        target = self.control.root / directory.lstrip("/") / archive.name
        shutil.copyfile(archive, target)
        return f"{directory.rstrip('/')}/{archive.name}"

    def inventory(self, group: str = "ollama_hosts") -> str:
        """An inventory for the control node: the fleet by address, root over SSH with the node's default key."""
        lines = ["all:", "  children:", f"    {group}:", "      hosts:"]
        for host in self.fleet:
            lines += [f"        {host.name}:", f"          ansible_host: {host.address}"]
        lines += [
            "      vars:",
            "        ansible_user: root",
            '        ansible_ssh_common_args: "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"',
            "        ansible_python_interpreter: /usr/bin/python3",
        ]
        return "\n".join(lines) + "\n"

    def write(self, path: str, content: str, mode: int = 0o644) -> None:
        target = self.control.root / path.lstrip("/")
        target.write_text(content)
        target.chmod(mode)

    def run(self, command: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """A shell command on the control node as root (stdout and stderr kept apart), whatever its exit status."""
        return self.control.ssh(command, check=False, timeout=timeout)


def _write_hosts_files(hosts: list[Host]) -> None:
    """Every host of the gap knows its own name and its peers' from /etc/hosts, as on a real site, so no name
    look-up of theirs has to ask a name server (the recorder would count it)."""
    peers = "".join(f"{host.address}\t{host.name}\n" for host in hosts)
    local = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    for host in hosts:
        (host.root / "etc/hosts").write_text(local + peers)


def _give_key(control: Host) -> None:
    """The test bed's private key becomes the control node's root key (its hosts authorise it already)."""
    ssh_dir = control.root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    for source, name, mode in ((SSH_KEY, "id_ed25519", 0o600), (SSH_KEY.with_suffix(".pub"), "id_ed25519.pub", 0o644)):
        target = ssh_dir / name
        shutil.copyfile(source, target)
        target.chmod(mode)
