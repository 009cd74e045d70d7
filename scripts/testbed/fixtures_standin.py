"""pytest plugin: the ollama stand-in served on loopback (listed in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testbed import config
from testbed.standin_server import Standin, start_standin, write_standin


@pytest.fixture(scope="session")
def standin_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_standin(tmp_path_factory.mktemp("bin") / "ollama", config.OLLAMA_VERSION_TGZ)


@pytest.fixture
def start_standin_server(tmp_path: Path, standin_script: Path) -> Iterator[Callable[..., Standin]]:
    """Start `ollama serve` servers on free loopback ports; each is ended by PID afterwards."""
    servers: list[Standin] = []

    def start(models: Path | None = None, **extra_env: str) -> Standin:
        log = tmp_path / f"serve-{len(servers)}.log"
        server = start_standin(standin_script, models or tmp_path / "models", tmp_path, log, **extra_env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
