"""pytest plugin: the test bed's upstream mirrors as a session fixture (listed in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testbed.mirrors import Mirrors, start_mirrors


@pytest.fixture(scope="session")
def mirrors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirrors]:
    """Seeded registry + GitHub-releases stand-in, started once per session and stopped at its end."""
    started = start_mirrors(tmp_path_factory.mktemp("mirrors"))
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="session")
def mirrors_token_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirrors]:
    """The same mirrors, but the registry demands Bearer tokens from its token issuer (like ghcr.io)."""
    started = start_mirrors(tmp_path_factory.mktemp("mirrors-token"), token_auth=True)
    try:
        yield started
    finally:
        started.stop()
