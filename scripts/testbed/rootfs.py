"""The target hosts' root file system: Debian with systemd and sshd, built once by debootstrap and cached.

The cache is a tarball under CACHE_DIR named by a hash of the suite, the package list and the preparation
recipe, so changing any of them builds a new one. ``ensure_lower_dir`` also keeps one extracted copy
next to it, which every host mounts read-only as its overlayfs lower layer.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import logging
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from testbed.config import CACHE_DIR, SUITE

log = logging.getLogger(__name__)

BASE_PACKAGES: tuple[str, ...] = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "sudo",
    "iproute2",
    "ca-certificates",
    "curl",
    "tar",
    "zstd",
    "rsync",
    "procps",
    "gzip",
)
# Added with apt on top of the debootstrapped base for every test host (TestHosts' default): containers for the
# open_webui role (podman 4.3, crun, conmon; iptables and the CNI plugins come with it).
DEFAULT_EXTRA_PACKAGES: tuple[str, ...] = ("podman",)
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Keep owners numeric and file capabilities (xattrs) intact.
_TAR_OPTIONS = ("--numeric-owner", "--xattrs", "--xattrs-include=*")

# Bump when the code of ``_prepare`` changes in a way the data below does not show.
RECIPE_REVISION = 1

# Units that would spam the console, need the internet, or have nothing to do in a container.
MASKED_UNITS: tuple[str, ...] = (
    "getty.target",
    "console-getty.service",
    "container-getty@.service",
    "getty@.service",
    "serial-getty@.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "systemd-networkd-wait-online.service",
    # podman's API socket, auto-update and restart-all units: nothing here uses them (the open_webui role runs its
    # own unit), and in a container without cgroup write access they fail and leave the host "degraded".
    "podman.service",
    "podman.socket",
    "podman-restart.service",
    "podman-auto-update.service",
    "podman-auto-update.timer",
)

SSH_KEYGEN_UNIT = "testbed-ssh-host-keys.service"

# Files written into the root file system verbatim (path -> content).
PREPARED_FILES: dict[str, str] = {
    "etc/ssh/sshd_config.d/testbed.conf": (
        "# Test bed: root logs in by key only.\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UseDNS no\n"
    ),
    f"etc/systemd/system/{SSH_KEYGEN_UNIT}": (
        "[Unit]\n"
        "Description=Generate this host's own SSH host keys\n"
        "Before=ssh.service\n"
        "ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        "ExecStart=/usr/bin/ssh-keygen -A\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    ),
    # The hosts' root is overlayfs, on which podman's overlay driver cannot stack: every podman user on a test host
    # (the open_webui role's unit, tests, podman's own units) shares this storage setting, as on a real host.
    "etc/containers/storage.conf": (
        "# Test bed: / is overlayfs here, so podman stores images with the vfs driver.\n"
        '[storage]\ndriver = "vfs"\nrunroot = "/run/containers/storage"\ngraphroot = "/var/lib/containers/storage"\n'
    ),
    "etc/systemd/journald.conf.d/testbed.conf": "[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n",
    # The air gap: no name servers.
    "etc/resolv.conf": "",
    "etc/hostname": "localhost\n",
    "etc/machine-id": "",
}


class RootfsBuildError(RuntimeError):
    """debootstrap or the preparation of the root file system failed."""


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line sources), else deb.debian.org."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for source in sources:
        for stanza in source.read_text().split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                key, _, value = line.partition(":")
                if value and not line.startswith("#"):
                    fields[key.strip()] = value.strip()
            if SUITE in fields.get("Suites", "").split() and "deb" in fields.get("Types", "").split():
                return fields["URIs"].split()[0]
    lists = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]
    for path in lists:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            match = re.match(rf"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{SUITE}\s", line)
            if match:
                return match.group(1)
    return DEFAULT_MIRROR


def package_list(extra_packages: Iterable[str] = ()) -> list[str]:
    return sorted(set(BASE_PACKAGES) | set(extra_packages))


def cache_key(extra_packages: Iterable[str] = ()) -> str:
    """Short hash of everything that decides the root file system's content."""
    recipe = {
        "suite": SUITE,
        "variant": "minbase",
        "packages": package_list(extra_packages),
        "revision": RECIPE_REVISION,
        "masked": sorted(MASKED_UNITS),
        "files": PREPARED_FILES,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def tarball_path(extra_packages: Iterable[str] = ()) -> Path:
    return CACHE_DIR / f"rootfs-{SUITE}-{cache_key(extra_packages)}.tar.zst"


def lower_dir_path(extra_packages: Iterable[str] = ()) -> Path:
    return CACHE_DIR / f"rootfs-{SUITE}-{cache_key(extra_packages)}"


@contextlib.contextmanager
def _cache_lock() -> Iterator[None]:
    """Serialise builds and extractions between processes."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / ".lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _prepare(root: Path) -> None:
    """Turn a fresh debootstrap tree into a bootable, key-only, quiet container root."""
    for relative, content in PREPARED_FILES.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            path.unlink()
        path.write_text(content)
    system_dir = root / "etc/systemd/system"
    for unit in MASKED_UNITS:
        link = system_dir / unit
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to("/dev/null")
    wants = system_dir / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / SSH_KEYGEN_UNIT).unlink(missing_ok=True)
    (wants / SSH_KEYGEN_UNIT).symlink_to(f"/etc/systemd/system/{SSH_KEYGEN_UNIT}")
    # Every host makes its own host keys at first boot.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    ssh_dir.chmod(0o700)
    # A systemd-managed machine-id starts empty; the D-Bus one must follow it, not be baked.
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.exists() and not dbus_id.is_symlink():
        dbus_id.unlink()
        dbus_id.symlink_to("/etc/machine-id")
    subprocess.run(["chroot", str(root), "passwd", "--lock", "root"], check=True, capture_output=True)
    subprocess.run(["chroot", str(root), "apt-get", "clean"], check=True, capture_output=True)
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True)
    for log_file in (root / "var/log").rglob("*"):
        if log_file.is_file():
            log_file.unlink()


def _debootstrap(root: Path, mirror: str) -> None:
    log.info("debootstrap %s from %s into %s", SUITE, mirror, root)
    result = subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, str(root), mirror],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        details = root / "debootstrap/debootstrap.log"
        tail = details.read_text(errors="replace")[-3000:] if details.exists() else ""
        raise RootfsBuildError(f"debootstrap failed: {result.stderr.strip()[-2000:]}\n{tail}")


def _apt_install(root: Path, packages: Sequence[str]) -> None:
    """Add packages with apt inside the tree (apt, unlike debootstrap, resolves virtual packages)."""
    log.info("apt-get install %s", " ".join(packages))
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
    policy = root / "usr/sbin/policy-rc.d"  # start no services while installing
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
    try:
        env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
        for command in (
            ["apt-get", "update"],
            ["apt-get", "install", "-y", "--no-install-recommends", *packages],
        ):
            result = subprocess.run(["chroot", str(root), *command], capture_output=True, text=True, env=env)
            if result.returncode != 0:
                output = (result.stdout + result.stderr).strip()[-3000:]
                raise RootfsBuildError(f"{' '.join(command)} failed:\n{output}")
    finally:
        subprocess.run(["umount", str(root / "proc")], check=True)
        policy.unlink()


def _pack(root: Path, tarball: Path) -> None:
    subprocess.run(
        ["tar", "-C", str(root), *_TAR_OPTIONS, "-I", "zstd -T0 -3 -q", "-cf", str(tarball), "."], check=True
    )


def _unpack(tarball: Path, root: Path) -> None:
    subprocess.run(["tar", "-C", str(root), *_TAR_OPTIONS, "-I", "zstd -d -q", "-xpf", str(tarball)], check=True)


def build_tarball(extra_packages: Iterable[str] = (), mirror: str | None = None) -> Path:
    """Build, prepare and pack the root file system unless the same recipe is cached already.

    The base is debootstrapped; extra packages are added with apt on top of the cached base."""
    extra = sorted(set(extra_packages) - set(BASE_PACKAGES))
    target = tarball_path(extra)
    if target.exists():
        return target
    base = build_tarball((), mirror) if extra else None
    with _cache_lock():
        if target.exists():
            return target
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=CACHE_DIR, prefix=".build-") as work:
            root = Path(work) / "root"
            if base is None:
                _debootstrap(root, mirror or debian_mirror())
            else:
                root.mkdir()
                _unpack(base, root)
                _apt_install(root, extra)
            _prepare(root)
            partial = Path(work) / target.name
            _pack(root, partial)
            partial.rename(target)
        log.info("root file system %s built in %.0f s", target.name, time.monotonic() - started)
    return target


def ensure_lower_dir(extra_packages: Iterable[str] = ()) -> Path:
    """The extracted root file system shared read-only by all hosts (built and extracted if missing)."""
    extra = tuple(extra_packages)
    tarball = build_tarball(extra)
    lower = lower_dir_path(extra)
    with _cache_lock():
        if lower.is_dir():
            return lower
        partial = Path(tempfile.mkdtemp(dir=CACHE_DIR, prefix=".extract-"))
        try:
            _unpack(tarball, partial)
            partial.chmod(0o755)
            partial.rename(lower)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    return lower


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.rootfs", description=__doc__)
    parser.add_argument("--extra-package", action="append", default=[], help="add a package (repeatable)")
    parser.add_argument("--print-path", action="store_true", help="only print the cached tarball's path")
    args = parser.parse_args(argv)
    if args.print_path:
        print(tarball_path(args.extra_package))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(ensure_lower_dir(args.extra_package))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
