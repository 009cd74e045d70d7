"""`ollama create` on the stand-in as ollama does it: several FROM lines (a projector), ADAPTER, DRAFT, REQUIRES and
split GGUFs (several `model` layers)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import ollama
import pytest
import requests
from standin_ggufs import CURRENT, OLD, adapter_gguf, chat_gguf, projector_gguf, split_ggufs, standin_at_fixture  # noqa: F401

from testbed.standin_server import Standin

MT = "application/vnd.ollama.image."


def blob_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest(server: Standin, name: str) -> dict:
    path = server.models / "manifests" / "registry.ollama.ai" / "library" / name / "latest"
    return json.loads(path.read_bytes())


def config_of(server: Standin, body: dict) -> dict:
    return json.loads((server.models / "blobs" / body["config"]["digest"].replace(":", "-")).read_bytes())


def test_modelfile_with_projector_adapter_draft_and_requires(
    standin_at: Callable[..., Standin], tmp_path: Path
) -> None:
    server = standin_at(CURRENT)
    chat_gguf(tmp_path / "model.gguf")
    projector_gguf(tmp_path / "mmproj.gguf")
    adapter_gguf(tmp_path / "lora.gguf")
    chat_gguf(tmp_path / "draft.gguf", embedding_length=4)
    (tmp_path / "Modelfile").write_text(
        "FROM ./model.gguf\nFROM ./mmproj.gguf\nADAPTER ./lora.gguf\nDRAFT ./draft.gguf\nREQUIRES 0.30.0\n"
        "SYSTEM all kinds\n"
    )
    created = server.cli("create", "kinds", "-f", str(tmp_path / "Modelfile"))
    assert created.returncode == 0, created.stderr
    body = manifest(server, "kinds")
    kinds = [layer["mediaType"].removeprefix(MT) for layer in body["layers"]]
    assert kinds == ["projector", "model", "draft", "adapter", "system"]  # files sorted by name (create.go)
    config = config_of(server, body)
    assert config["requires"] == "0.30.0" and config["model_family"] == "llama"
    assert config["draft"] == {"model_format": "gguf", "architecture": "llama"}
    shown = requests.post(f"{server.url}/api/show", json={"model": "kinds"}, timeout=10).json()
    assert shown["requires"] == "0.30.0"
    table = server.cli("show", "kinds").stdout
    assert "    requires            0.30.0" in table and "  Capabilities\n    completion\n    vision" in table
    assert shown["capabilities"] == ["completion", "vision"]
    lines = [line.split(" ", 1)[0] for line in shown["modelfile"].splitlines() if line and not line.startswith("#")]
    assert lines[:5] == ["FROM", "ADAPTER", "DRAFT", "FROM", "TEMPLATE"]  # Model.String order

    # `ollama show --modelfile` recreates the same layers (what a bundle's Modelfile does on a host).
    (tmp_path / "Again").write_text(server.cli("show", "kinds", "--modelfile").stdout)
    assert server.cli("create", "again", "-f", str(tmp_path / "Again")).returncode == 0
    again = [(layer["mediaType"], layer["digest"]) for layer in manifest(server, "again")["layers"]]
    again.remove((MT + "template", blob_digest(b"{{ .Prompt }}")))  # Model.String always writes TEMPLATE
    assert sorted(again) == sorted((layer["mediaType"], layer["digest"]) for layer in body["layers"])
    assert "requires" not in config_of(server, manifest(server, "again"))  # Model.String has no REQUIRES line
    reply = server.client().generate("kinds", "hello", options={"num_predict": 2})
    assert reply.done and reply.eval_count == 2


def test_old_parser_refuses_draft(standin_at: Callable[..., Standin], tmp_path: Path) -> None:
    server = standin_at(OLD)
    chat_gguf(tmp_path / "model.gguf")
    (tmp_path / "Modelfile").write_text("FROM ./model.gguf\nDRAFT ./model.gguf\n")
    result = server.cli("create", "x", "-f", str(tmp_path / "Modelfile"))
    assert result.returncode == 1
    assert result.stderr.strip().endswith(
        'command must be one of "from", "license", "template", "system", "adapter", "renderer", "parser", '
        '"parameter", or "message"'
    )


def test_bad_requires_is_refused_by_the_parser(standin_at: Callable[..., Standin], tmp_path: Path) -> None:
    server = standin_at(CURRENT)
    chat_gguf(tmp_path / "model.gguf")
    (tmp_path / "Modelfile").write_text("FROM ./model.gguf\nREQUIRES soon\n")
    result = server.cli("create", "x", "-f", str(tmp_path / "Modelfile"))
    assert result.returncode == 1
    assert result.stderr.strip().endswith("requires must be a valid semver (e.g. 0.14.0)")


def test_split_gguf_keeps_one_model_layer_per_shard(standin_at: Callable[..., Standin], tmp_path: Path) -> None:
    server = standin_at(CURRENT)
    client = server.client()
    shards = split_ggufs(tmp_path)
    files = {path.name: client.create_blob(path) for path in reversed(shards)}
    client.create(model="split", files=files)
    body = manifest(server, "split")
    models = [layer for layer in body["layers"] if layer["mediaType"] == MT + "model"]
    assert [layer["digest"] for layer in models] == [files[path.name] for path in shards]  # shard order
    assert config_of(server, body)["model_families"] == ["llama"]
    assert client.show("split").capabilities == ["completion"]
    assert client.generate("split", "hello", options={"num_predict": 2}).eval_count == 2

    with pytest.raises(ollama.ResponseError, match="has 1 shards, expected 2"):
        client.create(model="half", files={shards[0].name: files[shards[0].name]})
    renamed = {"tiny-a.gguf": files[shards[0].name], "tiny-b.gguf": files[shards[1].name]}
    with pytest.raises(ollama.ResponseError, match=r"must use llama\.cpp split filename pattern"):
        client.create(model="bad", files=renamed)
