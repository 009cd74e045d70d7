"""The deploy kit on the test bed: `bundle build --deploy-kit` (wheels from the test bed's local PyPI) carries
`deploy` and kit/, `--no-deploy-kit` leaves them out; the unpacked bundle's `deploy -i INVENTORY --limit node1`,
run by this machine's python3 (not the project venv), deploys the session's first host and proves it with the
testinfra suite, and a second run changes nothing. At the end that host gets the session's demo bundle back, as other
modules expect.

Budget: about 3 minutes (build ~5 s, two deploys, one testinfra run, the restore; 207 s with two suite runs).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
import yaml

from testbed.config import OLLAMA_VERSION_ZST
from testbed.hosts import TestHosts
from testbed.mirrors import Mirrors
from testbed.pypi_mirror import PypiMirror

if TYPE_CHECKING:
    from conftest import PlaybookRunner  # tests/integration/conftest.py

pytestmark = pytest.mark.hosts

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PYTHON3 = shutil.which("python3", path="/usr/bin:/bin") or "python3"  # the machine's python3


@dataclass
class Kit:
    archive: Path
    bare: Path  # the same spec with --no-deploy-kit
    build: dict[str, Any]
    build_seconds: float
    relocked: Path  # rebuilt with --lock


def bundle_cli(*argv: str) -> dict[str, Any]:
    proc = subprocess.run(
        [str(VENV_BIN / "bundle"), *argv, "--json"], capture_output=True, text=True, check=False, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@pytest.fixture(scope="module")
def kit(
    mirrors: Mirrors, pypi_mirror: PypiMirror, built_bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Kit:
    tmp = tmp_path_factory.mktemp("deploy-kit")
    spec = yaml.safe_load((REPO / "bundles" / "demo.yaml").read_text())
    spec["ollama"]["version"] = OLLAMA_VERSION_ZST
    (tmp / "demo.yaml").write_text(yaml.safe_dump(spec))
    github = urlsplit(mirrors.release_base_url)
    common = [
        "build", str(tmp / "demo.yaml"), "--cache", str(built_bundles[OLLAMA_VERSION_ZST].parent / "cache"),
        "--mirror", f"registry.ollama.ai={mirrors.registry_url}",
        "--mirror", f"github.com={github.scheme}://{github.netloc}",
    ]  # fmt: skip
    started = time.monotonic()
    built = bundle_cli(*common, "-o", str(tmp / "demo.tar"), "--deploy-kit", "--kit-index-url", pypi_mirror.index_url)
    seconds = time.monotonic() - started
    print(f"\n[kit] bundle build with the deploy kit: {seconds:.1f} s")
    bundle_cli(*common, "-o", str(tmp / "demo-bare.tar"), "--no-deploy-kit")
    relock = ["--lock", str(tmp / "demo.lock.yaml"), "--deploy-kit", "--kit-index-url", pypi_mirror.index_url]
    bundle_cli(*common, "-o", str(tmp / "again" / "demo.tar"), *relock)
    return Kit(tmp / "demo.tar", tmp / "demo-bare.tar", built, seconds, tmp / "again" / "demo.tar")


def members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive) as tar:
        return {member.name: member for member in tar}


def manifest(archive: Path) -> dict[str, Any]:
    with tarfile.open(archive) as tar:
        handle = tar.extractfile("bundle.yaml")
        assert handle is not None
        document: dict[str, Any] = yaml.safe_load(handle.read())
    return document


def test_build_adds_the_kit_and_no_deploy_kit_leaves_it_out(kit: Kit, pypi_mirror: PypiMirror) -> None:
    with_kit, bare = members(kit.archive), members(kit.bare)
    kit_paths = {name for name in with_kit if name == "deploy" or name.startswith("kit/")}
    assert set(with_kit) - set(bare) == kit_paths
    assert with_kit["deploy"].mode == 0o755
    document = manifest(kit.archive)
    listed = {item["path"]: item for item in document["files"]}
    assert kit_paths <= set(listed)  # every kit file listed with size and sha256 (and in SHA256SUMS)
    assert all(listed[path]["size"] == with_kit[path].size for path in kit_paths)
    record = document["deploy_kit"]
    assert record["entry"] == "deploy" and record["collection"] in listed and record["playbook"].endswith(".site")
    assert "deploy_kit" not in manifest(kit.bare)
    assert bundle_cli("verify", str(kit.archive))["ok"]
    assert bundle_cli("inspect", str(kit.archive))["deploy_kit"] == record
    assert "/files/ansible_core-" in pypi_mirror.access_log.read_text()  # the wheels came from the local index
    assert yaml.safe_load(kit.archive.with_name("demo.lock.yaml").read_text())["deploy_kit"]["wheels"]
    assert kit.relocked.read_bytes() == kit.archive.read_bytes()  # --lock: the same bundle, kit included


@pytest.fixture(scope="module")
def unpacked(kit: Kit, test_hosts: TestHosts, ansible_playbook: PlaybookRunner) -> Iterator[Path]:
    """The bundle unpacked as the README says; afterwards every host gets the session's demo bundle back."""
    root = kit.archive.with_suffix("")
    root.mkdir()
    subprocess.run(["tar", "-xf", str(kit.archive), "-C", str(root)], check=True)
    try:
        yield root
    finally:
        back = ansible_playbook("site.yml", extra=("--limit", test_hosts.hosts[0].name))
        assert back.returncode == 0, back.explain()


def deploy(
    bundle: Path, inventory: Path, *extra: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], float]:
    argv = [PYTHON3, str(bundle / "deploy"), "-i", str(inventory), "--state-dir", str(bundle.parent / "state"), *extra]
    started = time.monotonic()
    proc = subprocess.run([*argv, "--json"], capture_output=True, text=True, timeout=900, check=False)
    seconds = time.monotonic() - started
    assert proc.stdout.strip(), proc.stderr[-6000:]
    return proc, json.loads(proc.stdout), seconds


def test_deploy_from_the_bundle_then_a_second_run_changes_nothing(
    unpacked: Path, ansible_inventory: Path, test_hosts: TestHosts
) -> None:
    """On the first host only (budget): --limit passes through to ansible-playbook and narrows testinfra too."""
    limit = ("--limit", test_hosts.hosts[0].name)
    first, summary, seconds = deploy(unpacked, ansible_inventory, *limit)
    print(f"\n[kit] first deploy (venv built, collection installed): {seconds:.1f} s {summary.get('phases')}")
    assert first.returncode == 0 and summary["ok"], first.stderr[-6000:]
    assert not summary["venv"]["reused"] and not summary["collection"]["reused"]
    assert summary["hosts"] == [test_hosts.hosts[0].name] and summary["failed"] == 0
    assert summary["tests"]["passed"] > 0 and summary["tests"]["failed"] == summary["tests"]["errors"] == 0
    assert summary["python"] in json.loads((unpacked / "kit" / "kit.json").read_text())["python"]

    again, summary, seconds = deploy(unpacked, ansible_inventory, *limit, "--skip-tests")  # the suite ran once: budget
    print(f"\n[kit] second deploy (warm, --skip-tests): {seconds:.1f} s {summary['phases']}")
    assert again.returncode == 0 and summary["ok"], again.stderr[-6000:]
    assert summary["venv"]["reused"] and summary["collection"]["reused"]
    assert summary["changed"] == 0, again.stderr[-6000:]
    assert summary["tests"] is None
    assert bundle_cli("verify", str(unpacked))["ok"]  # deploy wrote nothing into the bundle
