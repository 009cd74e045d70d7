"""Issue 13's proof: a bundle from `bundle build` deploys a fleet from an air-gapped control node by one command.

The control node (testbed.airgap) has Debian's python3 and nothing of ours: no pip, no python3-venv, no ansible, no
zstd. Its network namespace reaches only the fleet; nftables rules there count, record and reject every other packet
(DNS included). The fleet is two fresh test hosts without zstd: python3 and systemd are all a host needs.

On this machine (the connected side) `bundle build` makes a one-model bundle; its archive is copied into the control
node's root directory, as a USB disk would bring it; inside, one command deploys (ONE_COMMAND below).

Budget: about 3 minutes (hosts boot ~10 s; the deploy and its no-op re-run dominate). The bundle and the hosts are
shared by the module.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from testbed.airgap import (
    CONTROL_ABSENT_COMMANDS,
    CONTROL_ABSENT_PACKAGES,
    FLEET_PURGED,
    AirGap,
    unavailable_reason,
)
from testbed.config import GATEWAY, OLLAMA_VERSION_ZST
from testbed.hosts import Host, TestHosts
from testbed.mirrors import Mirrors
from testbed.pypi_mirror import PypiMirror

pytestmark = [pytest.mark.hosts, pytest.mark.mirrors]

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
BUNDLE_NAME = "edge"
MODEL = "tinyllama:latest"
BUNDLE_ROOT = "/var/lib/ollama-airgap/bundle"
DEPLOY_TIMEOUT_S = 600
ONE_COMMAND = f"mkdir {BUNDLE_NAME} && tar -xf {BUNDLE_NAME}.tar -C {BUNDLE_NAME} && {BUNDLE_NAME}/deploy -i hosts.yml"
_RECAP = re.compile(r"^(\S+)\s*:\s*((?:\w+=\d+\s*)+)$", re.MULTILINE)


def recap(output: str) -> dict[str, dict[str, int]]:
    """The last PLAY RECAP of an output: {host: {"ok": n, "changed": n, ...}}."""
    _, _, tail = output.rpartition("PLAY RECAP")
    return {
        match.group(1): {key: int(value) for key, value in (item.split("=") for item in match.group(2).split())}
        for match in _RECAP.finditer(tail)
    }


@dataclass
class Run:
    command: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    counters: dict[str, int] = field(default_factory=dict)
    attempted: list[str] = field(default_factory=list)

    def explain(self) -> str:
        return (
            f"{self.command} -> rc {self.returncode} in {self.seconds:.0f} s; recorder {self.counters} "
            f"{self.attempted}\n--- stdout\n{self.stdout[-6000:]}\n--- stderr\n{self.stderr[-3000:]}"
        )


def run_on_control(gap: AirGap, command: str) -> Run:
    """One command inside the control node; the recorder's counters are read right after it."""
    started = time.monotonic()
    result = gap.run(f"cd /root && {command}", timeout=DEPLOY_TIMEOUT_S)
    seconds = time.monotonic() - started
    run = Run(command, result.returncode, result.stdout, result.stderr, seconds)
    run.counters, run.attempted = gap.recorder.counters(), gap.recorder.attempted()
    print(f"\n[airgap] {command} -> rc {run.returncode}, {seconds:.1f} s; recorder {run.counters} {run.attempted}")
    return run


def host_state(host: Host) -> dict[str, str]:
    """What a refused run must leave as it was."""
    return {
        "bundle": host.ssh(f"sha256sum {BUNDLE_ROOT}/bundle.yaml").stdout.split()[0],
        "tree": host.ssh(f"cd {BUNDLE_ROOT} && find . -type f -printf '%P %s %i\\n' | sort").stdout,
        "main_pid": host.ssh("systemctl show -p MainPID --value ollama").stdout.strip(),
        "models": host.ssh("find /usr/share/ollama/.ollama/models -printf '%P %s %i\\n' | sort").stdout,
    }


# ----------------------------------------------------------------------------------------------------
# The control node and the fleet (no bundle needed).


@pytest.fixture(scope="module")
def gap(test_hosts: TestHosts) -> Iterator[AirGap]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    started = AirGap.boot(test_hosts)
    print(f"\n[airgap] control node {started.control.name} and fleet up in {started.boot_seconds:.1f} s")
    try:
        yield started
    finally:
        started.stop()


def test_control_node_has_python3_and_nothing_of_ours(gap: AirGap) -> None:
    packages = gap.run("dpkg-query -W -f='${Package} ${Status}\\n'").stdout
    installed = {line.split()[0] for line in packages.splitlines() if line.endswith("install ok installed")}
    assert "python3" in installed and "openssh-client" in installed
    assert not installed & set(CONTROL_ABSENT_PACKAGES), installed & set(CONTROL_ABSENT_PACKAGES)
    found = gap.run(f"for c in {' '.join(CONTROL_ABSENT_COMMANDS)}; do command -v $c; done").stdout
    assert found.strip() == ""
    # Debian's python3 without python3-venv: no ensurepip, so a plain `python3 -m venv` fails, and no yaml/ansible.
    assert gap.run("python3 -c 'import ensurepip'").returncode != 0
    assert gap.run("python3 -m venv /tmp/probe-venv").returncode != 0
    assert gap.run("python3 -c 'import yaml'").returncode != 0
    assert gap.run("python3 -c 'import ansible'").returncode != 0
    # It reaches the fleet over SSH with the key it was given.
    for host in gap.fleet:
        answer = gap.run(f"ssh -o BatchMode=yes -o StrictHostKeyChecking=no root@{host.address} hostname")
        assert answer.stdout.strip() == host.name, answer.stderr


