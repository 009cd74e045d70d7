"""Every deployable kind of model in the test bed's zoo, end to end on the systemd hosts: `bundle build
bundles/zoo.yaml` → site.yml importing with ``create`` on one host and ``restore`` on the other → the smoke test by
capability → the testinfra suite; a second run changes nothing; an explicit ``create`` for a restore-only model is
refused before anything changes.

The kinds and what real ollama makes of each (``kind``, ``capabilities``) come from the zoo's catalog
(scripts/testbed/zoo.py); the hosts run the ollama stand-in, which refuses /api/generate for a model without the
completion capability as ollama does, so an embedding model sent there would fail the smoke test.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from host_api import api, bundle_yaml

from testbed.hosts import Host, TestHosts
from testbed.mirrors import Mirrors

if TYPE_CHECKING:
    from conftest import PlaybookResult, PlaybookRunner  # tests/integration/conftest.py

pytestmark = pytest.mark.hosts

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ZOO_SPEC = REPO / "bundles" / "zoo.yaml"
# The contract's kinds (COMMON.md 1.); the bundler refuses the last two before any download.
DEPLOYABLE_KINDS = (
    "chat", "vision-projector", "vision-inline", "split", "embedding", "tools-thinking", "adapter", "draft",
    "tensor", "requires-ok", "legacy-prompt",
)  # fmt: skip
REFUSED_KINDS = ("requires-too-new", "cloud")
# safetensors (tensor/json layers): ollama runs them only with the MLX runtime, which the test bed's hosts lack; they
# are deployed and checked (listed, digest, capabilities) but not sent requests.
NEEDS_MLX_KINDS = ("tensor",)
METHODS = ("create", "restore")  # node1 imports with create, node2 with restore


RECORDS_GLOB = "/var/lib/ollama-airgap/models/*.json"
READ_RECORDS = f"import glob, json; print(json.dumps([json.load(open(p)) for p in glob.glob({RECORDS_GLOB!r})]))"


def zoo_kinds(mirrors: Mirrors) -> dict[str, str]:
    """bundles/zoo.yaml's models → their kind in the catalog (each name must be a zoo model)."""
    spec = yaml.safe_load(ZOO_SPEC.read_text())
    kinds = {}
    for name in spec["models"]:
        entry = mirrors.catalog[name]
        assert getattr(entry, "kind", ""), f"{name}: the test bed catalog has no kind for it (scripts/testbed/zoo.py)"
        kinds[entry.short_name] = entry.kind
    return kinds


@dataclass
class ZooDeploy:
    hosts: dict[str, Host]  # method → host
    bundle: Path
    models: dict[str, dict[str, Any]]  # bundle.yaml models by short name
    kinds: dict[str, str]  # short name → zoo kind
    runner: PlaybookRunner
    method_inventory: Path
    first: PlaybookResult

    def run(self, *playbooks: str, extra: tuple[str, ...] = (), **extra_vars: object) -> PlaybookResult:
        return self.runner(*playbooks, extra=("-i", str(self.method_inventory), *extra), **extra_vars)


def assert_unchanged(result: PlaybookResult, hosts: list[Host]) -> None:
    assert result.returncode == 0, result.explain()
    for host in hosts:
        counts = result.recap.get(host.name, {})
        assert counts.get("changed") == 0 and counts.get("failed") == 0, result.explain()


@pytest.fixture(scope="module")
def zoo(
    mirrors: Mirrors,
    test_hosts: TestHosts,
    ansible_inventory: Path,
    ansible_playbook: PlaybookRunner,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ZooDeploy]:
    """The zoo bundle deployed by site.yml: node1 with create, node2 with restore. Afterwards the hosts get the
    session's demo bundle back (other test modules expect it)."""
    from conftest import PlaybookRunner, build_bundle  # tests/integration/conftest.py

    tmp = tmp_path_factory.mktemp("zoo")
    kinds = zoo_kinds(mirrors)
    archive = build_bundle(mirrors, ZOO_SPEC, tmp / "zoo.tar", tmp / "cache")
    models = {model["short"]: model for model in bundle_yaml(archive)["models"]}
    runnable = [short for short, kind in kinds.items() if kind not in NEEDS_MLX_KINDS]
    vars_file = tmp / "vars.yml"
    vars_file.write_text(yaml.safe_dump({"bundle_src": str(archive), "smoke_test_models": runnable}))
    hosts = dict(zip(METHODS, test_hosts.hosts, strict=False))
    assert len(hosts) == len(METHODS), "the zoo deploy needs two test bed hosts"
    method_inventory = tmp / "methods.yml"  # host variables: testinfra then reads each host's method from its records
    method_inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "children": {
                        "ollama_hosts": {"hosts": {h.name: {"ollama_models_method": m} for m, h in hosts.items()}}
                    }
                }
            }
        )
    )
    runner = PlaybookRunner(ansible_inventory, vars_file)
    first = runner("site.yml", extra=("-i", str(method_inventory)))
    print(f"\n[zoo] site.yml with {len(models)} models of {len(set(kinds.values()))} kinds: {first.seconds:.1f} s")
    try:
        yield ZooDeploy(hosts, archive, models, kinds, runner, method_inventory, first)
    finally:
        for host in hosts.values():
            for short in models:
                host.ssh(f"/usr/local/bin/ollama rm {shlex.quote(short)}", check=False)
        back = ansible_playbook("site.yml")
        assert back.returncode == 0, back.explain()


