"""Differential bundles on the test bed: the session's full demo bundle (ollama 0.14.1, three models) deployed with
site.yml, then a delta built with `bundle build --base demo-0.14.1.lock.yaml` that adds one model (qwen3:0.6b) and
moves ollama to 0.35.1 deploys over it with site.yml. A host holding another bundle refuses with the base's digest
and is left as it was. At the end every host gets the session's demo bundle back, as other test modules expect.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
import yaml

from testbed.config import OLLAMA_VERSION_CURRENT, OLLAMA_VERSION_TGZ, OLLAMA_VERSION_ZST
from testbed.hosts import Host, TestHosts
from testbed.mirrors import Mirrors

if TYPE_CHECKING:
    from conftest import PlaybookResult, PlaybookRunner  # tests/integration/conftest.py

pytestmark = pytest.mark.hosts

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ROOT = "/var/lib/ollama-airgap/bundle"
NEW_MODEL = "qwen3:0.6b"
DEMO_MODELS = {"tinyllama:latest", "tinyqwen:0.5b", "acme/tiny-assistant:v1"}


@dataclass
class Delta:
    base: Path
    delta: Path
    full: Path  # the same spec built whole, to compare
    keeper: Host  # holds the base: the delta deploys there
    stranger: Host  # holds another bundle: the delta is refused there
    run: PlaybookRunner


def bundle_cli(*argv: str) -> dict[str, Any]:
    proc = subprocess.run(
        [str(VENV_BIN / "bundle"), *argv, "--json"], capture_output=True, text=True, check=False, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def build(mirrors: Mirrors, spec: Path, out: Path, *extra: str) -> Path:
    github = urlsplit(mirrors.release_base_url)
    bundle_cli(
        "build", str(spec), "--cache", str(out.parent / "cache"), "-o", str(out),
        "--mirror", f"registry.ollama.ai={mirrors.registry_url}",
        "--mirror", f"github.com={github.scheme}://{github.netloc}", *extra,
    )  # fmt: skip
    return out


def api(host: Host, path: str) -> Any:
    return json.loads(host.ssh(f"curl -sf --max-time 30 http://127.0.0.1:11434{path}").stdout)


def served(host: Host) -> set[str]:
    return {model["name"] for model in api(host, "/api/tags")["models"]}


def host_state(host: Host) -> str:
    """Everything this project keeps on a host, with inode and mtime, and where the ollama links point."""
    listing = host.ssh(
        "find /var/lib/ollama-airgap /usr/local/lib/ollama-airgap /usr/share/ollama -printf '%p %s %i %T@\\n' | sort"
    ).stdout
    return listing + host.ssh("readlink -f /usr/local/bin/ollama").stdout


def bundle_yaml_digest(host: Host) -> str:
    return host.ssh(f"sha256sum {ROOT}/bundle.yaml").stdout.split()[0]


def assert_unchanged(result: PlaybookResult, host: Host) -> None:
    assert result.returncode == 0, result.explain()
    counts = result.recap.get(host.name, {})
    assert counts.get("changed") == 0 and counts.get("failed") == 0, result.explain()


@pytest.fixture(scope="module")
def delta(
    mirrors: Mirrors,
    test_hosts: TestHosts,
    ansible_playbook: PlaybookRunner,
    built_bundles: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Delta]:
    tmp = tmp_path_factory.mktemp("delta")
    base = built_bundles[OLLAMA_VERSION_ZST]  # the session's demo bundle
    spec = yaml.safe_load((REPO / "bundles" / "demo.yaml").read_text())
    spec["ollama"]["version"] = OLLAMA_VERSION_CURRENT
    spec["models"].append(NEW_MODEL)
    (tmp / "demo-next.yaml").write_text(yaml.safe_dump(spec))
    lock = base.with_name(base.name.removesuffix(".tar") + ".lock.yaml")
    delta_archive = build(mirrors, tmp / "demo-next.yaml", tmp / "demo-next-delta.tar", "--base", str(lock))
    full = build(mirrors, tmp / "demo-next.yaml", tmp / "demo-next-full.tar")

    keeper, stranger = test_hosts.hosts[0], test_hosts.hosts[1]
    first = ansible_playbook("site.yml")  # both hosts hold the base
    assert first.returncode == 0, first.explain()
    other = ansible_playbook(
        "playbooks/bundle.yml", extra=("--limit", stranger.name), bundle_src=str(built_bundles[OLLAMA_VERSION_TGZ])
    )
    assert other.returncode == 0, other.explain()
    try:
        yield Delta(base, delta_archive, full, keeper, stranger, ansible_playbook)
    finally:
        delete = f"""curl -sf -X DELETE http://127.0.0.1:11434/api/delete -d '{{"model": "{NEW_MODEL}"}}'"""
        keeper.ssh(delete, check=False)
        back = ansible_playbook("site.yml")  # the session's 0.14.1 demo bundle
        assert back.returncode == 0, back.explain()


