"""The target hosts: Debian machines with systemd as PID 1 and sshd, booted by systemd-nspawn.

Each host gets an overlayfs root over one shared extracted root file system (a copy if overlay fails), its own
network namespace joined by a veth to the bridge ``oatb0`` (10.213.0.1/24; no route anywhere else: the air
gap), and a small supervisor that restarts systemd-nspawn when the guest reboots (nspawn exits with 133 then).

    python -m testbed.hosts up --hosts 2 | down | status
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from testbed import rootfs
from testbed.config import (
    BRIDGE,
    GATEWAY,
    NETMASK_BITS,
    STATE_DIR,
    host_address,
    host_name,
    netns_name,
    veth_name,
)

log = logging.getLogger(__name__)

HOSTS_DIR = STATE_DIR / "hosts"
SSH_KEY = STATE_DIR / "ssh" / "id_ed25519"
INVENTORY_PATH = STATE_DIR / "inventory" / "hosts.yml"
INVENTORY_GROUP = "ollama_hosts"
# Present while a test bed is up: who owns it and what it is made of.
LOCK_PATH = STATE_DIR / "hosts.lock"
# Held (flock) during up/down/status so two of them never interleave.
OPERATION_LOCK_PATH = STATE_DIR / ".hosts.operation.lock"

NSPAWN_REBOOT_EXIT = 133
# What the nspawn test hosts need that real servers do not, written into the test bed's inventory: their cgroup
# file system is read-only and nspawn's seccomp filter refuses keyring calls, so podman runs the Open WebUI
# container without cgroups and without a session keyring (see roles/open_webui/defaults/main.yml).
NSPAWN_HOST_VARS: dict[str, Any] = {
    "open_webui_podman_global_args": ["--cgroup-manager=cgroupfs"],
    "open_webui_podman_cgroups": "disabled",
    "open_webui_podman_containers_conf": "[containers]\nkeyring = false\n",
}
GUEST_INTERFACE = "host0"
BOOT_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0
REQUIRED_TOOLS = ("systemd-nspawn", "ip", "ssh", "ssh-keygen", "setsid", "mount", "umount")
SSH_OPTIONS = (
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=3",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
)
_SCRIPTS_DIR = Path(__file__).resolve().parents[1]
_NETNS_PATTERN = re.compile(r"^oatb-node\d+$")
_VETH_PATTERN = re.compile(r"^oatb-v\d+$")


class TestBedError(RuntimeError):
    """The test bed could not do what was asked."""


class TestBedBusy(TestBedError):
    """Another test bed is up (or being set up) on this machine."""


# ----------------------------------------------------------------------------------------------------
# Small helpers: commands, processes, mounts.


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise TestBedError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def _process_start_time(pid: int) -> int | None:
    """Start time in clock ticks, None when the process is gone or a zombie (identifies a PID over reuse)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def pid_alive(pid: int | None) -> bool:
    return pid is not None and _process_start_time(pid) is not None


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _is_testbed_process(pid: int) -> bool:
    """A systemd-nspawn or supervisor of this test bed (its command line names a host directory)."""
    argv = _cmdline(pid)
    if not argv or not any(str(HOSTS_DIR) + "/" in arg for arg in argv):
        return False
    return Path(argv[0]).name == "systemd-nspawn" or "supervise" in argv


