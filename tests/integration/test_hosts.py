"""The test bed's target hosts: real Debian machines with systemd, reached over SSH and by Ansible."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed.config import BRIDGE, GATEWAY, STATE_DIR
from testbed.hosts import INVENTORY_GROUP, TestHosts, list_host_netns, list_host_processes, list_testbed_links

pytestmark = pytest.mark.hosts

VENV_BIN = Path(sys.executable).parent


def test_hosts_boot_to_running_and_answer_ssh(test_hosts: TestHosts) -> None:
    assert len(test_hosts.hosts) == 2
    for host in test_hosts.hosts:
        assert host.ssh("systemctl is-system-running").stdout.strip() == "running"
        assert host.ssh("systemctl is-active ssh.service").stdout.strip() == "active"


def test_hostnames_and_addresses(test_hosts: TestHosts) -> None:
    node1, node2 = test_hosts.hosts
    for host, peer in ((node1, node2), (node2, node1)):
        assert host.ssh("hostname").stdout.strip() == host.name
        addresses = host.ssh("ip -4 -o addr show dev host0").stdout
        assert f"inet {host.address}/24" in addresses
        assert host.ssh(f"getent hosts {peer.name}").stdout.split()[0] == peer.address
    assert node1.ssh("cat /etc/machine-id").stdout != node2.ssh("cat /etc/machine-id").stdout


def test_ansible_ping_through_written_inventory(ansible_inventory: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_NOCOLOR": "1",
    }
    result = subprocess.run(
        ["ansible", "-i", str(ansible_inventory), INVENTORY_GROUP, "-m", "ansible.builtin.ping", "-o"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count('"ping": "pong"') == 2, result.stdout


def test_hosts_have_no_route_out(test_hosts: TestHosts) -> None:
    for host in test_hosts.hosts:
        assert host.ssh("ip route show default").stdout.strip() == ""
        outside = host.ssh("ip route get 1.1.1.1", check=False)
        assert outside.returncode != 0 and "unreachable" in outside.stderr
        # The bridge side answers; it is the only thing there is.
        assert "dev host0" in host.ssh(f"ip route get {GATEWAY}").stdout


def test_reboot_inside_host_brings_it_back(test_hosts: TestHosts) -> None:
    host = test_hosts.hosts[-1]
    old_boot_id = host.boot_id()
    supervisor = host.supervisor_pid()
    host.ssh("echo kept > /etc/testbed-reboot-marker")
    new_boot_id = test_hosts.reboot(host)
    assert new_boot_id != old_boot_id
    assert host.boot_id() == new_boot_id
    assert host.supervisor_pid() == supervisor  # the same supervisor restarted nspawn
    assert host.ssh("systemctl is-system-running").stdout.strip() == "running"
    assert host.ssh("cat /etc/testbed-reboot-marker").stdout.strip() == "kept"


def _testbed_mounts() -> list[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line for line in lines if str(STATE_DIR) in line]


def test_down_leaves_nothing_and_cached_up_is_quick(test_hosts: TestHosts, capsys: pytest.CaptureFixture[str]) -> None:
    count = len(test_hosts.hosts)
    test_hosts.down()
    assert list_host_processes() == []
    assert list_host_netns() == []
    assert list_testbed_links() == []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert "oatb-" not in netns
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    assert BRIDGE not in links and "oatb-v" not in links
    assert _testbed_mounts() == []

    # Up again for the rest of the session: the root file system is cached, so this takes seconds.
    started = time.monotonic()
    hosts = test_hosts.up(count)
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(f"\n[testbed] cached start of {count} hosts: {elapsed:.1f} s ({test_hosts.root_mode} roots)")
    for host in hosts:
        assert host.ssh("systemctl is-system-running").stdout.strip() == "running"
