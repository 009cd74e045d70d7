"""The streamed push (bundle_transport push) on the test bed's hosts, beyond what test_deploy.py already proves with
it (every deploy there streams): the host never holds an archive, only its subset arrives, a connection broken
mid-transfer resumes with only the rest, a tampered member is named and nothing changes. Uses the session's hosts
and bundles; the last host gets the 0.13.5 demo bundle and is given the session's bundle back at the end."""

from __future__ import annotations

import json
import re
import shutil
import sys
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from testbed.config import OLLAMA_VERSION_TGZ

if TYPE_CHECKING:
    from conftest import Deployment, PlaybookResult, PlaybookRunner  # tests/integration/conftest.py

pytestmark = pytest.mark.hosts
STATE = "/var/lib/ollama-airgap"
ROOT = f"{STATE}/bundle"
RELAY = Path(__file__).resolve().with_name("ssh_cut_relay.py")
# The task's result as -v prints it (one JSON object per line with result_format json, YAML otherwise).
SENT = re.compile(r"\"?sent_bytes\"?: (\d+)")
COMMON_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
PLAN = re.compile(r"\"?plan\"?: \"?([^\"\n]*)")
KEPT = re.compile(r"\"?kept_files\"?: (\d+)")


def sent_bytes(result: PlaybookResult) -> int:
    found = SENT.findall(result.output)
    assert found, result.explain()
    return int(found[-1])


def number(result: PlaybookResult, key: str) -> int:
    """An integer of the stream task's result, as -v prints it."""
    found = re.findall(rf"\"?{key}\"?: (\d+)", result.output)
    assert found, result.explain()
    return int(found[-1])


def host_tree(deployed: Deployment) -> str:
    return deployed.hosts.hosts[-1].ssh(f"cd {ROOT} && find . -type f -printf '%P %s %i\\n' | sort").stdout


def staged(deployed: Deployment) -> list[str]:
    """Files in the staging trees beside the bundle root (what a broken transfer left)."""
    out = deployed.hosts.hosts[-1].ssh(f"cd {STATE} && find .bundle.staging-* -type f 2>/dev/null || true").stdout
    return [line.split("/", 1)[1] for line in out.split() if "/" in line]


def members(archive: Path) -> dict[str, int]:
    with tarfile.open(archive) as tar:
        return {m.name: m.size for m in tar if m.isfile()}


@pytest.fixture(scope="module")
def old_bundle(deployed: Deployment, built_bundles: dict[str, Path], ansible_playbook: PlaybookRunner):  # type: ignore[no-untyped-def]
    """The 0.13.5 demo bundle (another digest than the session's); afterwards the session's bundle goes back."""
    host = deployed.hosts.hosts[-1]
    host.ssh(f"rm -rf {STATE}/.bundle.staging-*")
    yield built_bundles[OLLAMA_VERSION_TGZ]
    host.ssh(f"rm -rf {STATE}/.bundle.staging-*")
    back = ansible_playbook("playbooks/bundle.yml", extra=["--limit", host.name])
    assert back.returncode == 0, back.explain()


def test_subset_only_what_the_host_needs_and_no_archive(
    deployed: Deployment, ansible_playbook: PlaybookRunner, old_bundle: Path
) -> None:
    host = deployed.hosts.hosts[-1]
    include = ["tinyllama:latest"]
    result = ansible_playbook("playbooks/bundle.yml", extra=["--limit", host.name, "-v"], bundle_src=str(old_bundle),
                              ollama_models_include=include, bundle_images=False)  # fmt: skip
    assert result.returncode == 0 and result.recap[host.name]["changed"] >= 1, result.explain()
    held = {line.split()[0] for line in host_tree(deployed).splitlines()}
    everything = members(old_bundle)
    assert held < set(everything), held
    assert "ollama/0.13.5/ollama-linux-amd64.tgz" in held and "ollama/0.13.5/ollama-linux-arm64.tgz" not in held
    assert any(p.startswith("models/manifests/registry.ollama.ai/library/tinyllama/") for p in held)
    assert not any(p.startswith("models/manifests/registry.ollama.ai/library/tinyqwen/") for p in held)
    # Sent or hard-linked from the bundle the host held (the models' blobs it shares), nothing else.
    assert number(result, "send_files") + number(result, "link_files") == len(held) - 2, result.explain()
    assert 0 < sent_bytes(result) <= sum(everything[p] for p in held - {"bundle.yaml", "SHA256SUMS"})
    record = json.loads(host.ssh(f"cat {STATE}/verified/*.json").stdout)
    assert record["subset"]["models"] == include and record["subset"]["architecture"] == "amd64"
    assert record["subset"]["files"] == len(held) - 2 and record["subset"]["of"] == len(everything) - 2
    # The host never held an archive: only bundle files, nothing left beside the tree.
    assert host.ssh(f"find {STATE} -name '*.tar' -o -name '*.tgz.partial'").stdout.strip() == ""
    assert staged(deployed) == []
    again = ansible_playbook("playbooks/bundle.yml", extra=["--limit", host.name, "-v"], bundle_src=str(old_bundle),
                             ollama_models_include=include, bundle_images=False)  # fmt: skip
    assert again.returncode == 0 and again.recap[host.name]["changed"] == 0 and sent_bytes(again) == 0, again.explain()