def list_host_processes() -> list[int]:
    own = os.getpid()
    pids = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    return [pid for pid in pids if pid != own and _is_testbed_process(pid)]


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _wait_gone(pids: Sequence[int], timeout: float) -> list[int]:
    """Wait for processes to end; returns those still alive."""
    deadline = time.monotonic() + timeout
    alive = [pid for pid in pids if pid_alive(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [pid for pid in alive if pid_alive(pid)]
    return alive


def _mounts_under(directory: Path) -> list[Path]:
    """Mount points at or below directory, deepest first."""
    prefix = str(directory)
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(Path(point))
    return sorted(points, key=lambda path: len(path.parts), reverse=True)


def _owner_alive(owner: dict[str, Any] | None) -> bool:
    return owner is not None and _process_start_time(owner["pid"]) == owner["start_time"]


# ----------------------------------------------------------------------------------------------------
# Network: the bridge on the machine, one namespace + veth per host.


def ensure_bridge() -> None:
    """The machine side of the test network: bridge oatb0 with 10.213.0.1/24 (no forwarding, no NAT)."""
    if _run("ip", "link", "show", BRIDGE, check=False).returncode != 0:
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
    addresses = _run("ip", "-o", "-4", "addr", "show", "dev", BRIDGE).stdout
    if f" {GATEWAY}/" not in addresses:
        _run("ip", "addr", "add", f"{GATEWAY}/{NETMASK_BITS}", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")


def _create_host_network(index: int) -> None:
    namespace, veth = netns_name(index), veth_name(index)
    _run("ip", "netns", "add", namespace)
    _run("ip", "link", "add", veth, "type", "veth", "peer", "name", GUEST_INTERFACE, "netns", namespace)
    _run("ip", "link", "set", veth, "master", BRIDGE, "up")
    _run("ip", "-n", namespace, "addr", "add", f"{host_address(index)}/{NETMASK_BITS}", "dev", GUEST_INTERFACE)
    _run("ip", "-n", namespace, "link", "set", GUEST_INTERFACE, "up")
    _run("ip", "-n", namespace, "link", "set", "lo", "up")


def list_host_netns() -> list[str]:
    names = [line.split()[0] for line in _run("ip", "netns", "list").stdout.splitlines() if line.strip()]
    return [name for name in names if _NETNS_PATTERN.match(name)]


def list_testbed_links() -> list[str]:
    links = json.loads(_run("ip", "-j", "link", "show").stdout or "[]")
    names = [link["ifname"] for link in links]
    return [name for name in names if name == BRIDGE or _VETH_PATTERN.match(name)]


def _kill_guest_leftovers() -> None:
    """Processes still in our namespaces are guests whose nspawn died without taking them along."""
    pids = [
        int(pid)
        for namespace in list_host_netns()
        for pid in _run("ip", "netns", "pids", namespace, check=False).stdout.split()
    ]
    for pid in pids:
        _signal(pid, signal.SIGKILL)
    _wait_gone(pids, 10)


def _remove_network() -> None:
    for namespace in list_host_netns():
        _run("ip", "netns", "del", namespace, check=False)
    for name in list_testbed_links():
        if name != BRIDGE:
            _run("ip", "link", "del", name, check=False)
    if BRIDGE in list_testbed_links():
        _run("ip", "link", "del", BRIDGE, check=False)


# ----------------------------------------------------------------------------------------------------
# Hosts.


def ensure_ssh_key() -> Path:
    """The test bed's own ed25519 key (root's authorized key on every host)."""
    if not SSH_KEY.exists():
        SSH_KEY.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ollama-airgap-testbed", "-f", str(SSH_KEY))
    return SSH_KEY


@dataclass(frozen=True)
class Host:
    index: int

    @property
    def name(self) -> str:
        return host_name(self.index)

    @property
    def address(self) -> str:
        return host_address(self.index)

    @property
    def netns(self) -> str:
        return netns_name(self.index)

    @property
    def directory(self) -> Path:
        return HOSTS_DIR / self.name

    @property
    def root(self) -> Path:
        return self.directory / "root"

    @property
    def console_log(self) -> Path:
        return self.directory / "console.log"

    @property
    def supervisor_pid_file(self) -> Path:
        return self.directory / "supervisor.pid"

    @property
    def nspawn_pid_file(self) -> Path:
        return self.directory / "nspawn.pid"

    def supervisor_pid(self) -> int | None:
        pid = _read_pid(self.supervisor_pid_file)
        return pid if pid_alive(pid) else None

    def nspawn_pid(self) -> int | None:
        pid = _read_pid(self.nspawn_pid_file)
        return pid if pid_alive(pid) else None

    def ssh_command(self, command: str) -> list[str]:
        return ["ssh", *SSH_OPTIONS, "-i", str(SSH_KEY), f"root@{self.address}", command]

    def ssh(self, command: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a shell command on the host as root."""
        result = subprocess.run(
            self.ssh_command(command),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise TestBedError(f"{self.name}: {command!r} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def boot_id(self) -> str:
        return self.ssh("cat /proc/sys/kernel/random/boot_id").stdout.strip()

    def console_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.console_log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def hosts_unavailable_reason() -> str | None:
    """Why hosts cannot run here (None when they can)."""
    if os.geteuid() != 0:
        return "test bed hosts need root (network namespaces, mounts, systemd-nspawn)"
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        packages = "systemd-container iproute2 openssh-client"
        return f"test bed hosts need {', '.join(missing)} (apt-get install {packages})"
    if not rootfs.tarball_path().exists() and shutil.which("debootstrap") is None:
        return "test bed hosts need debootstrap to build their root file system"
    return None


@contextlib.contextmanager
def _operation_lock() -> Iterator[None]:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(OPERATION_LOCK_PATH, "w") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TestBedBusy(f"another test bed operation holds {OPERATION_LOCK_PATH}") from None
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _read_lock() -> dict[str, Any] | None:
    try:
        return json.loads(LOCK_PATH.read_text())  # type: ignore[no-any-return]
    except (FileNotFoundError, json.JSONDecodeError):
        return None


@dataclass
class TestHosts:
    """Brings a set of target hosts up and down. ``owned_by_this_process`` ties the bed to the calling process
    (pytest): once that process is gone, the next ``up`` treats what is left as debris of a crashed run."""

    __test__ = False  # not a pytest test class

    extra_packages: tuple[str, ...] = rootfs.DEFAULT_EXTRA_PACKAGES
    owned_by_this_process: bool = False
    boot_timeout: float = BOOT_TIMEOUT_S
    nspawn_options: tuple[str, ...] = ()
    hosts: list[Host] = field(default_factory=list)
    root_mode: str = ""  # "overlay" or "copy"

    # -- lifecycle ---------------------------------------------------------------------------------

    def up(self, count: int) -> list[Host]:
        """Boot ``count`` hosts and wait until each answers SSH with a finished boot."""
        if count < 1:
            raise ValueError("count must be at least 1")
        reason = hosts_unavailable_reason()
        if reason:
            raise TestBedError(reason)
        with _operation_lock():
            self._refuse_if_busy()
            _teardown(graceful_timeout=5)
            lower = rootfs.ensure_lower_dir(self.extra_packages)
            ensure_ssh_key()
            owner = None
            if self.owned_by_this_process:
                owner = {"pid": os.getpid(), "start_time": _process_start_time(os.getpid())}
            lock = {"owner": owner, "count": count, "extra_packages": list(self.extra_packages)}
            LOCK_PATH.write_text(json.dumps(lock))
            self.hosts = [Host(index) for index in range(1, count + 1)]
            ensure_bridge()
            for host in self.hosts:
                self._start(host, lower)
            self._write_inventory()
        with ThreadPoolExecutor(max_workers=count) as pool:
            list(pool.map(self.wait_ready, self.hosts))
        return self.hosts

    def add(self, count: int) -> list[Host]:
        """Boot ``count`` more hosts onto this running bed, numbered after the last one booted. They are returned,
        not added to ``self.hosts`` nor to the shared inventory (tests that deploy to every host stay as they
        were); ``down`` removes them with the rest."""
        with _operation_lock():
            lower = rootfs.ensure_lower_dir(self.extra_packages)
            lock = _read_lock() or {"owner": None, "count": len(self.hosts)}
            first = int(lock["count"]) + 1
            added = [Host(index) for index in range(first, first + count)]
            lock["count"] = first + count - 1
            LOCK_PATH.write_text(json.dumps(lock))
            for host in added:
                self._start(host, lower)
        with ThreadPoolExecutor(max_workers=max(1, count)) as pool:
            list(pool.map(self.wait_ready, added))
        return added

    def down(self) -> None:
        """Power the hosts off, end the processes by PID, unmount, delete namespaces, links and roots."""
        with _operation_lock():
            _teardown(graceful_timeout=STOP_TIMEOUT_S)
        self.hosts = []

    def status(self) -> dict[str, Any]:
        lock = _read_lock()
        hosts = self.hosts or [Host(index) for index in range(1, (lock or {}).get("count", 0) + 1)]
        report = []
        for host in hosts:
            state = "stopped"
            if host.nspawn_pid():
                try:
                    probe = host.ssh("systemctl is-system-running", check=False, timeout=10)
                    state = probe.stdout.strip() or "no-ssh"
                except subprocess.TimeoutExpired:
                    state = "no-ssh"
            report.append(
                {
                    "name": host.name,
                    "address": host.address,
                    "supervisor_pid": host.supervisor_pid(),
                    "nspawn_pid": host.nspawn_pid(),
                    "state": state,
                }
            )
        return {
            "up": bool(lock),
            "owner": (lock or {}).get("owner"),
            "inventory": str(INVENTORY_PATH) if INVENTORY_PATH.exists() else None,
            "hosts": report,
        }

    def reboot(self, host: Host, timeout: float | None = None) -> str:
        """Reboot from inside the host and wait until it is back; returns the new boot id."""
        old_boot_id = host.boot_id()
        old_nspawn = host.nspawn_pid()
        host.ssh("systemctl reboot", check=False, timeout=30)
        deadline = time.monotonic() + (timeout or self.boot_timeout)
        while host.nspawn_pid() in (None, old_nspawn):
            if host.supervisor_pid() is None:
                raise TestBedError(f"{host.name}: supervisor ended on reboot\n{host.console_tail()}")
            if time.monotonic() > deadline:
                raise TestBedError(f"{host.name}: did not restart after reboot\n{host.console_tail()}")
            time.sleep(0.2)
        self.wait_ready(host, timeout=deadline - time.monotonic())
        new_boot_id = host.boot_id()
        if new_boot_id == old_boot_id:
            raise TestBedError(f"{host.name}: boot id unchanged after reboot")
        return new_boot_id

    def wait_ready(self, host: Host, timeout: float | None = None) -> str:
        """Wait until SSH answers and systemd has finished booting; returns running or degraded."""
        deadline = time.monotonic() + (timeout or self.boot_timeout)
        while True:
            if host.supervisor_pid() is None:
                raise TestBedError(f"{host.name}: systemd-nspawn is not running\n{host.console_tail()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TestBedError(f"{host.name}: not up after {self.boot_timeout:.0f} s\n{host.console_tail()}")
            try:
                probe = host.ssh("systemctl is-system-running --wait", check=False, timeout=min(remaining, 60))
            except subprocess.TimeoutExpired:
                continue
            state = probe.stdout.strip()
            if state == "running":
                return state
            if state == "degraded":
                failed = host.ssh("systemctl --failed --no-legend --plain", check=False).stdout.strip()
                log.warning("%s booted degraded; failed units:\n%s", host.name, failed)
                return state
            time.sleep(0.3)

    # -- internals ---------------------------------------------------------------------------------

    def _refuse_if_busy(self) -> None:
        lock = _read_lock()
        if not lock:
            return
        owner = lock.get("owner")
        if owner:
            if owner["pid"] != os.getpid() and _owner_alive(owner):
                raise TestBedBusy(f"a test bed owned by process {owner['pid']} is up ({LOCK_PATH})")
        elif any(pid_alive(_read_pid(Host(i).supervisor_pid_file)) for i in range(1, lock["count"] + 1)):
            raise TestBedBusy(f"a test bed is up ({LOCK_PATH}); run `python -m testbed.hosts down` first")

    def _start(self, host: Host, lower: Path) -> None:
        host.directory.mkdir(parents=True, exist_ok=True)
        self._make_root(host, lower)
        self._personalise(host)
        _create_host_network(host.index)
        nspawn = [
            "systemd-nspawn",
            f"--directory={host.root}",
            "--boot",
            "--register=no",
            "--keep-unit",
            f"--machine={host.name}",
            f"--network-namespace-path=/run/netns/{host.netns}",
            "--resolv-conf=off",
            "--timezone=off",
            "--link-journal=no",
            "--console=read-only",
            *self.nspawn_options,
        ]
        supervisor = [
            sys.executable,
            "-m",
            "testbed.hosts",
            "supervise",
            "--host-dir",
            str(host.directory),
            "--",
        ]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(_SCRIPTS_DIR), os.environ.get("PYTHONPATH")])),
        }
        with open(host.console_log, "ab") as console:
            # setsid --fork: the supervisor gets its own session and is not our child (no stdin, no zombie).
            subprocess.run(
                ["setsid", "--fork", *supervisor, *nspawn],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                env=env,
                cwd="/",
                check=True,
            )
        deadline = time.monotonic() + 10
        while host.nspawn_pid() is None:
            if time.monotonic() > deadline:
                raise TestBedError(f"{host.name}: supervisor did not start nspawn\n{host.console_tail()}")
            time.sleep(0.05)

    def _make_root(self, host: Host, lower: Path) -> None:
        upper, work = host.directory / "upper", host.directory / "work"
        for directory in (host.root, upper, work):
            directory.mkdir(exist_ok=True)
        options = f"lowerdir={lower},upperdir={upper},workdir={work}"
        mounted = _run("mount", "-t", "overlay", "overlay", "-o", options, str(host.root), check=False)
        if mounted.returncode == 0:
            self.root_mode = "overlay"
            return
        log.warning("overlay mount failed (%s); copying the root file system", mounted.stderr.strip())
        _run("cp", "-a", "--reflink=auto", f"{lower}/.", str(host.root))
        self.root_mode = "copy"

    def _personalise(self, host: Host) -> None:
        root = host.root
        (root / "etc/hostname").write_text(f"{host.name}\n")
        peers = "".join(f"{other.address}\t{other.name}\n" for other in self.hosts)
        local = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        (root / "etc/hosts").write_text(f"{local}{GATEWAY}\ttestbed-gateway\n{peers}")
        ssh_dir = root / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        authorized = ssh_dir / "authorized_keys"
        authorized.write_text(SSH_KEY.with_suffix(".pub").read_text())
        authorized.chmod(0o600)

    def _write_inventory(self) -> None:
        hosts = {
            host.name: {
                "ansible_host": host.address,
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(SSH_KEY),
                "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
                "ansible_python_interpreter": "/usr/bin/python3",
            }
            for host in self.hosts
        }
        INVENTORY_PATH.parent.mkdir(parents=True, exist_ok=True)
        inventory = {"all": {"children": {INVENTORY_GROUP: {"hosts": hosts, "vars": NSPAWN_HOST_VARS}}}}
        INVENTORY_PATH.write_text(yaml.safe_dump(inventory, sort_keys=False))


def _teardown(graceful_timeout: float) -> None:
    """Stop and remove everything a test bed (this one or a crashed earlier one) left on the machine."""
    host_dirs = sorted(HOSTS_DIR.glob("node*")) if HOSTS_DIR.exists() else []
    recorded = [_read_pid(d / name) for d in host_dirs for name in ("supervisor.pid", "nspawn.pid")]
    pids = sorted({pid for pid in recorded if pid and _is_testbed_process(pid)} | set(list_host_processes()))
    # SIGTERM: the supervisor stops restarting and passes it on; nspawn then powers the guest off in order.
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    for pid in _wait_gone(pids, graceful_timeout):
        log.warning("process %d did not stop in %.0f s; killing it", pid, graceful_timeout)
        _signal(pid, signal.SIGKILL)
    _wait_gone(pids, 10)
    _kill_guest_leftovers()
    for point in _mounts_under(HOSTS_DIR):
        if _run("umount", str(point), check=False).returncode != 0:
            _run("umount", "--lazy", str(point))
    _remove_network()
    if _mounts_under(HOSTS_DIR):
        raise TestBedError(f"mounts remain under {HOSTS_DIR}; not deleting host roots")
    shutil.rmtree(HOSTS_DIR, ignore_errors=True)
    INVENTORY_PATH.unlink(missing_ok=True)
    LOCK_PATH.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------------
# The supervisor: one per host, restarts systemd-nspawn when the guest reboots.


def supervise(host_dir: Path, nspawn_argv: Sequence[str]) -> int:
    """Run nspawn until it exits with anything but the reboot code 133, or until SIGTERM/SIGINT."""
    supervisor_pid_file, nspawn_pid_file = host_dir / "supervisor.pid", host_dir / "nspawn.pid"
    supervisor_pid_file.write_text(f"{os.getpid()}\n")
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)  # nspawn turns it into an orderly guest poweroff

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    returncode = 0
    try:
        while not stopping:
            child = subprocess.Popen(list(nspawn_argv), stdin=subprocess.DEVNULL)
            nspawn_pid_file.write_text(f"{child.pid}\n")
            returncode = child.wait()
            print(f"[testbed supervisor] systemd-nspawn exited with {returncode}", flush=True)
            if returncode != NSPAWN_REBOOT_EXIT:
                break
    finally:
        nspawn_pid_file.unlink(missing_ok=True)
        supervisor_pid_file.unlink(missing_ok=True)
    return returncode


# ----------------------------------------------------------------------------------------------------
# Command line.


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.hosts", description="The test bed's target hosts.")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="boot hosts and write the Ansible inventory")
    up.add_argument("--hosts", type=int, default=2, help="how many hosts (default 2)")
    up.add_argument("--extra-package", action="append", default=[], help="add a Debian package to the hosts")
    commands.add_parser("down", help="stop the hosts and remove everything they left")
    commands.add_parser("status", help="show the hosts as JSON")
    supervisor = commands.add_parser("supervise", help=argparse.SUPPRESS)
    supervisor.add_argument("--host-dir", type=Path, required=True)
    supervisor.add_argument("nspawn", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.command == "supervise":
        nspawn = args.nspawn[1:] if args.nspawn[:1] == ["--"] else args.nspawn
        return supervise(args.host_dir, nspawn)
    extra = sorted(set(rootfs.DEFAULT_EXTRA_PACKAGES) | set(getattr(args, "extra_package", ())))
    bed = TestHosts(extra_packages=tuple(extra))
    try:
        if args.command == "up":
            started = time.monotonic()
            hosts = bed.up(args.hosts)
            print(f"{len(hosts)} hosts up in {time.monotonic() - started:.1f} s; inventory: {INVENTORY_PATH}")
        elif args.command == "down":
            bed.down()
        else:
            print(json.dumps(bed.status(), indent=2))
    except TestBedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
