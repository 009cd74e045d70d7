"""Shared pytest wiring: the test bed's fixtures come from its own plugin modules."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

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


def pytest_sessionstart(session: pytest.Session) -> None:
    """ansible.cfg finds the collection ollama_airgap.deploy (this checkout) through a link that scripts/setup.sh
    makes; make it here too, replacing the copy `ansible-lint` installs when the link is missing (a stale copy would
    shadow the checkout)."""
    link = Path(__file__).resolve().parents[1] / ".ansible/collections/ansible_collections/ollama_airgap/deploy"
    if link.is_symlink() and link.resolve() == link.parents[4]:
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    link.symlink_to(Path("../../../.."), target_is_directory=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The host tests stop and restart the session's hosts: run them before anything deploys to those hosts."""
    items.sort(key=lambda item: 0 if item.path.name == "test_hosts.py" else 1)
