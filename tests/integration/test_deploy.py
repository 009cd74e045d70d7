"""site.yml on the test bed's systemd hosts: deploy, idempotence, check mode, reboot, upgrade, refused bundles."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from testbed.config import OLLAMA_VERSION_TGZ, OLLAMA_VERSION_ZST
from testbed.hosts import Host

if TYPE_CHECKING:
    from conftest import Deployment, PlaybookResult, PlaybookRunner  # tests/integration/conftest.py

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

BUNDLE_ROOT = "/var/lib/ollama-airgap/bundle"
INCOMING = "/var/lib/ollama-airgap/incoming"


def api_root(host: Host) -> str:
    return host.ssh("curl -s --max-time 5 http://127.0.0.1:11434/ || true").stdout


def wait_for_ollama(host: Host, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "Ollama is running" in (answer := api_root(host)):
            return answer
        time.sleep(1)
    journal = host.ssh("journalctl -u ollama -n 20 --no-pager", check=False).stdout
    raise AssertionError(f"{host.name}: ollama does not answer after {timeout:.0f} s\n{journal}")


def host_state(host: Host) -> dict[str, str]:
    """What a refused bundle must leave as it was."""
    return {
        "bundle": host.ssh(f"sha256sum {BUNDLE_ROOT}/bundle.yaml").stdout.split()[0],
        "tree": host.ssh(f"cd {BUNDLE_ROOT} && find . -type f -printf '%P %s %i\\n' | sort").stdout,
        "version": host.ssh("/usr/local/bin/ollama --version 2>&1").stdout,
        "active": host.ssh("systemctl is-active ollama", check=False).stdout.strip(),
        "main_pid": host.ssh("systemctl show -p MainPID --value ollama").stdout.strip(),
    }


def leftovers(host: Host) -> str:
    """Staging trees beside the bundle root and archives waiting in the incoming directory."""
    return host.ssh(f"ls -A {INCOMING}; ls -A /var/lib/ollama-airgap | grep staging || true").stdout.strip()


def assert_no_changes(result: PlaybookResult, hosts: list[str]) -> None:
    assert result.returncode == 0, result.explain()
    assert set(hosts) <= set(result.recap), result.explain()
    assert all(result.recap[h]["changed"] == 0 and result.recap[h]["failed"] == 0 for h in hosts), result.explain()


@pytest.mark.hosts
def test_site_deploys_every_host(deployed: Deployment) -> None:
    hosts = deployed.hosts.hosts
    assert len(hosts) >= 2
    recap = deployed.result.recap
    assert all(recap[h.name]["failed"] == 0 and recap[h.name]["unreachable"] == 0 for h in hosts), recap
    with tarfile.open(deployed.bundle) as tar:
        digest = hashlib.sha256(tar.extractfile("bundle.yaml").read()).hexdigest()
    for host in hosts:
        assert "Ollama is running" in api_root(host)
        assert OLLAMA_VERSION_ZST in host.ssh("/usr/local/bin/ollama --version 2>&1").stdout
        assert host.ssh("systemctl is-enabled ollama").stdout.strip() == "enabled"
        assert host.ssh(f"sha256sum {BUNDLE_ROOT}/bundle.yaml").stdout.split()[0] == digest
        assert host.ssh(f"test -s /var/lib/ollama-airgap/verified/{digest}.json", check=False).returncode == 0
        assert leftovers(host) == ""
        unit = host.ssh(
            "systemctl show ollama -p User -p NoNewPrivileges -p ProtectSystem -p ProtectHome"
            " -p PrivateTmp -p PrivateDevices -p Environment"
        ).stdout
        for setting in (
            "User=ollama",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "PrivateDevices=no",
            "OLLAMA_HOST=127.0.0.1:11434",
            "OLLAMA_MODELS=/usr/share/ollama/.ollama/models",
            "OLLAMA_NO_CLOUD=1",  # air-gapped default: cloud models and web search off
        ):
            assert setting in unit, unit
        assert "OLLAMA_ORIGINS" not in unit
        # -L: bin/ollama is a link to the active release (plugins/modules/airgap_ollama_release.py); check what it runs.
        stat = "stat -L -c '%U:%G %a' /usr/share/ollama/.ollama/models /usr/local/bin/ollama"
        owner = host.ssh(stat).stdout.split("\n")
        assert owner[0] == "ollama:ollama 755" and owner[1] == "root:root 755"
        groups = host.ssh("id -nG ollama").stdout.split()
        assert "video" in groups  # render/video exist on Debian: the service user joins them


@pytest.mark.hosts
def test_second_run_changes_nothing_and_sends_nothing(deployed: Deployment, ansible_playbook: PlaybookRunner) -> None:
    result = ansible_playbook("site.yml")
    print(f"\n[deploy] no-op site.yml: {result.seconds:.1f} s (first run {deployed.result.seconds:.1f} s)")
    assert_no_changes(result, [h.name for h in deployed.hosts.hosts])
    # The bundle was neither sent again nor re-hashed: the stream task found each host's record intact.
    stream_section = result.output.split(" : Stream the bundle to the host]")[1]
    stream_section = stream_section.split("TASK [")[0]
    assert "ok: [" in stream_section and "changed: [" not in stream_section, stream_section


@pytest.mark.hosts
def test_check_diff_on_a_deployed_host_changes_nothing(deployed: Deployment, ansible_playbook: PlaybookRunner) -> None:
    host = deployed.hosts.hosts[0]
    before = host_state(host)
    result = ansible_playbook("site.yml", extra=["--check", "--diff", "--limit", host.name])
    assert_no_changes(result, [host.name])
    assert host_state(host) == before


@pytest.mark.hosts
def test_reboot_brings_ollama_back(deployed: Deployment) -> None:
    host = deployed.hosts.hosts[0]
    deployed.hosts.reboot(host)
    assert "Ollama is running" in wait_for_ollama(host)


def rewrite_archive(
    source: Path,
    target: Path,
    *,
    flip_in: str | None = None,
    extra: tarfile.TarInfo | None = None,
    extra_after: str = "bundle.yaml",
) -> None:
    """Copy a bundle archive, flipping one byte in the middle of member ``flip_in`` or adding ``extra`` after
    ``extra_after``."""
    with tarfile.open(source) as tar_in, tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as tar_out:
        for member in tar_in:
            data = tar_in.extractfile(member).read() if member.isreg() else None
            if member.name == flip_in:
                flipped = bytearray(data)
                flipped[len(flipped) // 2] ^= 0x01
                data = bytes(flipped)
            tar_out.addfile(member, io.BytesIO(data) if data is not None else None)
            if extra is not None and member.name == extra_after:
                tar_out.addfile(extra, io.BytesIO(b"x" * extra.size))


@pytest.mark.hosts
def test_corrupt_bundle_is_refused_and_host_untouched(
    deployed: Deployment, ansible_playbook: PlaybookRunner, built_bundles: dict[str, Path], tmp_path: Path
) -> None:
    host = deployed.hosts.hosts[-1]
    before = host_state(host)
    source = built_bundles[OLLAMA_VERSION_TGZ]  # another bundle, so the host has no record of it
    # A file the host does not hold yet: the push links the models' blobs it holds verified instead of sending them.
    blob = f"ollama/{OLLAMA_VERSION_TGZ}/ollama-linux-amd64.tgz"
    corrupt = tmp_path / "corrupt.tar"
    rewrite_archive(source, corrupt, flip_in=blob)
    assert corrupt.stat().st_size == source.stat().st_size
    result = ansible_playbook("site.yml", extra=["--limit", host.name], bundle_src=str(corrupt))
    assert result.returncode != 0
    assert f"{blob} is altered" in result.output, result.explain()
    assert result.recap[host.name]["failed"] == 1
    assert host_state(host) == before
    # The push keeps the members it verified for the next run (resume), never the altered one.
    staged = host.ssh("find /var/lib/ollama-airgap/.bundle.staging-* -type f 2>/dev/null || true").stdout
    assert blob not in staged and host.ssh(f"ls -A {INCOMING} 2>/dev/null || true").stdout.strip() == ""
    host.ssh("rm -rf /var/lib/ollama-airgap/.bundle.staging-*")
    assert leftovers(host) == ""


@pytest.mark.hosts
def test_hostile_archive_is_refused_before_extraction(
    deployed: Deployment, ansible_playbook: PlaybookRunner, built_bundles: dict[str, Path], tmp_path: Path
) -> None:
    host = deployed.hosts.hosts[-1]
    before = host_state(host)
    escape = tarfile.TarInfo("../../../../../../tmp/airgap-escaped")
    escape.size = 16
    hostile = tmp_path / "hostile.tar"
    rewrite_archive(built_bundles[OLLAMA_VERSION_TGZ], hostile, extra=escape)
    result = ansible_playbook("playbooks/bundle.yml", extra=["--limit", host.name], bundle_src=str(hostile))
    assert result.returncode != 0
    assert "'../../../../../../tmp/airgap-escaped': path escapes the bundle" in result.output, result.explain()
    assert host.ssh("ls /tmp/airgap-escaped /var/lib/airgap-escaped", check=False).returncode != 0
    assert host_state(host) == before
    assert leftovers(host) == ""


@pytest.mark.hosts
def test_upgrade_replaces_the_release(
    deployed: Deployment, ansible_playbook: PlaybookRunner, built_bundles: dict[str, Path]
) -> None:
    host = deployed.hosts.hosts[-1]
    old = ansible_playbook(
        "playbooks/bundle.yml",
        "playbooks/ollama.yml",
        extra=["--limit", host.name],
        bundle_src=str(built_bundles[OLLAMA_VERSION_TGZ]),
    )
    assert old.returncode == 0, old.explain()
    assert OLLAMA_VERSION_TGZ in host.ssh("/usr/local/bin/ollama --version 2>&1").stdout
    # A library only the old release has: install.sh's upgrade removes lib/ollama before unpacking.
    host.ssh("touch /usr/local/lib/ollama/libggml-only-in-old.so")
    new = ansible_playbook("site.yml", extra=["--limit", host.name])
    assert new.returncode == 0, new.explain()
    assert new.recap[host.name]["changed"] > 0
    assert OLLAMA_VERSION_ZST in host.ssh("/usr/local/bin/ollama --version 2>&1").stdout
    assert host.ssh("test -e /usr/local/lib/ollama/libggml-only-in-old.so", check=False).returncode != 0
    header = host.ssh("head -c 80 /usr/local/lib/ollama/libggml-base.so").stdout
    assert f"ollama {OLLAMA_VERSION_ZST}" in header
    assert "Ollama is running" in wait_for_ollama(host)
    assert_no_changes(ansible_playbook("site.yml", extra=["--limit", host.name]), [host.name])


def test_ansible_lint_production_profile() -> None:
    lint = VENV_BIN / "ansible-lint"
    if not lint.exists():
        pytest.skip("ansible-lint is not installed")
    proc = subprocess.run(
        [str(lint), "--profile", "production", "--nocolor", "site.yml", "playbooks", "roles"],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=600,
        env={"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(Path.home())},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]


@pytest.mark.hosts
def test_service_that_fails_to_start_shows_its_journal(deployed: Deployment, ansible_playbook: PlaybookRunner) -> None:
    host = deployed.hosts.hosts[0]
    phases = ("playbooks/bundle.yml", "playbooks/ollama.yml")
    # Port 1 is privileged: the ollama user cannot bind it, so the service keeps failing.
    broken = ansible_playbook(*phases, extra=["--limit", host.name], ollama_host="127.0.0.1:1", ollama_start_timeout=6)
    assert broken.returncode != 0
    assert "did not answer at http://127.0.0.1:1/" in broken.output, broken.explain()
    assert "Last journal lines:" in broken.output and "ollama" in broken.output.split("Last journal lines:")[1]
    fixed = ansible_playbook(*phases, extra=["--limit", host.name])
    assert fixed.returncode == 0, fixed.explain()
    assert "Ollama is running" in wait_for_ollama(host)
