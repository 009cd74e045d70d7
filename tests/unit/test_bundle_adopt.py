"""airgap_bundle state=present with adopt (what bundle_transport=p2p uses for the tree the swarm fetched): the tree is
verified where it is and moved into the bundle root, never copied; a bad file leaves both trees as they were."""

from __future__ import annotations

import tarfile
from pathlib import Path

import yaml
from test_delta import BLOB_A, BLOB_B, run_module, snapshot, write

from ollama_airgap.bundle import read_bundle_index
from ollama_airgap.delta import sidecar_path


def fetched_tree(tmp_path: Path, name: str) -> tuple[Path, dict]:
    archive = write(tmp_path / f"{name}.tar", name, "0.14.1", {"a": BLOB_A, "b": BLOB_B})
    tree = tmp_path / "incoming" / name
    tree.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    document = yaml.safe_load(sidecar_path(archive).read_bytes())
    args = {
        "src": str(tree), "dest": str(tmp_path / "root"), "state_dir": str(tmp_path / "state"), "adopt": True,
        "manifest_sha256": read_bundle_index(archive).digest, "files": document["files"],
        "sums_sha256": document["sha256sums_sha256"],
    }  # fmt: skip
    return tree, args


def test_the_fetched_tree_becomes_the_root_without_a_copy(tmp_path: Path) -> None:
    tree, args = fetched_tree(tmp_path, "one")
    inodes = {path: ino for path, (ino, _) in snapshot(tree).items()}
    done = run_module(tmp_path, **args)
    assert done.get("failed") is not True and done["changed"], done
    assert not tree.exists()
    assert {path: ino for path, (ino, _) in snapshot(tmp_path / "root").items()} == inodes  # moved, not copied
    assert done["hashed_bytes"] == sum(f["size"] for f in args["files"])
    assert run_module(tmp_path, **args)["changed"] is False  # the record holds; src is not needed any more


def test_an_altered_file_leaves_both_trees_as_they_were(tmp_path: Path) -> None:
    _, args = fetched_tree(tmp_path, "one")
    assert run_module(tmp_path, **args)["changed"]
    root_before = snapshot(tmp_path / "root")
    tree, args = fetched_tree(tmp_path, "two")
    blob = next(path for path in snapshot(tree) if path.startswith("models/blobs/"))
    (tree / blob).write_bytes(b"x" * (tree / blob).stat().st_size)
    tree_before = snapshot(tree)
    failed = run_module(tmp_path, **args)
    assert failed.get("failed") is True and f"{blob} is altered" in failed["msg"], failed
    assert snapshot(tmp_path / "root") == root_before and snapshot(tree) == tree_before
