"""Deploy-side session fixtures: bundles built from the test bed mirrors, and one site.yml deploy shared by tests.

- ``built_bundles``: {"0.13.5": archive, "0.14.1": archive}, built by the real `bundle build` from bundles/demo.yaml.
- ``deployed``: site.yml run once on the test bed's hosts with the 0.14.1 bundle (a :class:`Deployment`).
- ``ansible_playbook``: run a playbook against the test bed hosts (a :class:`PlaybookRunner`).
- ``depot``: a real docker-registry on loopback, one per test module; ``depot_proxy``: the fault proxy in front of
  it, one per test.

Tests that use the last two are marked ``pytest.mark.hosts``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from testbed.config import OLLAMA_VERSION_ZST, OLLAMA_VERSIONS
from testbed.faultproxy import FaultProxy, fault_proxy
from testbed.hosts import TestHosts
from testbed.mirrors import Mirrors
from testbed.registry import RegistryServer, start_registry

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
DEMO_SPEC = REPO / "bundles" / "demo.yaml"
SITE = REPO / "site.yml"
PLAYBOOK_TIMEOUT_S = 900
_RECAP_LINE = re.compile(r"^(\S+)\s*:\s*((?:\w+=\d+\s*)+)$")


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP lines → {host: {"ok": n, "changed": n, "failed": n, ...}} (the last recap in the output)."""
    recap: dict[str, dict[str, int]] = {}
    _, _, tail = output.rpartition("PLAY RECAP")
    for line in tail.splitlines():
        match = _RECAP_LINE.match(line.strip())
        if match:
            counts = dict(item.split("=") for item in match.group(2).split())
            recap[match.group(1)] = {key: int(value) for key, value in counts.items()}
    return recap


@dataclass
class PlaybookResult:
    argv: list[str]
    returncode: int
    output: str  # stdout and stderr together, in order
    seconds: float
    recap: dict[str, dict[str, int]] = field(default_factory=dict)

    def changed(self) -> dict[str, int]:
        return {host: counts.get("changed", 0) for host, counts in self.recap.items()}

    def explain(self) -> str:
        return f"{' '.join(self.argv)} -> rc {self.returncode}\n{self.output[-8000:]}"


@dataclass
class PlaybookRunner:
    """ansible-playbook with the repository's ansible.cfg, the test bed inventory and a vars file."""

    inventory: Path
    vars_file: Path

    def __call__(
        self, *playbooks: str | Path, extra: tuple[str, ...] | list[str] = (), **extra_vars: object
    ) -> PlaybookResult:
        argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(self.inventory), "-e", f"@{self.vars_file}"]
        for name, value in extra_vars.items():
            argv += ["-e", yaml.safe_dump({name: value}, default_flow_style=True).strip()]
        argv += [*extra, *(str(REPO / p) if not Path(p).is_absolute() else str(p) for p in playbooks)]
        env = {
            **os.environ,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
        }
        started = time.monotonic()
        proc = subprocess.run(
            argv,
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=PLAYBOOK_TIMEOUT_S,
            check=False,
        )
        return PlaybookResult(argv, proc.returncode, proc.stdout, time.monotonic() - started, parse_recap(proc.stdout))


def build_bundle(mirrors: Mirrors, spec: Path, out: Path, cache: Path) -> Path:
    github = urlsplit(mirrors.release_base_url)
    argv = [
        str(VENV_BIN / "bundle"), "build", str(spec), "--cache", str(cache), "-o", str(out), "-q",
        "--mirror", f"registry.ollama.ai={mirrors.registry_url}",
        "--mirror", f"github.com={github.scheme}://{github.netloc}",
    ]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="session")
def built_bundles(mirrors: Mirrors, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo bundle for each test bed ollama version (0.13.5: .tgz release, 0.14.1: .tar.zst)."""
    tmp = tmp_path_factory.mktemp("bundles")
    spec = yaml.safe_load(DEMO_SPEC.read_text())
    bundles = {}
    for version in OLLAMA_VERSIONS:
        spec["ollama"]["version"] = version
        spec_path = tmp / f"demo-{version}.yaml"
        spec_path.write_text(yaml.safe_dump(spec))
        bundles[version] = build_bundle(mirrors, spec_path, tmp / f"demo-{version}.tar", tmp / "cache")
    return bundles


@pytest.fixture(scope="session")
def ansible_playbook(
    ansible_inventory: Path, built_bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> PlaybookRunner:
    """Runs playbooks on the test bed hosts; the vars file points bundle_src at the 0.14.1 demo bundle."""
    vars_file = tmp_path_factory.mktemp("deploy") / "vars.yml"
    vars_file.write_text(yaml.safe_dump({"bundle_src": str(built_bundles[OLLAMA_VERSION_ZST])}))
    return PlaybookRunner(ansible_inventory, vars_file)


@dataclass
class Deployment:
    hosts: TestHosts
    inventory: Path
    bundle: Path
    result: PlaybookResult  # the first site.yml run


@pytest.fixture(scope="session")
def deployed(
    test_hosts: TestHosts,
    ansible_inventory: Path,
    ansible_playbook: PlaybookRunner,
    built_bundles: dict[str, Path],
) -> Deployment:
    """site.yml run once on every test bed host with the 0.14.1 demo bundle (fails the tests using it if it fails)."""
    result = ansible_playbook("site.yml")
    print(f"\n[deploy] site.yml on {len(test_hosts.hosts)} hosts: {result.seconds:.1f} s")
    assert result.returncode == 0, result.explain()
    return Deployment(test_hosts, ansible_inventory, built_bundles[OLLAMA_VERSION_ZST], result)


@pytest.fixture(scope="module")
def depot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    server = start_registry(tmp_path_factory.mktemp("depot"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def depot_proxy(depot: RegistryServer) -> Iterator[FaultProxy]:
    with fault_proxy(depot.url) as started:
        yield started
