"""Differential bundles: what a delta carries, its bundle.yaml, `bundle verify`/`inspect` of it, and the host module
(plugins/modules/airgap_bundle.py, run as Ansible runs it) assembling the complete tree from the base it holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from ollama_airgap.bundle import Entry, manifest_bytes, pack, read_bundle_index, sums_text, verify_archive, verify_dir
from ollama_airgap.cli.main import main
from ollama_airgap.delta import delta_meta, load_base, sidecar_path, split_entries, whats_new
from ollama_airgap.errors import SpecError
from ollama_airgap.lock import Lock
from ollama_airgap.progress import Reporter

MODULE = Path(__file__).resolve().parents[2] / "plugins" / "modules" / "airgap_bundle.py"
QUIET = Reporter(enabled=False)
BLOB_A = b"GGUF model A " * 4096
BLOB_B = b"GGUF model B " * 4096
BLOB_C = b"GGUF model C, new"


def model(name: str, digest: str) -> dict[str, Any]:
    return {"name": name, "short": name, "manifest_digest": digest, "source": "registry", "size": 1}


def files_of(version: str, models: dict[str, bytes]) -> list[Entry]:
    entries = [
        Entry.from_bytes(f"ollama/{version}/sha256sum.txt", f"sums {version}\n".encode()),
        Entry.from_bytes(f"ollama/{version}/ollama-linux-amd64.tar.zst", f"release {version}".encode() * 64),
    ]
    for name, blob in models.items():
        entries.append(Entry.from_bytes(f"models/manifests/registry.ollama.ai/library/{name}/latest", name.encode()))
        entries.append(Entry.from_bytes(f"models/blobs/sha256-{name:0>64}", blob))
    return sorted(entries, key=lambda e: e.path)


def write(out: Path, name: str, version: str, models: dict[str, bytes], base: Path | None = None) -> Path:
    """A bundle as `bundle build` writes it (full, or carrying only what ``base`` lacks)."""
    entries = files_of(version, models)
    lock = Lock(bundle=name, resolved_at=1, ollama_version=version, models={m: f"sha256:{m:0>64}" for m in models})
    meta = {
        "name": name,
        "ollama": {"version": version, "files": []},
        "models": [model(m, f"sha256:{m:0>64}") for m in models],
        "images": [],
        "lock": lock.as_dict(),
    }
    carried, carried_set = entries, None
    if base is not None:
        carried, carried_set = split_entries(load_base(base), entries)
        meta.update(delta_meta(load_base(base), carried))
    sums = sums_text(entries)
    manifest = manifest_bytes(meta, entries, sums, carried_set)
    pack(out, manifest, sums, carried, 1, QUIET)
    sidecar_path(out).write_bytes(manifest)
    out.with_name(out.name.removesuffix(".tar") + ".lock.yaml").write_bytes(lock.dump())
    return out


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """(base: ollama 0.14.1 + a, b; delta: ollama 0.35.1 + a, b and the new c)."""
    base = write(tmp_path / "old.tar", "demo", "0.14.1", {"a": BLOB_A, "b": BLOB_B})
    delta = write(tmp_path / "new.tar", "demo", "0.35.1", {"a": BLOB_A, "b": BLOB_B, "c": BLOB_C}, base=base)
    return base, delta


def test_delta_carries_only_what_the_base_lacks(pair: tuple[Path, Path]) -> None:
    base, delta = pair
    with tarfile.open(delta) as tar:
        members = set(tar.getnames())
    assert members == {
        "bundle.yaml",
        "SHA256SUMS",
        "ollama/0.35.1/sha256sum.txt",
        "ollama/0.35.1/ollama-linux-amd64.tar.zst",
        "models/manifests/registry.ollama.ai/library/c/latest",
        f"models/blobs/sha256-{'c':0>64}",
    }
    assert delta.stat().st_size < base.stat().st_size / 4


def test_delta_manifest_names_the_base_and_lists_the_complete_result(pair: tuple[Path, Path]) -> None:
    base, delta = pair
    base_index, index = read_bundle_index(base), read_bundle_index(delta)
    doc = index.document
    assert doc["base"]["bundle_digest"] == base_index.digest == index.base_digest
    assert doc["base"]["ollama_version"] == "0.14.1" and doc["base"]["files"] == len(base_index.files)
    assert [m["name"] for m in doc["base"]["models"]] == ["a", "b"]
    full = files_of("0.35.1", {"a": BLOB_A, "b": BLOB_B, "c": BLOB_C})
    assert [(f["path"], f["size"], f["sha256"]) for f in doc["files"]] == [(e.path, e.size, e.sha256) for e in full]
    from_base = {f["path"] for f in doc["files"] if not f["carried"]}
    assert from_base == {p for p in base_index.files if p.startswith("models/")}
    assert doc["carried"] == {"files": 4, "size": sum(f["size"] for f in doc["files"] if f["carried"])}
    assert doc["total_size"] == sum(e.size for e in full)
    # A full bundle keeps its old shape: no base, no carried marks.
    assert "base" not in base_index.document and all("carried" not in f for f in base_index.document["files"])


def test_base_from_archive_sidecar_lock_or_tree(pair: tuple[Path, Path], tmp_path: Path) -> None:
    base, _ = pair
    digest = read_bundle_index(base).digest
    tree = tmp_path / "tree"
    tree.mkdir()
    with tarfile.open(base) as tar:
        tar.extractall(tree, filter="data")
    sources = (base, sidecar_path(base), base.with_name("old.lock.yaml"), tree)
    assert {load_base(source).digest for source in sources} == {digest}
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "old.lock.yaml").write_bytes(base.with_name("old.lock.yaml").read_bytes())
    with pytest.raises(SpecError, match="a lock does not list the bundle's files"):
        load_base(lonely / "old.lock.yaml")
    (tmp_path / "other.yaml").write_text("a: 1\n")
    with pytest.raises(SpecError, match="neither a bundle"):
        load_base(tmp_path / "other.yaml")


def test_lock_of_another_build_is_refused(pair: tuple[Path, Path]) -> None:
    base, _ = pair
    lock = base.with_name("old.lock.yaml")
    lock.write_text(lock.read_text().replace("resolved_at: 1", "resolved_at: 2"))
    with pytest.raises(SpecError, match="another build than this lock"):
        load_base(lock)


def test_verify_of_a_delta_checks_what_it_carries(pair: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    base, delta = pair
    report = verify_archive(delta, QUIET)
    assert report.ok, report.problems
    assert report.delta_of == read_bundle_index(base).digest and report.from_base == 4 and report.files == 4
    assert main(["verify", str(delta), "-q"]) == 0
    out = capsys.readouterr().out
    assert f"a differential bundle of base sha256:{report.delta_of}" in out and "4 more come from the base" in out

    data = bytearray(delta.read_bytes())
    at = data.index(BLOB_C)
    data[at] ^= 1
    delta.write_bytes(bytes(data))
    problems = verify_archive(delta, QUIET).problems
    assert len(problems) == 1 and problems[0].startswith(f"models/blobs/sha256-{'c':0>64} is altered (sha256 ")


def test_a_delta_archive_holding_a_base_file_is_refused(pair: tuple[Path, Path], tmp_path: Path) -> None:
    _, delta = pair
    index = read_bundle_index(delta)
    entries = files_of("0.35.1", {"a": BLOB_A, "b": BLOB_B, "c": BLOB_C})
    sums = sums_text(entries)
    smuggled = tmp_path / "smuggled.tar"
    pack(smuggled, index.raw, sums, entries, 1, QUIET)
    problems = verify_archive(smuggled, QUIET).problems
    assert f"models/blobs/sha256-{'a':0>64} is in the archive but bundle.yaml says it comes from the base" in problems


def test_unpacked_delta_alone_says_where_the_rest_comes_from(pair: tuple[Path, Path], tmp_path: Path) -> None:
    _, delta = pair
    tree = tmp_path / "delta-tree"
    tree.mkdir()
    with tarfile.open(delta) as tar:
        tar.extractall(tree, filter="data")
    problems = verify_dir(tree, QUIET).problems
    assert any("comes from base bundle sha256:" in p for p in problems) and len(problems) == 4


def test_inspect_shows_what_is_new(pair: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    base, delta = pair
    assert main(["inspect", str(delta), "--json"]) == 0
    delta_info = json.loads(capsys.readouterr().out)["delta"]
    assert delta_info["base_digest"] == read_bundle_index(base).digest
    assert delta_info["ollama"] == {"base": "0.14.1", "now": "0.35.1", "changed": True}
    assert delta_info["models_added"] == ["c"] and delta_info["models_from_base"] == ["a", "b"]
    assert delta_info["files_carried"] == 4 and delta_info["files_from_base"] == 4
    assert main(["inspect", str(delta)]) == 0
    text = capsys.readouterr().out
    assert "differential bundle over base demo sha256:" in text and "ollama: 0.14.1 -> 0.35.1" in text
    assert "models added: c" in text
    assert main(["inspect", str(base), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["delta"] is None
    assert whats_new({"models": []}) is None


# --- the host module ---------------------------------------------------------------------------------------


def run_module(tmp_path: Path, check: bool = False, **args: Any) -> dict[str, Any]:
    args_file = tmp_path / "args.json"
    payload: dict[str, Any] = {**args, "_ansible_check_mode": check, "_ansible_diff": True}
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": payload}))
    # The module imports the collection's module_utils (plugins/module_utils), resolved through scripts/setup.sh's link.
    env = {**os.environ, "PYTHONPATH": str(MODULE.parents[2] / ".ansible" / "collections")}
    proc = subprocess.run([sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, check=False,
                          env=env)  # fmt: skip
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def present(tmp_path: Path, archive: Path, check: bool = False) -> dict[str, Any]:
    document = yaml.safe_load(sidecar_path(archive).read_bytes())
    base = (document.get("base") or {}).get("bundle_digest")
    return run_module(
        tmp_path,
        check,
        src=str(archive),
        dest=str(tmp_path / "root"),
        state_dir=str(tmp_path / "state"),
        manifest_sha256=read_bundle_index(archive).digest,
        files=document["files"],
        sums_sha256=document["sha256sums_sha256"],
        **({"base_digest": base} if base else {}),
    )


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_host_assembles_the_complete_tree_from_its_base(pair: tuple[Path, Path], tmp_path: Path) -> None:
    base, delta = pair
    assert present(tmp_path, base)["changed"] is True
    root = tmp_path / "root"
    before = snapshot(root)
    planned = present(tmp_path, delta, check=True)
    assert planned["changed"] is True and snapshot(root) == before
    assert "assembled from base bundle" in planned["diff"]["after"]

    done = present(tmp_path, delta)
    assert done["changed"] is True and done["linked_files"] == 4, done
    carried = yaml.safe_load(sidecar_path(delta).read_bytes())["carried"]
    assert done["hashed_bytes"] == carried["size"]  # model data from the base is linked, not re-hashed
    report = verify_dir(root, QUIET)
    assert report.ok and report.bundle_digest == read_bundle_index(delta).digest, report.problems
    after = snapshot(root)
    blob_a = f"models/blobs/sha256-{'a':0>64}"
    assert after[blob_a] == before[blob_a]  # the same inode: a hard link, not a copy
    assert not any(k.startswith("ollama/0.14.1") for k in after)

    again = present(tmp_path, delta)
    assert again["changed"] is False and again["hashed_bytes"] == 0


def test_host_without_the_base_refuses_and_is_untouched(pair: tuple[Path, Path], tmp_path: Path) -> None:
    base, delta = pair
    other = write(tmp_path / "other.tar", "other", "0.13.5", {"d": b"GGUF model D"})
    present(tmp_path, other)
    root = tmp_path / "root"
    before = snapshot(root), sorted(os.listdir(tmp_path / "state" / "verified")), sorted(os.listdir(tmp_path))
    base_digest = read_bundle_index(base).digest
    for check in (True, False):
        result = present(tmp_path, delta, check=check)
        assert result.get("failed") is True
        message = result["msg"]
        assert f"needs base bundle {base_digest}" in message and "\n" not in message
        assert f"holds bundle {read_bundle_index(other).digest}" in message
    after = snapshot(root), sorted(os.listdir(tmp_path / "state" / "verified")), sorted(os.listdir(tmp_path))
    assert after == before


def test_base_altered_since_verified_is_refused(pair: tuple[Path, Path], tmp_path: Path) -> None:
    base, delta = pair
    present(tmp_path, base)
    blob = tmp_path / "root" / f"models/blobs/sha256-{'a':0>64}"
    blob.write_bytes(b"X" + blob.read_bytes()[1:])
    result = present(tmp_path, delta)
    assert result.get("failed") is True and "(altered since verified)" in result["msg"], result
    query = run_module(
        tmp_path,
        dest=str(tmp_path / "root"),
        state="query",
        state_dir=str(tmp_path / "state"),
        manifest_sha256=read_bundle_index(delta).digest,
        base_digest=read_bundle_index(base).digest,
    )
    assert query["base_present"] is False and query["current"] is False