def test_zoo_spec_names_one_model_of_every_deployable_kind(mirrors: Mirrors) -> None:
    kinds = zoo_kinds(mirrors)
    assert sorted(set(kinds.values())) == sorted(DEPLOYABLE_KINDS), kinds
    catalog_kinds = {getattr(entry, "kind", "") for entry in mirrors.catalog}
    assert set(DEPLOYABLE_KINDS) | set(REFUSED_KINDS) <= catalog_kinds, sorted(catalog_kinds)


def test_every_kind_deploys_with_both_methods(zoo: ZooDeploy) -> None:
    result = zoo.first
    assert result.returncode == 0, result.explain()
    for host in zoo.hosts.values():
        assert result.recap[host.name]["failed"] == 0 and result.recap[host.name]["unreachable"] == 0, result.explain()
    restore_only = sorted(short for short, model in zoo.models.items() if model.get("restore_only"))
    assert restore_only, "the zoo bundle has no restore-only model (tensor layers have no Modelfile form)"
    for method, host in zoo.hosts.items():
        listed = {m["name"]: f"sha256:{m['digest']}" for m in api(host, "/api/tags")["models"]}
        records = json.loads(host.ssh(f"python3 -c {shlex.quote(READ_RECORDS)}").stdout)
        recorded = {record["short"]: record["method"] for record in records}
        for short, model in zoo.models.items():
            assert short in listed, f"{host.name} ({method}): {short} ({zoo.kinds[short]}) is not listed"
            wanted = "restore" if model.get("restore_only") else method
            assert recorded[short] == wanted, f"{host.name}: {short} was imported with {recorded[short]}"
            if wanted == "restore":
                assert listed[short] == model["manifest_digest"], f"{host.name}: {short} digest {listed[short]}"


def test_served_capabilities_are_what_ollama_computes_for_the_registry_model(zoo: ZooDeploy, mirrors: Mirrors) -> None:
    """create (from the bundle's Modelfile: extra FROM for the projector, ADAPTER, DRAFT, several FROM for a split
    model) and restore both give the capabilities the zoo says real ollama computes for the pulled model."""
    problems = []
    for method, host in zoo.hosts.items():
        for short, model in zoo.models.items():
            expected = sorted(mirrors.catalog[short].capabilities)
            shown = sorted(api(host, "/api/show", {"model": short}).get("capabilities") or [])
            recorded = sorted(model["capabilities"])
            if not (shown == expected == recorded):
                problems.append(
                    f"{host.name} ({method}) {short}: served {shown}, zoo {expected}, bundle.yaml {recorded}"
                )
    assert not problems, "\n".join(problems)


def test_smoke_test_tried_each_model_by_capability(zoo: ZooDeploy) -> None:
    output = zoo.first.output
    assert "answered by capability" in output, zoo.first.explain()
    for short, model in zoo.models.items():
        if zoo.kinds[short] in NEEDS_MLX_KINDS:
            continue
        capabilities = model["capabilities"]
        expected = []
        if "embedding" in capabilities:
            expected.append(f"{short} (embedding): a vector of {model['embedding_length']} numbers")
        if "vision" in capabilities:
            expected.append(f"{short} (vision: completion with an image): ")
        elif "completion" in capabilities:
            expected.append(f"{short} (completion): ")
        assert expected, f"{short}: nothing to smoke-test in {capabilities}"
        for line in expected:
            assert output.count(line) == len(zoo.hosts), f"{line!r} not reported for every host\n{zoo.first.explain()}"


def test_infra_suite_is_green_on_the_zoo(zoo: ZooDeploy) -> None:
    """`pytest tests/infra` as users run it on their fleet (each host's import method comes from its records)."""
    argv = [
        str(VENV_BIN / "pytest"), "tests/infra", "-q", "--hosts=ansible://ollama_hosts",
        f"--ansible-inventory={zoo.runner.inventory}", f"--ansible-extra-vars={zoo.runner.vars_file}",
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout, proc.stdout[-3000:]


def test_second_run_and_check_diff_change_nothing(zoo: ZooDeploy) -> None:
    hosts = list(zoo.hosts.values())
    again = zoo.run("site.yml")
    assert_unchanged(again, hosts)
    assert again.output.count("imported: none") == len(hosts), again.explain()
    stream_section = again.output.split(" : Stream the bundle to the host]")[1].split("TASK [")[0]
    assert "ok: [" in stream_section and "changed: [" not in stream_section, stream_section
    check = zoo.run("site.yml", extra=("--check", "--diff"))
    assert_unchanged(check, hosts)


def test_create_override_for_a_restore_only_model_is_refused(zoo: ZooDeploy) -> None:
    short, model = next((s, m) for s, m in zoo.models.items() if m.get("restore_only"))
    host = zoo.hosts["create"]
    before = host.ssh("cat /var/lib/ollama-airgap/models/*.json").stdout
    result = zoo.run(
        "playbooks/bundle.yml",
        "playbooks/models.yml",
        extra=("--limit", host.name),
        ollama_models_overrides={short: {"method": "create"}},
    )
    assert result.returncode != 0, result.explain()
    assert f"model {short} is restore-only ({model['restore_only_reason']})" in result.output, result.explain()
    assert result.recap[host.name]["changed"] == 0, result.explain()
    assert host.ssh("cat /var/lib/ollama-airgap/models/*.json").stdout == before
