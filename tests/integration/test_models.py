"""Model import (create and restore), the smoke test's GPU gate, the disk pre-flight and the testinfra suite,
on the test bed's systemd hosts deployed by site.yml (the ``deployed`` fixture of tests/integration/conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from host_api import api, bundle_yaml

from testbed.hosts import Host
from testbed.mirrors import Mirrors

if TYPE_CHECKING:
    from conftest import Deployment, PlaybookResult, PlaybookRunner  # tests/integration/conftest.py

pytestmark = pytest.mark.hosts

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
MODELS_DIR = "/usr/share/ollama/.ollama/models"
BUNDLE_ROOT = "/var/lib/ollama-airgap/bundle"
RECORDS = "/var/lib/ollama-airgap/models"
MODELS_PHASE = ("playbooks/bundle.yml", "playbooks/models.yml")  # the models phase needs the bundle facts
RESTORED = ("tinyllama:latest", "tinyqwen:0.5b")
RESTORE_OVERRIDES = {name: {"method": "restore"} for name in RESTORED}
Restored = tuple["PlaybookResult", Path, dict[str, str]]  # the run, its vars file, MainPIDs before it
CREATED = "acme/tiny-assistant:v1"  # has a SYSTEM and MESSAGE layers besides template and params


def main_pid(host: Host) -> str:
    return host.ssh("systemctl show -p MainPID --value ollama").stdout.strip()


def listed_digests(host: Host) -> dict[str, str]:
    return {model["name"]: f"sha256:{model['digest']}" for model in api(host, "/api/tags")["models"]}


def run_infra_suite(deployment: Deployment, *vars_files: Path) -> subprocess.CompletedProcess[str]:
    """`pytest tests/infra` against the deployed hosts, as users run it against their fleet."""
    argv = [
        str(VENV_BIN / "pytest"), "tests/infra", "-q", "--hosts=ansible://ollama_hosts",
        f"--ansible-inventory={deployment.inventory}",
        *(f"--ansible-extra-vars={path}" for path in vars_files),
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)


def assert_unchanged(result: PlaybookResult, hosts: list[Host]) -> None:
    assert result.returncode == 0, result.explain()
    for host in hosts:
        counts = result.recap.get(host.name, {})
        assert counts.get("changed") == 0 and counts.get("failed") == 0, result.explain()


# -- the deploy as site.yml left it (every model created through the API) ----------------------------------------


def test_infra_suite_is_green_on_the_deployed_hosts(deployed: Deployment, ansible_playbook: PlaybookRunner) -> None:
    started = time.monotonic()
    proc = run_infra_suite(deployed, ansible_playbook.vars_file)
    print(f"\n[infra] testinfra suite on {len(deployed.hosts.hosts)} hosts: {time.monotonic() - started:.1f} s")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout, proc.stdout[-3000:]


def test_created_model_carries_the_registry_layers(deployed: Deployment, mirrors: Mirrors) -> None:
    entry = mirrors.catalog[CREATED]
    layers = {blob.media_type.rsplit(".", 1)[-1]: blob for blob in entry.layers}
    template = layers["template"].content
    system = layers["system"].content
    params = json.loads(layers["params"].content or b"{}")
    assert template is not None and system is not None
    expected_params = sorted(
        (key, normalize(value))
        for key, values in params.items()
        for value in (values if isinstance(values, list) else [values])
    )
    for host in deployed.hosts.hosts:
        shown = api(host, "/api/show", {"model": CREATED})
        assert shown["template"] == template.decode(), host.name
        assert shown["system"] == system.decode(), host.name
        assert sorted(parse_parameters(shown.get("parameters", ""))) == expected_params, host.name


def normalize(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def parse_parameters(text: str) -> list[tuple[str, Any]]:
    """/api/show "parameters": one `name value` line each, strings Go-quoted."""
    pairs = []
    for line in text.splitlines():
        if line.strip():
            key, _, raw = line.strip().partition(" ")
            raw = raw.strip()
            pairs.append((key, normalize(json.loads(raw) if raw.startswith('"') else raw)))
    return pairs


def test_require_gpu_fails_on_cpu_only_hosts(deployed: Deployment, ansible_playbook: PlaybookRunner) -> None:
    result = ansible_playbook("playbooks/bundle.yml", "playbooks/smoke_test.yml", smoke_test_require_gpu=True)
    assert result.returncode != 0, result.explain()
    first_model = bundle_yaml(deployed.bundle)["models"][0]["short"]
    assert f"model {first_model} fell back to the CPU" in result.output, result.explain()
    assert "no GPU found by nvidia-smi -L" in result.output, result.explain()
    assert all(result.recap[h.name]["failed"] == 1 for h in deployed.hosts.hosts), result.explain()


def test_smoke_test_without_the_gate_passes_and_changes_nothing(
    deployed: Deployment, ansible_playbook: PlaybookRunner
) -> None:
    result = ansible_playbook("playbooks/bundle.yml", "playbooks/smoke_test.yml")
    assert_unchanged(result, deployed.hosts.hosts)
    assert "no GPU found by nvidia-smi -L: models run on the CPU" in result.output


def test_disk_preflight_refuses_with_nothing_half_imported(
    deployed: Deployment, ansible_playbook: PlaybookRunner
) -> None:
    host = deployed.hosts.hosts[-1]
    records_before = host.ssh(f"cat {RECORDS}/*.json").stdout
    # A 1 MiB file system over the model store: ollama (sandboxed, but a mount slave) sees it empty.
    host.ssh(f"mount -t tmpfs -o size=1m,mode=0755,uid=$(id -u ollama),gid=$(id -g ollama) airgap-tiny {MODELS_DIR}")
    try:
        assert api(host, "/api/tags")["models"] == []
        result = ansible_playbook(*MODELS_PHASE, extra=["--limit", host.name])
        assert result.returncode != 0, result.explain()
        first_model = bundle_yaml(deployed.bundle)["models"][0]["short"]
        line = next((x for x in result.output.splitlines() if "not enough disk space" in x), "")
        assert f"import model {first_model} (create) into {MODELS_DIR}" in line, result.explain()
        assert "bytes free" in line and "1048576 bytes free" in line, line
        left = host.ssh(f"find {MODELS_DIR} -mindepth 1").stdout.strip()
        assert left == "", f"left in the model store after a refused import:\n{left}"
    finally:
        host.ssh(f"umount {MODELS_DIR}")
    assert host.ssh(f"cat {RECORDS}/*.json").stdout == records_before
    assert set(listed_digests(host)) >= {m["short"] for m in bundle_yaml(deployed.bundle)["models"]}


# -- restore: blobs and manifest placed straight into the store ---------------------------------------------------


@pytest.fixture(scope="module")
def restored(
    deployed: Deployment, ansible_playbook: PlaybookRunner, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Restored]:
    """The models phase re-run with two models switched to restore; switched back (created again) afterwards.
    Yields the run, its vars file and each host's ollama MainPID from before the run."""
    for host in deployed.hosts.hosts:  # one restored model starts from nothing (its blobs go too)
        host.ssh(f"/usr/local/bin/ollama rm {RESTORED[0]}")
    pids = {host.name: main_pid(host) for host in deployed.hosts.hosts}
    vars_file = tmp_path_factory.mktemp("restore") / "restore.yml"
    vars_file.write_text(yaml.safe_dump({"ollama_models_overrides": RESTORE_OVERRIDES}))
    result = ansible_playbook(*MODELS_PHASE, extra=["-e", f"@{vars_file}"])
    print(f"\n[models] restore of {len(RESTORED)} models on {len(deployed.hosts.hosts)} hosts: {result.seconds:.1f} s")
    try:
        yield result, vars_file, pids
    finally:
        back = ansible_playbook(*MODELS_PHASE)
        assert back.returncode == 0, back.explain()