def test_broken_connection_resumes_with_only_the_rest(
    deployed: Deployment, ansible_playbook: PlaybookRunner, old_bundle: Path
) -> None:
    """Every model now (the subset above grows): the connection is cut 400 kB into the stream (past any module's
    upload, inside the first blob), then resumed."""
    host = deployed.hosts.hosts[-1]
    before = host_tree(deployed)
    relay = f"{sys.executable} {RELAY} %h %p 400000"
    cut = ansible_playbook(
        "playbooks/bundle.yml", extra=["--limit", host.name, "-v"], bundle_src=str(old_bundle),
        ansible_ssh_args="-o ControlMaster=no -o ControlPath=none",
        ansible_ssh_common_args=f"{COMMON_ARGS} -o ProxyCommand='{relay}'",
    )  # fmt: skip
    assert cut.returncode != 0 and cut.recap[host.name]["failed"] == 1, cut.explain()
    assert host_tree(deployed) == before  # nothing half-installed
    kept = staged(deployed)
    assert kept and set(kept) <= set(members(old_bundle)), kept
    resumed = ansible_playbook("playbooks/bundle.yml", extra=["--limit", host.name, "-v"], bundle_src=str(old_bundle))
    assert resumed.returncode == 0, resumed.explain()
    plan = PLAN.findall(resumed.output)[-1]
    everything = members(old_bundle)
    held_before = {line.split()[0] for line in before.splitlines()}
    missing = sum(size for path, size in everything.items() if path not in held_before)
    assert sent_bytes(resumed) < missing, (plan, missing)
    assert int(KEPT.findall(resumed.output)[-1]) > 0, plan
    assert {line.split()[0] for line in host_tree(deployed).splitlines()} == set(everything) - {
        "ollama/0.13.5/ollama-linux-arm64.tgz"
    }
    assert staged(deployed) == []


def test_tampered_member_is_named_and_nothing_changes(
    deployed: Deployment, ansible_playbook: PlaybookRunner, old_bundle: Path, tmp_path: Path
) -> None:
    host = deployed.hosts.hosts[-1]
    host.ssh(f"rm -f {STATE}/verified/*.json")  # the host must want the old bundle again: no intact record of it
    before = host_tree(deployed)
    tampered = tmp_path / "tampered.tar"
    shutil.copyfile(old_bundle, tampered)
    with tarfile.open(old_bundle) as tar:
        blob = max((m for m in tar if m.name.startswith("models/blobs/")), key=lambda m: m.size)
    with open(tampered, "r+b") as handle:
        handle.seek(blob.offset_data + 4096)
        byte = handle.read(1)
        handle.seek(blob.offset_data + 4096)
        handle.write(bytes([byte[0] ^ 0xFF]))
    result = ansible_playbook("playbooks/bundle.yml", extra=["--limit", host.name], bundle_src=str(tampered))
    assert result.returncode != 0 and result.recap[host.name]["failed"] == 1, result.explain()
    line = next(line for line in result.output.splitlines() if f"{blob.name} is altered (sha256 " in line)
    assert "removed from staging" in line, line
    assert host_tree(deployed) == before
    assert blob.name not in staged(deployed)
