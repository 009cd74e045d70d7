"""airgap_depot_fetch with ``root`` (bundle_transport=depot on a host) against the real docker-registry (the ``depot``
fixture), with the fault proxy between the host side and the depot. No hosts: the module runs here, installing into
a temporary bundle root.

Proves what plugins/module_utils/depot_install.py promises: only the files a host needs are fetched, straight into
the staging tree, hashed once; what the root already holds verified is linked, not fetched; the tree is swapped in
whole and recorded, and a re-run asks the depot nothing; a fault leaves the root as it was and the re-run resumes; a
signed bundle's signature travels through the depot and is checked.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_depot_modules import make_bundle, run_module, sha

from testbed.faultproxy import Fault, FaultProxy
from testbed.registry import RegistryServer

BIG = 3 << 20


def two_models(big: bytes, small: bytes) -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    contents = {
        f"models/blobs/sha256-{sha(big)}": big,
        f"models/blobs/sha256-{sha(small)}": small,
        "models/manifests/registry.ollama.ai/library/big/latest": b'{"big": 1}',
        "models/manifests/registry.ollama.ai/library/small/latest": b'{"small": 1}',
        "README.txt": b"always delivered\n",
    }
    models = [
        {"short": "big:latest", "manifest": "models/manifests/registry.ollama.ai/library/big/latest",
         "blobs": [f"sha256:{sha(big)}"]},
        {"short": "small:latest", "manifest": "models/manifests/registry.ollama.ai/library/small/latest",
         "blobs": [f"sha256:{sha(small)}"]},
    ]  # fmt: skip
    return contents, models


def load(depot: RegistryServer, bundle: dict, tmp_path: Path) -> None:
    args = {"url": depot.url, "root": str(bundle["root"]), "manifest_sha256": bundle["digest"],
            "sums_sha256": bundle["sums"], "files": bundle["document"]["files"]}  # fmt: skip
    loaded = run_module("airgap_depot_load", args, tmp_path)
    assert loaded.get("failed") is not True, loaded


def install(url: str, bundle: dict, host: Path, tmp_path: Path, check: bool = False, **extra: Any) -> dict[str, Any]:
    args = {
        "url": url, "root": str(host / "bundle"), "state_dir": str(host / "state"), "manifest": bundle["document"],
        "manifest_sha256": bundle["digest"], "sums_sha256": bundle["sums"], "files": bundle["document"]["files"],
        "part_size": 1 << 20, "connections": 4, "retries": 2, **extra,
    }  # fmt: skip
    return run_module("airgap_depot_fetch", args, tmp_path, check)


def tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}


def blob_requests(depot_proxy: FaultProxy) -> list[str]:
    return [hit.path.rsplit(":", 1)[-1] for hit in depot_proxy.log if "/blobs/" in hit.path]


@pytest.fixture(scope="module")
def first(depot: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> dict:
    contents, models = two_models(os.urandom(BIG), os.urandom(4096))
    bundle = make_bundle(tmp_path_factory.mktemp("first"), contents, models)
    load(depot, bundle, tmp_path_factory.mktemp("load"))
    return bundle


def test_installs_only_what_the_host_needs_then_asks_nothing(
    depot_proxy: FaultProxy, first: dict, tmp_path: Path
) -> None:
    host = tmp_path / "host"
    done = install(depot_proxy.url, first, host, tmp_path, select={"models_include": ["small:latest"]})
    assert done.get("failed") is not True, done
    assert done["changed"] and done["subset"]["models"] == ["small:latest"], done
    big = next(p for p in first["contents"] if p.startswith("models/blobs/") and len(first["contents"][p]) == BIG)
    assert set(done["left_out"]) == {big, "models/manifests/registry.ollama.ai/library/big/latest"}
    assert tree(host / "bundle") == {"bundle.yaml", "SHA256SUMS", *first["contents"]} - set(done["left_out"])
    assert sha(first["contents"][big]) not in blob_requests(depot_proxy)  # the big model never crossed
    assert done["fetched_bytes"] < BIG
    assert sorted(os.listdir(host)) == ["bundle", "state"]  # no staging tree, fetch state or lock left beside it
    record = json.loads((host / "state/verified" / f"{first['digest']}.json").read_text())
    assert record["subset"]["files"] == len(first["contents"]) - 2

    depot_proxy.clear()
    again = install(depot_proxy.url, first, host, tmp_path, select={"models_include": ["small:latest"]})
    assert again["changed"] is False and again["fetched_bytes"] == 0, again
    assert depot_proxy.log == []  # nothing asked of the depot
    checked = install(depot_proxy.url, first, host, tmp_path, check=True)  # now all models: the big one is missing
    assert checked["changed"] and checked["would_fetch_bytes"] >= BIG, checked
    assert depot_proxy.log == []


def test_an_upgrade_links_what_the_host_holds_and_fetches_the_rest(
    depot: RegistryServer, depot_proxy: FaultProxy, first: dict, tmp_path: Path
) -> None:
    host = tmp_path / "host"
    assert install(depot_proxy.url, first, host, tmp_path).get("failed") is not True
    contents, models = two_models(*[first["contents"][p] for p in first["contents"] if p.startswith("models/blobs/")])
    contents["README.txt"] = b"the next release\n"
    second = make_bundle(tmp_path / "second", contents, models)
    load(depot, second, tmp_path)
    inode = {p: (host / "bundle" / p).stat().st_ino for p in contents if p.startswith("models/")}
    depot_proxy.clear()
    done = install(depot_proxy.url, second, host, tmp_path)
    assert done.get("failed") is not True, done
    assert done["linked_files"] == 4 and done["fetched_files"] == 3, done  # README, bundle.yaml, SHA256SUMS
    assert set(blob_requests(depot_proxy)) == {second["digest"], second["sums"], sha(contents["README.txt"])}
    assert {p: (host / "bundle" / p).stat().st_ino for p in inode} == inode  # the same files, linked
    assert (host / "bundle/README.txt").read_bytes() == b"the next release\n"
    assert not (host / "state/verified" / f"{first['digest']}.json").exists()


def test_a_corrupt_piece_is_fetched_again_and_installed(depot_proxy: FaultProxy, first: dict, tmp_path: Path) -> None:
    big = next(sha(d) for p, d in first["contents"].items() if len(d) == BIG)
    depot_proxy.add(Fault(path_contains=big, kind="corrupt", after_bytes=1000))
    host = tmp_path / "host"
    done = install(depot_proxy.url, first, host, tmp_path)
    assert done.get("failed") is not True, done
    assert done["refetched"] == [f"models/blobs/sha256-{big}"]
    assert sha((host / f"bundle/models/blobs/sha256-{big}").read_bytes()) == big


def test_the_depot_dropping_out_leaves_the_root_as_it_was_and_the_rerun_resumes(
    depot_proxy: FaultProxy, first: dict, tmp_path: Path
) -> None:
    host = tmp_path / "host"
    assert install(depot_proxy.url, first, host, tmp_path, select={"models_include": ["small:latest"]})["changed"]
    before = {p: (host / "bundle" / p).stat().st_ino for p in tree(host / "bundle")}
    big = next(sha(d) for d in first["contents"].values() if len(d) == BIG)
    depot_proxy.add(Fault(path_contains=big, kind="truncate", after_bytes=300 << 10, times=100))
    failed = install(depot_proxy.url, first, host, tmp_path)  # now every model
    assert failed.get("failed") is True
    msg = failed["msg"]
    assert "\n" not in msg and f"sha256-{big}" in msg and "for the next run to resume" in msg, msg
    assert {p: (host / "bundle" / p).stat().st_ino for p in tree(host / "bundle")} == before  # untouched
    assert [p for p in tree(host) if p.endswith(".partial")]  # what arrived is kept beside the root
    depot_proxy.clear()
    resumed = install(depot_proxy.url, first, host, tmp_path)
    assert resumed.get("failed") is not True, resumed
    assert resumed["resumed_bytes"] >= 3 * (300 << 10), resumed
    assert tree(host / "bundle") == {"bundle.yaml", "SHA256SUMS", *first["contents"]}
    assert sorted(os.listdir(host)) == ["bundle", "state"]


def test_a_signed_bundle_is_checked_through_the_depot(
    depot: RegistryServer, depot_proxy: FaultProxy, tmp_path: Path
) -> None:
    keys = {}
    for name in ("signer", "other"):
        keys[name] = tmp_path / f"{name}.pem"
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(keys[name])], check=True)
    public = {
        name: subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout"], capture_output=True, text=True,
                             check=True).stdout
        for name, key in keys.items()
    }  # fmt: skip
    contents, models = two_models(os.urandom(4096), os.urandom(2048))
    signed = make_bundle(tmp_path / "signed", contents, models, key=keys["signer"])
    load(depot, signed, tmp_path)
    host = tmp_path / "host"
    refused = install(depot_proxy.url, signed, host, tmp_path, public_key=public["other"])
    assert refused.get("failed") is True and "bundle.yaml.sig does not match" in refused["msg"], refused
    assert not (host / "bundle").exists() and not (host / "state/verified").exists()
    done = install(depot_proxy.url, signed, host, tmp_path, public_key=public["signer"])
    assert done.get("failed") is not True, done
    assert (host / "bundle/bundle.yaml.sig").read_bytes() == (signed["root"] / "bundle.yaml.sig").read_bytes()
    again = install(depot_proxy.url, signed, host, tmp_path, public_key=public["other"])  # a key required later
    assert again.get("failed") is True and "bundle.yaml.sig does not match" in again["msg"], again


def test_a_file_missing_from_the_depot_is_named_and_nothing_is_installed(
    depot_proxy: FaultProxy, first: dict, tmp_path: Path
) -> None:
    stranger = os.urandom(100)
    bundle = {**first, "document": {**first["document"], "files": [
        *first["document"]["files"], {"path": "extra.bin", "size": 100, "sha256": sha(stranger)}]}}  # fmt: skip
    host = tmp_path / "host"
    failed = install(depot_proxy.url, bundle, host, tmp_path)
    assert failed.get("failed") is True
    assert "extra.bin: not in the depot (404)" in failed["msg"] and "\n" not in failed["msg"], failed
    assert not (host / "bundle").exists()


def test_a_full_disk_is_refused_before_any_byte_is_fetched(
    depot_proxy: FaultProxy, first: dict, tmp_path: Path
) -> None:
    host = tmp_path / "host"
    refused = install(depot_proxy.url, first, host, tmp_path, free_space_margin=1 << 60)
    assert refused.get("failed") is True, refused
    assert "bytes free beside" in refused["msg"] and str(host / "bundle") in refused["msg"], refused
    assert blob_requests(depot_proxy) == [] and not (host / "bundle").exists()