def test_fleet_hosts_have_no_zstd(gap: AirGap) -> None:
    for host in gap.fleet:
        assert host.ssh(f"command -v {' '.join(FLEET_PURGED)}", check=False).stdout.strip() == ""
        assert host.ssh("dpkg-query -W -f='${Status}' zstd", check=False).stdout.strip() != "install ok installed"
        assert host.ssh("tar --zstd -tf /dev/null", check=False).returncode != 0
        assert host.ssh("systemctl is-system-running").stdout.strip() == "running"


def test_recorder_counts_attempts_beyond_the_fleet(gap: AirGap) -> None:
    """The control: a DNS look-up and connections to this machine (the mirrors live on the gateway) and to an
    address beyond it are all counted, recorded and refused; a connection to the fleet passes and counts as fleet."""
    gap.recorder.reset()
    probe = (
        "import socket\n"
        "def attempt(target):\n"
        "    try:\n"
        "        socket.create_connection(target, timeout=3).close(); return 'connected'\n"
        "    except OSError as error: return type(error).__name__\n"
        "try: socket.getaddrinfo('pypi.org', 443); print('resolved')\n"
        "except OSError as error: print(type(error).__name__)\n"
        f"print(attempt(('{GATEWAY}', 80)), attempt(('151.101.0.223', 443)), attempt(('{gap.fleet[0].address}', 22)))\n"
    )
    result = gap.run(f"python3 -c {shlex.quote(probe)}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["gaierror", "ConnectionRefusedError", "ConnectionRefusedError", "connected"]
    counters, attempted = gap.recorder.counters(), gap.recorder.attempted()
    print(f"\n[airgap] control probe: recorder {counters} {attempted}")
    assert counters["dns"] >= 1 and counters["beyond"] >= counters["dns"] + 2 and counters["fleet"] >= 1, counters
    assert {"127.0.0.1:53", f"{GATEWAY}:80", "151.101.0.223:443"} <= set(attempted), attempted
    gap.recorder.reset()
    assert gap.recorder.counters() == {"fleet": 0, "beyond": 0, "dns": 0}
    assert gap.recorder.attempted() == []


# ----------------------------------------------------------------------------------------------------
# The bundle, built on the connected side, and the one command inside the gap.


@pytest.fixture(scope="module")
def edge_bundle(mirrors: Mirrors, pypi_mirror: PypiMirror, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-model bundle for amd64 with ollama 0.14.1 (upstream ships .tar.zst), built with its deploy kit (the
    kit's wheels from the test bed's local PyPI, for this machine's Python and platform: the control node's)."""
    tmp = tmp_path_factory.mktemp("airgap-bundle")
    spec = {"name": BUNDLE_NAME, "ollama": {"version": OLLAMA_VERSION_ZST, "architectures": ["amd64"]}}
    spec["models"] = [MODEL]
    spec_path = tmp / f"{BUNDLE_NAME}.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    archive = tmp / f"{BUNDLE_NAME}.tar"
    github = urlsplit(mirrors.release_base_url)
    argv = [
        str(VENV_BIN / "bundle"), "build", str(spec_path), "--cache", str(tmp / "cache"), "-o", str(archive), "-q",
        "--mirror", f"registry.ollama.ai={mirrors.registry_url}",
        "--mirror", f"github.com={github.scheme}://{github.netloc}",
        "--deploy-kit", "--kit-index-url", pypi_mirror.index_url,
    ]  # fmt: skip
    started = time.monotonic()
    built = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    print(f"\n[airgap] bundle build: {time.monotonic() - started:.1f} s, {archive.stat().st_size / 1e6:.1f} MB")
    return archive


@dataclass
class Deployment:
    gap: AirGap
    archive: Path
    first: Run


@pytest.fixture(scope="module")
def deployment(gap: AirGap, edge_bundle: Path) -> Deployment:
    gap.copy_in(edge_bundle)
    gap.write("/root/hosts.yml", gap.inventory())
    gap.recorder.reset()
    first = run_on_control(gap, ONE_COMMAND)
    return Deployment(gap, edge_bundle, first)


def bundle_manifest(archive: Path) -> dict[str, Any]:
    with tarfile.open(archive) as tar:
        for member in tar:
            if Path(member.name).name == "bundle.yaml" and len(Path(member.name).parts) <= 2:
                extracted = tar.extractfile(member)
                assert extracted is not None
                return yaml.safe_load(extracted.read())  # type: ignore[no-any-return]
    raise AssertionError(f"{archive} has no bundle.yaml")


def test_one_command_deploys_the_fleet(deployment: Deployment) -> None:
    first = deployment.first
    assert first.returncode == 0, first.explain()
    summary = recap(first.stdout)
    # The entry script's summary: done, both hosts, no failure, the testinfra suite passed.
    assert re.search(r"^deploy: done in [\d.]+ s: /root/" + BUNDLE_NAME + "$", first.stdout, re.M), first.explain()
    assert f"  hosts: {len(deployment.gap.fleet)}, changed: " in first.stdout and ", failed: 0" in first.stdout
    tests = re.search(r"^  testinfra: (\d+) passed, 0 failed, 0 errors", first.stdout, re.M)
    assert tests and int(tests[1]) > 0, first.explain()
    for host in deployment.gap.fleet:
        assert summary[host.name]["failed"] == 0 and summary[host.name]["unreachable"] == 0, first.explain()
        assert "Ollama is running" in host.ssh("curl -s --max-time 5 http://127.0.0.1:11434/").stdout
        assert host.ssh("systemctl is-active ollama").stdout.strip() == "active"
        assert OLLAMA_VERSION_ZST in host.ssh("/usr/local/bin/ollama --version 2>&1").stdout
        assert MODEL in host.ssh("/usr/local/bin/ollama list").stdout
        # The bundle carries no Open WebUI image, so the fleet runs none.
        assert host.ssh("systemctl is-active open-webui", check=False).stdout.strip() != "active"
        assert host.ssh("command -v zstd", check=False).stdout.strip() == ""
    # Why no host needs zstd: the release travels as the plain tar bundle build made from upstream's .tar.zst.
    releases = bundle_manifest(deployment.archive)["ollama"]["files"]
    assert releases and all(item["path"].endswith(".tar") for item in releases), releases
    assert all(item["upstream_archive"].endswith(".tar.zst") for item in releases), releases


def test_nothing_reached_beyond_the_fleet(deployment: Deployment) -> None:
    first = deployment.first
    assert first.counters["beyond"] == 0 and first.counters["dns"] == 0, first.explain()
    assert first.attempted == [], first.explain()
    assert first.counters["fleet"] > 0, first.counters  # the deploy's SSH traffic went through the recorder


def test_second_run_changes_nothing(deployment: Deployment) -> None:
    gap = deployment.gap
    # The testinfra suite already passed after the first run (and test_deploy_kit_hosts runs it): skip it here.
    again = run_on_control(gap, f"{BUNDLE_NAME}/deploy -i hosts.yml --skip-tests")
    assert again.returncode == 0, again.explain()
    summary = recap(again.stdout)
    assert {host.name for host in gap.fleet} <= set(summary), again.explain()
    assert all(summary[host.name]["changed"] == 0 for host in gap.fleet), again.explain()
    assert f"  hosts: {len(gap.fleet)}, changed: 0, failed: 0" in again.stdout, again.explain()
    assert "(reused)" in again.stdout, again.explain()  # the venv and the collection from the first run
    assert again.counters["beyond"] == 0 and again.attempted == [], again.explain()


def test_no_inventory_is_refused_in_one_line(deployment: Deployment) -> None:
    gap = deployment.gap
    for command in (f"{BUNDLE_NAME}/deploy", f"{BUNDLE_NAME}/deploy -i /root/no-such-hosts.yml"):
        refused = run_on_control(gap, command)
        assert refused.returncode != 0, refused.explain()
        lines = [line for line in (refused.stderr + refused.stdout).splitlines() if line.strip()]
        assert len(lines) == 1 and "inventory" in lines[0], refused.explain()


def test_tampered_kit_file_is_refused_and_hosts_untouched(deployment: Deployment) -> None:
    gap = deployment.gap
    before = {host.name: host_state(host) for host in gap.fleet}
    # A copy of the unpacked bundle (hard links) with one kit wheel replaced by a copy that has one more byte.
    wheel = gap.run(f"cd {BUNDLE_NAME} && ls kit/wheels/*.whl | head -1").stdout.strip()
    assert wheel, "the bundle's kit has no wheels"
    tamper = (
        f"rm -rf tampered && cp -al {BUNDLE_NAME} tampered && cp tampered/{wheel} /tmp/w && "
        f"printf x >> /tmp/w && mv /tmp/w tampered/{wheel}"
    )
    assert gap.run(f"cd /root && {tamper}").returncode == 0
    refused = run_on_control(gap, "tampered/deploy -i hosts.yml")
    assert refused.returncode != 0, refused.explain()
    lines = [line for line in (refused.stderr + refused.stdout).splitlines() if line.strip()]
    assert len(lines) == 1 and Path(wheel).name in lines[0], refused.explain()
    assert {host.name: host_state(host) for host in gap.fleet} == before
    assert refused.counters["beyond"] == 0, refused.explain()
