"""The depot modules against the real docker-registry, with the fault proxy between the host side and the depot.

plugins/modules/airgap_depot_load.py loads a bundle tree into the registry (once: a re-run uploads nothing);
plugins/modules/airgap_depot_fetch.py fetches it back by digest in ranged parts, resumes after the depot drops out,
and fetches a blob again when a corrupt piece spoils its sha256. No hosts: seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from testbed.faultproxy import Fault, FaultProxy
from testbed.registry import RegistryServer

REPO = Path(__file__).resolve().parents[2]
MODULES = REPO / "plugins" / "modules"
COLLECTIONS = REPO / ".ansible" / "collections"
BIG = 5 << 20  # in 5 parts of 1 MiB


def run_module(name: str, args: dict[str, Any], tmp_path: Path, check: bool = False) -> dict[str, Any]:
    args_file = tmp_path / f"{name}.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check}}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(COLLECTIONS), *sys.path])}
    proc = subprocess.run(
        [sys.executable, str(MODULES / f"{name}.py"), str(args_file)],
        capture_output=True, text=True, check=False, timeout=120, env=env,
    )  # fmt: skip
    assert proc.stdout, proc.stderr
    return dict(json.loads(proc.stdout))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_bundle(
    root: Path, contents: dict[str, bytes], models: list[dict[str, Any]] | None = None, key: Path | None = None
) -> dict:
    """A bundle tree shaped as `bundle build` writes it (bundle.yaml is JSON here: YAML's subset)."""
    files = []
    for path, data in contents.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
        files.append({"path": path, "size": len(data), "sha256": sha(data)})
    sums = "".join(f"{f['sha256']}  {f['path']}\n" for f in files).encode()
    (root / "SHA256SUMS").write_bytes(sums)
    document = {"format": "test", "models": models or [], "files": files, "sha256sums_sha256": sha(sums)}
    manifest = json.dumps(document).encode()
    (root / "bundle.yaml").write_bytes(manifest)
    if key is not None:
        subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", str(key), "-rawin", "-in", str(root / "bundle.yaml"),
                        "-out", str(root / "bundle.yaml.sig")], check=True, capture_output=True)  # fmt: skip
    return {"root": root, "document": document, "files": files, "digest": sha(manifest), "sums": sha(sums),
            "contents": contents}  # fmt: skip


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A bundle-shaped tree: bundle.yaml, SHA256SUMS, a big blob, small files, an empty one, a duplicate."""
    root = tmp_path_factory.mktemp("bundle")
    contents = {
        "models/blobs/sha256-big": os.urandom(BIG),
        "models/manifests/x/latest": b'{"schemaVersion": 2}',
        "ollama/0.14.1/sha256sum.txt": b"abc  ./ollama-linux-amd64.tar.zst\n",
        "empty.txt": b"",
        "copy/of/manifest": b'{"schemaVersion": 2}',
    }
    return make_bundle(root, contents)


def load_args(depot: RegistryServer, tree: dict[str, Any]) -> dict[str, Any]:
    return {
        "url": depot.url, "root": str(tree["root"]), "manifest_sha256": tree["digest"],
        "sums_sha256": tree["sums"], "files": tree["files"],
    }  # fmt: skip


def fetch_args(url: str, tree: dict[str, Any], dest: Path) -> dict[str, Any]:
    return {
        "url": url, "dest": str(dest), "manifest_sha256": tree["digest"], "sums_sha256": tree["sums"],
        "files": tree["files"], "part_size": 1 << 20, "connections": 4, "retries": 2,
    }  # fmt: skip


def assert_fetched(dest: Path, tree: dict[str, Any]) -> None:
    for path, data in tree["contents"].items():
        assert (dest / path).read_bytes() == data, path
    assert (dest / "bundle.yaml").read_bytes() == (tree["root"] / "bundle.yaml").read_bytes()
    files = {str(path.relative_to(dest)) for path in dest.rglob("*") if path.is_file()}
    assert files == {"bundle.yaml", "SHA256SUMS", *tree["contents"]}  # only the listed files: airgap_bundle's input


@pytest.fixture(scope="module")
def loaded(depot: RegistryServer, tree: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    first = run_module("airgap_depot_load", load_args(depot, tree), tmp_path_factory.mktemp("load"))
    assert first.get("failed") is not True, first
    return first


def test_load_uploads_every_blob_once_and_a_rerun_nothing(
    depot: RegistryServer, tree: dict[str, Any], loaded: dict[str, Any], tmp_path: Path
) -> None:
    assert loaded["changed"] and loaded["uploaded_blobs"] == 6  # 4 distinct files (one duplicate) + 2 meta
    assert loaded["uploaded_bytes"] >= BIG
    again = run_module("airgap_depot_load", load_args(depot, tree), tmp_path)
    assert again["changed"] is False and again["uploaded_blobs"] == 0, again
    manifest = json.loads(
        subprocess.run(
            ["curl", "-sf", "-H", "Accept: application/vnd.oci.image.manifest.v1+json",
             f"{depot.url}/v2/ollama-airgap/bundle/manifests/{tree['digest']}"],
            capture_output=True, check=True,
        ).stdout
    )  # fmt: skip
    assert manifest["config"]["digest"] == f"sha256:{tree['digest']}"
    titles = {layer["annotations"]["org.opencontainers.image.title"] for layer in manifest["layers"]}
    assert titles == {"SHA256SUMS", *tree["contents"]}


def test_fetch_in_ranged_parts_then_nothing(
    depot_proxy: FaultProxy, tree: dict[str, Any], loaded: dict[str, Any], tmp_path: Path
) -> None:
    dest = tmp_path / "incoming"
    first = run_module("airgap_depot_fetch", fetch_args(depot_proxy.url, tree, dest), tmp_path)
    assert first.get("failed") is not True, first
    assert first["changed"] and first["fetched_bytes"] >= BIG and first["refetched"] == []
    assert_fetched(dest, tree)
    big = sha(tree["contents"]["models/blobs/sha256-big"])
    ranges = [hit.range_header for hit in depot_proxy.log if big in hit.path]
    assert len(ranges) == 5 and all(r and r.startswith("bytes=") for r in ranges), ranges
    depot_proxy.clear()
    again = run_module("airgap_depot_fetch", fetch_args(depot_proxy.url, tree, dest), tmp_path)
    assert again["changed"] is False and again["fetched_bytes"] == 0, again
    assert depot_proxy.log == []  # nothing asked of the depot


def test_a_corrupt_piece_is_caught_and_fetched_again(
    depot_proxy: FaultProxy, tree: dict[str, Any], loaded: dict[str, Any], tmp_path: Path
) -> None:
    big = sha(tree["contents"]["models/blobs/sha256-big"])
    depot_proxy.add(Fault(path_contains=big, kind="corrupt", after_bytes=1000))
    dest = tmp_path / "incoming"
    result = run_module("airgap_depot_fetch", fetch_args(depot_proxy.url, tree, dest), tmp_path)
    assert result.get("failed") is not True, result
    assert result["refetched"] == ["models/blobs/sha256-big"]
    assert_fetched(dest, tree)


def test_depot_dropping_out_fails_in_one_line_and_the_rerun_resumes(
    depot_proxy: FaultProxy, tree: dict[str, Any], loaded: dict[str, Any], tmp_path: Path
) -> None:
    big = sha(tree["contents"]["models/blobs/sha256-big"])
    # Every request for the big blob is cut after 300 KiB, as if the depot went away mid-transfer.
    depot_proxy.add(Fault(path_contains=big, kind="truncate", after_bytes=300 << 10, times=100))
    dest = tmp_path / "incoming"
    failed = run_module("airgap_depot_fetch", fetch_args(depot_proxy.url, tree, dest), tmp_path)
    assert failed.get("failed") is True
    assert "\n" not in failed["msg"] and "models/blobs/sha256-big" in failed["msg"], failed["msg"]
    assert "kept" in failed["msg"]
    assert not (dest / "models/blobs/sha256-big").exists()  # nothing half-made looks finished
    assert (dest / "models/blobs/sha256-big.partial").exists()
    depot_proxy.clear()
    resumed = run_module("airgap_depot_fetch", fetch_args(depot_proxy.url, tree, dest), tmp_path)
    assert resumed.get("failed") is not True, resumed
    assert resumed["resumed_bytes"] >= 5 * (300 << 10), resumed
    assert resumed["fetched_bytes"] <= BIG - resumed["resumed_bytes"] + (1 << 20), resumed
    assert_fetched(dest, tree)
