"""The spec's fleet key (src/ollama_airgap/fleet_kit.py): absent or false carries no depot; the depot's release."""

from __future__ import annotations

import pytest

from ollama_airgap.errors import SpecError
from ollama_airgap.fleet_kit import DISTRIBUTION_VERSION, DepotFile, FleetSpec, fleet_meta, parse_fleet_spec


def fail(key: str, problem: str) -> SpecError:
    return SpecError(f"spec: {key}: {problem}")


@pytest.mark.parametrize("value", [None, {}, {"depot": False}])
def test_no_depot_by_default(value: object) -> None:
    assert parse_fleet_spec(value, fail) == FleetSpec(depot=False)


def test_depot_true_pins_the_default_release() -> None:
    assert parse_fleet_spec({"depot": True}, fail) == FleetSpec(depot=True, version=DISTRIBUTION_VERSION)


def test_depot_version_and_url() -> None:
    spec = parse_fleet_spec({"depot": {"version": "v2.8.2", "url": "http://mirror.lan/"}}, fail)
    assert spec == FleetSpec(depot=True, version="2.8.2", url="http://mirror.lan")


@pytest.mark.parametrize(
    "value",
    [
        {"depot": "yes"},
        {"depot": {"version": "latest"}},
        {"depot": {"url": "ftp://x"}},
        {"depot": {"engine": "zot"}},
        {"swarm": True},
        ["depot"],
    ],
)
def test_refused(value: object) -> None:
    with pytest.raises(SpecError, match="fleet"):
        parse_fleet_spec(value, fail)


def test_bundle_yaml_names_the_tarball_by_path_and_sha256() -> None:
    item = DepotFile("2.8.3", "amd64", "a" * 64, 123, "https://github.com/x")
    assert item.name == "registry_2.8.3_linux_amd64.tar.gz"
    assert item.bundle_path == "depot/distribution/2.8.3/registry_2.8.3_linux_amd64.tar.gz"
    depot = fleet_meta([item])["fleet"]["depot"]
    assert depot["files"][0]["path"] == item.bundle_path and depot["files"][0]["sha256"] == "a" * 64
    assert fleet_meta([]) == {}
