"""Shared pytest wiring: the test bed's fixtures come from its own plugin modules."""

from __future__ import annotations

import os

import pytest

pytest_plugins = [
    "testbed.fixtures_mirrors",
    "testbed.fixtures_hosts",
    "testbed.fixtures_standin",
    "testbed.fixtures_pypi",
]
# `bundle build` adds the deploy kit by default (wheels from PyPI); the tests of other features build without it,
# the deploy kit's own tests ask for it with --deploy-kit and the test bed's local index.
os.environ.setdefault("OLLAMA_AIRGAP_DEPLOY_KIT", "0")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The host tests stop and restart the session's hosts: run them before anything deploys to those hosts."""
    items.sort(key=lambda item: 0 if item.path.name == "test_hosts.py" else 1)
