"""Pytest plugin: the test bed's systemd hosts as session fixtures.

Tests that use them carry ``pytest.mark.hosts``. The fixture skips (with the reason) where hosts cannot run:
not root, or systemd-nspawn / iproute2 / ssh missing. CI runs as root, so there they run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.hosts import INVENTORY_PATH, TestBedBusy, TestHosts, hosts_unavailable_reason

# Hosts every session gets.
SESSION_HOST_COUNT = 2


@pytest.fixture(scope="session")
def test_hosts() -> Iterator[TestHosts]:
    """Two booted hosts (node1, node2) for the whole session, torn down at its end."""
    reason = hosts_unavailable_reason()
    if reason:
        pytest.skip(reason)
    bed = TestHosts(owned_by_this_process=True)
    started = time.monotonic()
    try:
        bed.up(SESSION_HOST_COUNT)
    except TestBedBusy:
        raise  # another test bed is up: leave it alone
    except BaseException:
        bed.down()
        raise
    print(f"\n[testbed] {SESSION_HOST_COUNT} hosts up in {time.monotonic() - started:.1f} s")
    try:
        yield bed
    finally:
        bed.down()


@pytest.fixture(scope="session")
def ansible_inventory(test_hosts: TestHosts) -> Path:
    """The Ansible inventory (group ``ollama_hosts``) the test bed wrote for its hosts."""
    return INVENTORY_PATH
