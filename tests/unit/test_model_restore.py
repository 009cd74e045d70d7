"""plugins/modules/airgap_model_restore.py, run as Ansible runs it (a JSON args file), on manifests with every layer
type ollama writes: several model layers (split GGUF), projector, adapter, draft, tensor and json layers with names,
the legacy prompt layer, and a digest listed twice."""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

MODULE = Path(__file__).resolve().parents[2] / "plugins" / "modules" / "airgap_model_restore.py"
MANIFEST = "models/manifests/registry.ollama.ai/library/every-kind/latest"
PREFIX = "application/vnd.ollama.image."


def blob(root: Path, data: bytes) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = root / "models" / "blobs" / f"sha256-{digest[7:]}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o644)
    return {"digest": digest, "size": len(data)}


@pytest.fixture
def bundle(tmp_path: Path) -> tuple[Path, str]:
    """A bundle tree with one manifest holding every layer type; returns (root, manifest digest)."""
    root = tmp_path / "bundle"
    shared = blob(root, b"{}")
    layers = [
        {"mediaType": PREFIX + "model", **blob(root, b"GGUF part 1")},
        {"mediaType": PREFIX + "model", **blob(root, b"GGUF part 2")},
        {"mediaType": PREFIX + "projector", **blob(root, b"GGUF clip")},
        {"mediaType": PREFIX + "adapter", **blob(root, b"GGUF lora")},
        {"mediaType": PREFIX + "draft", **blob(root, b"GGUF draft")},
        {"mediaType": PREFIX + "tensor", "name": "model.embed_tokens.weight", **blob(root, b"tensor a")},
        {"mediaType": PREFIX + "tensor", "name": "model.norm.weight", **blob(root, b"tensor b")},
        {"mediaType": PREFIX + "json", "name": "config.json", **shared},
        {"mediaType": PREFIX + "json", "name": "generation_config.json", **shared},  # same bytes: one blob
        {"mediaType": PREFIX + "prompt", **blob(root, b"{{ .Prompt }}")},
        {"mediaType": PREFIX + "params", **blob(root, b'{"stop":["</s>"]}')},
    ]
    config = blob(root, json.dumps({"model_format": "gguf", "requires": "0.30.0"}).encode())
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **config},
            "layers": layers,
        }
    ).encode()
    path = root / MANIFEST
    path.parent.mkdir(parents=True)
    path.write_bytes(manifest)
    return root, "sha256:" + hashlib.sha256(manifest).hexdigest()


def run(args: dict[str, Any], tmp_path: Path, *, check: bool = False, diff: bool = False) -> dict[str, Any]:
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    payload = {"owner": user, "group": group, **args, "_ansible_check_mode": check, "_ansible_diff": diff}
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": payload}))
    proc = subprocess.run(
        [sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, check=False, timeout=60
    )
    return json.loads(proc.stdout)


def distinct_blobs(root: Path) -> set[str]:
    return {p.name for p in (root / "models" / "blobs").iterdir()}


def test_every_layer_type_is_restored_once_and_linked(bundle: tuple[Path, str], tmp_path: Path) -> None:
    root, digest = bundle
    store = tmp_path / "store"
    args = {"bundle_root": str(root), "models_dir": str(store), "manifest": MANIFEST, "manifest_digest": digest}
    first = run(args, tmp_path, diff=True)
    assert first.get("failed") is not True, first
    assert first["changed"] and first["digest"] == digest
    assert len(first["blobs_linked"]) == len(distinct_blobs(root)) == 11  # config + 10 distinct layers
    assert {p.name for p in (store / "blobs").iterdir()} == distinct_blobs(root)
    for name in distinct_blobs(root):
        assert (store / "blobs" / name).stat().st_ino == (root / "models" / "blobs" / name).stat().st_ino
    stored = store / "manifests/registry.ollama.ai/library/every-kind/latest"
    assert "sha256:" + hashlib.sha256(stored.read_bytes()).hexdigest() == digest
    assert first["diff"]["before"] == "manifest (absent)\n"
    assert first["diff"]["after"].startswith(f"manifest {digest}\n") and first["diff"]["after"].count("(link)") == 11

    again = run(args, tmp_path, diff=True)
    assert again["changed"] is False and "diff" not in again, again
    assert len(again["blobs_present"]) == 11 and again["blobs_linked"] == again["blobs_copied"] == []


def test_copy_check_mode_and_a_damaged_store_blob(bundle: tuple[Path, str], tmp_path: Path) -> None:
    root, digest = bundle
    store = tmp_path / "store"
    args = {"bundle_root": str(root), "models_dir": str(store), "manifest": MANIFEST, "link": "never"}
    planned = run(args, tmp_path, check=True)
    assert planned["changed"] and len(planned["blobs_copied"]) == 11 and not store.exists()
    done = run(args, tmp_path)
    assert done["changed"] and done["bytes_copied"] > 0 and done["digest"] == digest
    victim = next(p for p in (store / "blobs").iterdir() if p.read_bytes() == b"GGUF clip")
    victim.write_bytes(b"GGUF clap")  # same size, other bytes: hashed and replaced
    healed = run(args, tmp_path)
    assert healed["changed"] and healed["blobs_copied"] == ["sha256:" + victim.name[7:]]
    assert victim.read_bytes() == b"GGUF clip"
    assert run(args, tmp_path)["changed"] is False


def test_preflight_counts_each_blob_once(bundle: tuple[Path, str], tmp_path: Path) -> None:
    root, _ = bundle
    total = sum(p.stat().st_size for p in (root / "models" / "blobs").iterdir())
    models = [{"name": "every-kind:latest", "manifest": MANIFEST, "method": "create"}]
    result = run(
        {"action": "preflight", "bundle_root": str(root), "models_dir": str(tmp_path / "s"), "models": models}, tmp_path
    )
    assert result["needed_bytes"] == 2 * total and result["models"][0]["missing_blobs"] == 11, result


def test_conflicting_sizes_for_one_digest_are_refused(bundle: tuple[Path, str], tmp_path: Path) -> None:
    root, _ = bundle
    path = root / MANIFEST
    manifest = json.loads(path.read_bytes())
    manifest["layers"].append({**manifest["layers"][0], "size": manifest["layers"][0]["size"] + 1})
    path.write_text(json.dumps(manifest))
    result = run({"bundle_root": str(root), "models_dir": str(tmp_path / "s"), "manifest": MANIFEST}, tmp_path)
    assert result["failed"] and "with sizes" in result["msg"], result