def test_restore_gives_the_registry_digest_without_a_restart(
    restored: Restored, deployed: Deployment, mirrors: Mirrors
) -> None:
    result, _, pids = restored
    assert result.returncode == 0, result.explain()
    manifest = {m["short"]: m for m in bundle_yaml(deployed.bundle)["models"]}
    for host in deployed.hosts.hosts:
        digests = listed_digests(host)
        for name in RESTORED:
            registry_digest = mirrors.catalog[name].digest
            registry_digest = registry_digest if registry_digest.startswith("sha256:") else f"sha256:{registry_digest}"
            assert digests[name] == manifest[name]["manifest_digest"] == registry_digest, (host.name, name)
        # `ollama list` shows the same ID (the first 12 hex of the digest) as after `ollama pull`.
        rows = {
            row.split()[0]: row.split()[1] for row in host.ssh("/usr/local/bin/ollama list").stdout.splitlines()[1:]
        }
        for name in RESTORED:
            assert rows[name] == manifest[name]["manifest_digest"][7:19], (host.name, rows)
        assert main_pid(host) == pids[host.name], f"{host.name}: ollama was restarted by the restore"


def test_restore_hard_links_blobs_from_the_bundle(restored: Restored, deployed: Deployment) -> None:
    entry = next(m for m in bundle_yaml(deployed.bundle)["models"] if m["short"] == RESTORED[0])
    with tarfile.open(deployed.bundle) as tar:
        member = tar.extractfile(entry["manifest"])
        assert member is not None
        manifest = json.loads(member.read())
    # The config (registry-made) and the GGUF (removed with `ollama rm` before the restore) were not in the store.
    gguf = next(layer for layer in manifest["layers"] if layer["mediaType"].endswith(".model"))
    for host in deployed.hosts.hosts:
        for digest in (manifest["config"]["digest"], gguf["digest"]):
            name = f"sha256-{digest[7:]}"
            inodes = host.ssh(f"stat -c '%d:%i' {BUNDLE_ROOT}/models/blobs/{name} {MODELS_DIR}/blobs/{name}").stdout
            bundle_inode, store_inode = inodes.split()
            assert bundle_inode == store_inode, f"{host.name}: {name} was copied, not linked"
        mode = host.ssh(f"stat -c '%U %a' {MODELS_DIR}/manifests/registry.ollama.ai/library/tinyllama/latest").stdout
        assert mode.split() == ["ollama", "644"], mode


def test_second_models_run_changes_nothing(
    restored: Restored, deployed: Deployment, ansible_playbook: PlaybookRunner
) -> None:
    _, vars_file, _ = restored
    result = ansible_playbook(*MODELS_PHASE, extra=["-e", f"@{vars_file}"])
    assert_unchanged(result, deployed.hosts.hosts)
    assert "imported: none" in result.output, result.explain()
    check = ansible_playbook(*MODELS_PHASE, extra=["-e", f"@{vars_file}", "--check", "--diff"])
    assert_unchanged(check, deployed.hosts.hosts)


def test_infra_suite_checks_restored_digests(
    restored: Restored, deployed: Deployment, ansible_playbook: PlaybookRunner
) -> None:
    _, vars_file, _ = restored
    proc = run_infra_suite(deployed, ansible_playbook.vars_file, vars_file)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
