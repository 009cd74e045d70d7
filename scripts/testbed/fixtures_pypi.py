"""pytest plugin: the test bed's local PyPI (the deploy kit's wheels) as a session fixture (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testbed.pypi_mirror import PypiMirror, start_pypi_mirror


@pytest.fixture(scope="session")
def pypi_mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PypiMirror]:
    """nginx serving a PEP 503 index of the cached kit wheels (filled once from PyPI), stopped at the session's end."""
    started = start_pypi_mirror(tmp_path_factory.mktemp("pypi"))
    try:
        yield started
    finally:
        started.stop()
