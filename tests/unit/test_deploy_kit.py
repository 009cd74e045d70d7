"""The deploy kit (src/ollama_airgap/deploy_kit.py) and its entry script (deploy_entry.py, `<bundle>/deploy`):
layout, spec keys, and the entry script's refusals, on a bundle tree assembled from a real kit (wheels from the
test bed's local PyPI, the collection from `ansible-galaxy collection build`). Deploying is in
tests/integration/test_deploy_kit_hosts.py."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from ollama_airgap.bundle import Entry, manifest_bytes, sums_text, verify_dir
from ollama_airgap.deploy_kit import KitOptions, KitSpec, build_kit, find_repo, wheel_pins
from ollama_airgap.errors import SpecError, VerifyError
from ollama_airgap.lock import Lock, load_lock
from ollama_airgap.progress import Reporter
from ollama_airgap.spec import validate_spec
from ollama_airgap.wheelhouse import machine_platform, machine_python
from testbed.pypi_mirror import PypiMirror

PYTHON3 = shutil.which("python3", path="/usr/bin:/bin") or sys.executable  # the machine's, not the project venv's


@pytest.fixture(scope="module")
def kit(pypi_mirror: PypiMirror, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Entry], dict, Path]:
    work = tmp_path_factory.mktemp("kit-work")
    entries, meta = build_kit(KitSpec(), work, KitOptions(index_url=pypi_mirror.index_url))
    return entries, meta, work


def write_bundle(entries: list[Entry], meta: dict, root: Path) -> Path:
    """A bundle tree as `tar -x` of a built bundle leaves it: bundle.yaml, SHA256SUMS and every entry."""
    ordered = sorted(entries, key=lambda e: e.path)
    for entry in ordered:
        target = root / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if entry.data is not None:
            target.write_bytes(entry.data)
        else:
            assert entry.source is not None
            shutil.copyfile(entry.source, target)
        target.chmod(entry.mode)
    sums = sums_text(ordered)
    (root / "SHA256SUMS").write_bytes(sums)
    (root / "bundle.yaml").write_bytes(manifest_bytes({"name": "kit-test", "deploy_kit": meta}, ordered, sums))
    return root


@pytest.fixture
def bundle(kit: tuple[list[Entry], dict, Path], tmp_path: Path) -> Path:
    return write_bundle(kit[0], kit[1], tmp_path / "kit-test")


def run_deploy(bundle: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    state = bundle.parent / "state"
    argv = [PYTHON3, str(bundle / "deploy"), "--state-dir", str(state), *args]
    return subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **env}, timeout=120, check=False)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout + proc.stderr
    return lines[0]


# -- layout ----------------------------------------------------------------------------------------------------


def test_kit_layout_and_its_record(kit: tuple[list[Entry], dict, Path]) -> None:
    entries, meta, _ = kit
    paths = {e.path: e for e in entries}
    assert paths["deploy"].mode == 0o755 and all(e.mode == 0o644 for p, e in paths.items() if p != "deploy")
    wheels = {p.split("/")[-1].split("-")[0].lower() for p in paths if p.startswith("kit/wheels/")}
    assert {"ansible_core", "pytest", "pytest_testinfra", "ollama_airgap", "pip", "pyyaml", "zstandard"} <= wheels
    assert "kit/tests/infra/conftest.py" in paths and "kit/tests/infra/test_service.py" in paths
    assert {"kit/inventory.example.yml", "kit/ansible.cfg", "kit/kit.json"} <= set(paths)
    info = json.loads(paths["kit/kit.json"].data or b"")
    assert info["python"] == [machine_python()] and info["platforms"] == [machine_platform()]
    assert (
        info["collection"] in paths and info["pip_wheel"] in paths and info["playbook"] == "ollama_airgap.deploy.site"
    )
    assert meta["collection"] == info["collection"] == "kit/collection/ollama_airgap-deploy-0.1.0.tar.gz"
    assert meta["entry"] == "deploy" and meta["wheels"] == len(info["wheels"])
    assert meta["size"] == sum(e.size for e in entries)
    source = paths[info["collection"]].source
    assert source is not None
    with tarfile.open(source) as tar:
        names = set(tar.getnames())
    assert {"MANIFEST.json", "roles/ollama/tasks/main.yml", "playbooks/site.yml"} <= names
    assert "plugins/modules/airgap_ollama_release.py" in names


def test_an_assembled_kit_bundle_verifies(bundle: Path) -> None:
    report = verify_dir(bundle, Reporter(enabled=False))
    assert report.ok, report.problems
    document = yaml.safe_load((bundle / "bundle.yaml").read_text())
    listed = {f["path"] for f in document["files"]}
    assert "deploy" in listed and any(p.startswith("kit/wheels/pip-") for p in listed)


def test_repository_not_found_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"is not the ollama-airgap repository \(no galaxy.yml\)"):
        find_repo(tmp_path)


# -- spec keys -------------------------------------------------------------------------------------------------


def spec_with(kit: object) -> dict:
    return {"name": "k", "ollama": {"version": "0.14.1"}, "models": ["tinyllama"], "deploy_kit": kit}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"python": ["2.7"]}, r"deploy_kit\.python\[0\]: python version '2\.7' is not supported"),
        ({"python": [3.11]}, r"deploy_kit\.python\[0\]: quote it"),
        ({"platforms": ["win_amd64"]}, r"deploy_kit\.platforms\[0\]: platform 'win_amd64' is not supported"),
        ({"python": ["3.11", "3.11"]}, r"deploy_kit\.python\[1\]: 3\.11 is listed twice"),
        ({"pythons": ["3.11"]}, r"deploy_kit\.pythons: unknown key"),
        ("yes", r"deploy_kit: must be a mapping, true or false"),
    ],
)
def test_bad_deploy_kit_spec_is_one_line(value: object, message: str) -> None:
    with pytest.raises(SpecError, match=message) as caught:
        validate_spec(spec_with(value), Path("k.yaml"))
    assert "\n" not in str(caught.value) and str(caught.value).startswith("k.yaml: ")


def test_deploy_kit_spec_values() -> None:
    assert validate_spec(spec_with(False), Path("k.yaml")).deploy_kit is None
    assert validate_spec(spec_with(None), Path("k.yaml")).deploy_kit == KitSpec()
    chosen = {"python": ["3.11", "3.12"], "platforms": ["manylinux2014_x86_64", "manylinux_2_28_aarch64"]}
    assert validate_spec(spec_with(chosen), Path("k.yaml")).deploy_kit == KitSpec(
        ("3.11", "3.12"), ("manylinux2014_x86_64", "manylinux_2_28_aarch64")
    )


# -- the entry script's refusals (nothing from the kit runs) -----------------------------------------------------


def test_no_inventory_is_refused(bundle: Path) -> None:
    proc = run_deploy(bundle)
    assert proc.returncode == 2 and "no inventory" in one_line(proc)
    proc = run_deploy(bundle, "-i", str(bundle.parent / "missing.yml"))
    assert proc.returncode == 2 and one_line(proc) == f"deploy: inventory {bundle.parent / 'missing.yml'} not found"


def other_pythons() -> list[Path]:
    """Real interpreters of versions the kit does not cover on this machine (pyenv's, Debian's), if any."""
    found = glob.glob("/root/.pyenv/versions/3.*/bin/python3") + glob.glob("/usr/bin/python3.[0-9]*")
    wanted = []
    for path in map(Path, found):
        version = re.search(r"3\.(\d+)", str(path))
        minor = int(version.group(1)) if version else 0
        if path.is_file() and re.fullmatch(r"python3(\.\d+)?", path.name) and minor >= 7:
            wanted += [path] if f"3.{minor}" != machine_python() else []
    return wanted


def test_unsupported_python_is_refused(bundle: Path) -> None:
    inventory = bundle.parent / "hosts.yml"
    inventory.write_text("all: {}\n")
    proc = run_deploy(bundle, "-i", str(inventory), OLLAMA_AIRGAP_DEPLOY_PYTHON="3.8")
    assert proc.returncode == 2
    assert one_line(proc).startswith(f"deploy: unsupported Python 3.8 ({PYTHON3}): this bundle's deploy kit has wheels")
    for python in other_pythons():  # and by a real interpreter the kit does not cover, where there is one
        argv = [str(python), str(bundle / "deploy"), "-i", str(inventory), "--state-dir", str(bundle.parent / "state")]
        real = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert real.returncode == 2 and "deploy: unsupported Python 3." in one_line(real), real.stderr
    assert not (bundle.parent / "state").exists()


@pytest.mark.parametrize("how", ["altered", "planted", "missing", "sums"])
def test_tampered_kit_is_refused_before_pip_runs(bundle: Path, how: str) -> None:
    inventory = bundle.parent / "hosts.yml"
    inventory.write_text("all: {}\n")
    wheel = next((bundle / "kit" / "wheels").glob("pip-*.whl"))
    named = f"kit/wheels/{wheel.name}"
    if how == "altered":
        with wheel.open("ab") as handle:
            handle.write(b"x")
    elif how == "planted":
        named = "kit/wheels/ansible_core-99.0.0-py3-none-any.whl"
        (bundle / named).write_bytes(b"PK")
    elif how == "missing":
        wheel.unlink()
    else:
        named = "SHA256SUMS"
        with (bundle / named).open("a") as handle:
            handle.write(f"{'0' * 64}  kit/extra\n")
    for extra in ([], ["--json"]):
        proc = run_deploy(bundle, "-i", str(inventory), *extra)
        assert proc.returncode == 3, proc.stderr
        line = proc.stderr.strip()
        assert "\n" not in line and named in line, line
        if extra:
            assert json.loads(proc.stdout) == {"ok": False, "error": line.removeprefix("deploy: "), "exit": 3}
    assert not list((bundle.parent / "state").glob("venv-*")), "pip ran from a tampered kit"


def test_no_kit_is_refused(tmp_path: Path, bundle: Path) -> None:
    (bundle / "kit" / "kit.json").unlink()
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all: {}\n")
    proc = run_deploy(bundle, "-i", str(inventory))
    assert proc.returncode == 3 and "has no intact deploy kit" in one_line(proc)


def test_the_same_sources_give_the_same_kit(
    kit: tuple[list[Entry], dict, Path], pypi_mirror: PypiMirror, tmp_path: Path
) -> None:
    """The collection tarball is normalised (ansible-galaxy stamps build times): a rebuild gives the same bytes."""
    again, meta = build_kit(KitSpec(), tmp_path / "work", KitOptions(index_url=pypi_mirror.index_url))
    assert [(e.path, e.sha256) for e in again] == [(e.path, e.sha256) for e in kit[0]]
    assert meta == kit[1]


def test_pass_through_arguments_narrow_testinfra_and_feed_its_extra_vars() -> None:
    from ollama_airgap import deploy_entry

    rest = ["--limit", "node1,node2", "-e", "@vars.yml", "--extra-vars=@more.yml", "-lnode3", "--check"]
    assert deploy_entry.option_values(rest, "-l", "--limit") == ["node1,node2", "node3"]
    assert deploy_entry.option_values(rest, "-e", "--extra-vars") == ["@vars.yml", "@more.yml"]
    recap = deploy_entry.parse_recap("PLAY RECAP ***\nnode1 : ok=3 changed=0 unreachable=0 failed=0 skipped=1\n")
    assert recap == {"node1": {"ok": 3, "changed": 0, "unreachable": 0, "failed": 0, "skipped": 1}}


def test_the_lock_pins_the_kit_wheels(
    kit: tuple[list[Entry], dict, Path], pypi_mirror: PypiMirror, tmp_path: Path
) -> None:
    """bundle.lock.yaml records the kit's wheels; --lock fetches exactly those and refuses any that differ."""
    pins = wheel_pins(kit[0])
    assert pins and not any(name.startswith("ollama_airgap-") for name in pins)
    lock = Lock("k", 1, "0.14.1", kit_wheels=pins)
    (tmp_path / "k.lock.yaml").write_bytes(lock.dump())
    assert load_lock(tmp_path / "k.lock.yaml").kit_wheels == pins
    assert "deploy_kit" not in Lock("k", 1, "0.14.1").as_dict()  # a bundle without a kit: the lock is as before
    options = KitOptions(index_url=pypi_mirror.index_url, pins=tuple(sorted(pins.items())))
    again, _ = build_kit(KitSpec(), tmp_path / "work", options)
    assert [(e.path, e.sha256) for e in again] == [(e.path, e.sha256) for e in kit[0]]
    wrong = dict(pins)
    name = next(n for n in wrong if n.startswith("pip-"))
    wrong[name] = "0" * 64
    with pytest.raises(VerifyError, match=f"deploy kit: {name} differs from the lock"):
        build_kit(KitSpec(), tmp_path / "work2", KitOptions(index_url=pypi_mirror.index_url, pins=tuple(wrong.items())))