def test_delta_carries_only_what_the_base_lacks(delta: Delta) -> None:
    base_digest = bundle_cli("inspect", str(delta.base))["bundle_digest"]
    shown = bundle_cli("inspect", str(delta.delta))
    new = shown["delta"]
    assert new["base_digest"] == base_digest
    assert new["ollama"] == {"base": OLLAMA_VERSION_ZST, "now": OLLAMA_VERSION_CURRENT, "changed": True}
    assert new["models_added"] == [f"registry.ollama.ai/library/{NEW_MODEL}"]
    assert {m.split("/", 1)[1] for m in new["models_from_base"]} >= {"library/tinyllama:latest"}
    assert new["files_from_base"] > 0 and new["bytes_from_base"] > new["bytes_carried"] / 4

    # The complete result a delta describes is what a full build of the same spec holds.
    full_doc = yaml.safe_load(delta.full.with_name("demo-next-full.bundle.yaml").read_text())
    delta_doc = yaml.safe_load(delta.delta.with_name("demo-next-delta.bundle.yaml").read_text())
    listing = {(f["path"], f["size"], f["sha256"]) for f in full_doc["files"] if f["path"] != "bundle.lock.yaml"}
    assert {(f["path"], f["size"], f["sha256"]) for f in delta_doc["files"] if f["path"] != "bundle.lock.yaml"} == (
        listing
    )
    assert [m["manifest_digest"] for m in delta_doc["models"]] == [m["manifest_digest"] for m in full_doc["models"]]
    assert delta_doc["base"]["bundle_digest"] == base_digest

    verified = bundle_cli("verify", str(delta.delta))
    assert verified["ok"] and verified["delta_of"] == base_digest and verified["from_base"] == new["files_from_base"]
    delta_size, full_size = delta.delta.stat().st_size, delta.full.stat().st_size
    print(f"\n[delta] archive {delta_size} bytes, full archive {full_size} bytes")
    assert delta_size < full_size * 0.6, (delta_size, full_size)
    assert full_size - delta_size >= new["bytes_from_base"] - (1 << 20)


def test_delta_deploys_over_the_base_and_a_host_without_it_refuses(delta: Delta) -> None:
    keeper, stranger = delta.keeper, delta.stranger
    base_digest = bundle_cli("inspect", str(delta.base))["bundle_digest"]
    new_digest = bundle_cli("inspect", str(delta.delta))["bundle_digest"]
    assert bundle_yaml_digest(keeper) == base_digest and bundle_yaml_digest(stranger) != base_digest
    a_blob = keeper.ssh(f"ls {ROOT}/models/blobs | head -1").stdout.strip()
    inode = keeper.ssh(f"stat -c %i {ROOT}/models/blobs/{a_blob}").stdout
    stranger_before = host_state(stranger)

    planned = delta.run(
        "playbooks/bundle.yml", extra=("--check", "--diff", "--limit", keeper.name), bundle_src=str(delta.delta)
    )
    assert planned.returncode == 0 and planned.changed()[keeper.name] > 0, planned.explain()
    assert f"assembled from base bundle {base_digest}" in planned.output
    assert bundle_yaml_digest(keeper) == base_digest  # nothing changed

    result = delta.run("site.yml", bundle_src=str(delta.delta))
    assert result.returncode != 0 and result.recap[stranger.name]["failed"] == 1, result.explain()
    assert result.recap[keeper.name]["failed"] == 0, result.explain()
    flat = " ".join(result.output.split())
    assert f"{stranger.name} lacks base bundle {base_digest} of the differential bundle {new_digest}" in flat
    assert host_state(stranger) == stranger_before  # untouched

    assert bundle_yaml_digest(keeper) == new_digest
    assert keeper.ssh(f"stat -c %i {ROOT}/models/blobs/{a_blob}").stdout == inode  # linked from the base
    assert keeper.ssh(f"test -d {ROOT}/ollama/{OLLAMA_VERSION_ZST}", check=False).returncode != 0
    assert api(keeper, "/api/version")["version"] == OLLAMA_VERSION_CURRENT
    assert served(keeper) == {*DEMO_MODELS, NEW_MODEL}
    reply = keeper.ssh(
        "curl -sf --max-time 60 http://127.0.0.1:11434/api/generate "
        f'-d \'{{"model": "{NEW_MODEL}", "prompt": "hi", "stream": false, "options": {{"num_predict": 4}}}}\''
    )
    assert json.loads(reply.stdout)["done"] is True

    again = delta.run("site.yml", extra=("--limit", keeper.name), bundle_src=str(delta.delta))
    assert_unchanged(again, keeper)
    checked = delta.run("site.yml", extra=("--check", "--diff", "--limit", keeper.name), bundle_src=str(delta.delta))
    assert_unchanged(checked, keeper)
