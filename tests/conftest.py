"""Shared pytest wiring: the test bed's fixtures come from its own plugin modules."""

from __future__ import annotations

import pytest

pytest_plugins = ["testbed.fixtures_mirrors", "testbed.fixtures_hosts", "testbed.fixtures_standin"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The host tests stop and restart the session's hosts: run them before anything deploys to those hosts."""
    items.sort(key=lambda item: 0 if item.path.name == "test_hosts.py" else 1)
