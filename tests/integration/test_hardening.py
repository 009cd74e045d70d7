"""Issue 16 on the test bed's systemd hosts: the strict profile still serves (site.yml's smoke test passes under it),
and scripts/gpu/sandbox-check.sh sets up its sandbox from the deployed unit on a real systemd (no GPU here: it must
say that nothing was proven, exit 2, and show the confinement the kernel applied)."""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from testbed.hosts import Host

if TYPE_CHECKING:
    from conftest import Deployment, PlaybookRunner  # tests/integration/conftest.py

pytestmark = pytest.mark.hosts

REPO = Path(__file__).resolve().parents[2]
EXPOSURE = re.compile(r"Overall exposure level for ollama\.service: (\d+\.\d)")


def copy_scripts(host: Host, remote: str) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(REPO / "scripts" / "gpu", arcname="scripts/gpu")
    command = host.ssh_command(f"rm -rf {remote} && mkdir -p {remote} && tar -C {remote} -xf -")
    subprocess.run(command, input=buffer.getvalue(), check=True, capture_output=True, timeout=60)


def test_sandbox_check_sets_up_the_units_sandbox_and_says_no_gpu(deployed: Deployment) -> None:
    host = deployed.hosts.hosts[0]
    copy_scripts(host, "/opt/ollama-airgap-check")
    run = host.ssh(
        "/opt/ollama-airgap-check/scripts/gpu/sandbox-check.sh --unit /etc/systemd/system/ollama.service"
        " --out /root/gpu-check",
        check=False,
        timeout=120,
    )
    report = run.stdout + run.stderr
    assert run.returncode == 2, report  # no GPU on the test bed: nothing proven, and it says so
    assert "RESULT: no usable GPU on this host, even outside the sandbox" in report
    # The properties came from the deployed unit, and systemd applied them (the probe ran inside).
    for prop in ("DevicePolicy=closed", "DeviceAllow=char-nvidia-uvm rw", "CapabilityBoundingSet=", "User=ollama"):
        assert f"--property={prop}" in report, report
    uid = host.ssh("id -u ollama").stdout.strip()
    probe = report.split("# inside the sandbox (probe):", 1)[1]
    assert re.search(rf"Uid:\s+{uid}\s", probe), probe
    for line in ("CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"):
        assert line in probe, probe
    assert host.ssh("ls /root/gpu-check").stdout.startswith("sandbox-check-")


def test_strict_profile_serves_and_scores_lower(deployed: Deployment, ansible_playbook: PlaybookRunner) -> None:
    """site.yml with ollama_hardening=strict: the unit changes, ollama restarts, the smoke test generates with every
    model; then back to the default."""
    try:
        result = ansible_playbook("site.yml", ollama_hardening="strict")
        assert result.returncode == 0, result.explain()
        for host in deployed.hosts.hosts:
            show = host.ssh("systemctl show ollama -p MemoryDenyWriteExecute -p PrivateUsers -p ActiveState").stdout
            assert {"MemoryDenyWriteExecute=yes", "PrivateUsers=yes", "ActiveState=active"} <= set(show.split()), show
            found = EXPOSURE.search(host.ssh("systemd-analyze security --no-pager ollama.service").stdout)
            assert found and float(found.group(1)) <= 1.5, found
            answer = host.ssh(
                "curl -s --max-time 30 http://127.0.0.1:11434/api/generate"
                ' -d \'{"model": "tinyllama", "prompt": "hi", "stream": false, "options": {"num_predict": 4}}\''
            ).stdout
            assert '"done":true' in answer.replace(" ", ""), answer
    finally:
        back = ansible_playbook("site.yml")
        assert back.returncode == 0, back.explain()
