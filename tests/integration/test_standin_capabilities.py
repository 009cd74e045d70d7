"""The ollama stand-in computes capabilities and refuses requests as ollama does (official `ollama` client)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import ollama
import pytest
import requests
from standin_ggufs import (
    CURRENT,
    OLD,
    TOOLS_THINKING_TEMPLATE,
    chat_gguf,
    embedding_gguf,
    projector_gguf,
    standin_at_fixture,  # noqa: F401
)

from testbed.standin_server import Standin

IMAGE = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def create(server: Standin, name: str, *files: Path, template: str | None = None) -> None:
    client = server.client()
    digests = {path.name: client.create_blob(path) for path in files}
    client.create(model=name, files=digests, template=template)


def test_capabilities_by_model_kind(standin_at: Callable[..., Standin], tmp_path: Path) -> None:
    server = standin_at(CURRENT)
    client = server.client()
    create(server, "chat", chat_gguf(tmp_path / "chat.gguf"))
    create(server, "agent", chat_gguf(tmp_path / "agent.gguf", chat_template=TOOLS_THINKING_TEMPLATE))
    create(server, "embedder", embedding_gguf(tmp_path / "embed.gguf"))
    create(server, "inline-vision", chat_gguf(tmp_path / "inline.gguf", vision_blocks=2))
    create(server, "llava", chat_gguf(tmp_path / "llava.gguf"), projector_gguf(tmp_path / "mmproj.gguf"))
    create(server, "go-tools", chat_gguf(tmp_path / "go.gguf"), template="{{ if .Tools }}{{ .Tools }}{{ end }}")
    expected = {
        "chat": ["completion"],
        "agent": ["tools", "thinking", "completion"],  # GGUF chat template first (images.go ggufCapabilities)
        "embedder": ["embedding"],
        "inline-vision": ["completion", "vision"],
        "llava": ["completion", "vision"],
        "go-tools": ["completion", "tools"],  # a TEMPLATE layer is the selected template
    }
    for name, capabilities in expected.items():
        assert client.show(name).capabilities == capabilities, name
    listed = requests.get(f"{server.url}/api/tags", timeout=10).json()["models"]  # v0.30: the list has them too
    assert {item["model"].removesuffix(":latest"): item["capabilities"] for item in listed} == expected
    llava = requests.post(f"{server.url}/api/show", json={"model": "llava"}, timeout=10).json()
    assert llava["modelfile"].count("\nFROM ") == 2  # the projector is an extra FROM line (Model.String)

    old = standin_at(OLD)  # v0.13.5: no chat-template detection, Go template vars only
    create(old, "agent", chat_gguf(tmp_path / "agent.gguf", chat_template=TOOLS_THINKING_TEMPLATE))
    create(old, "go-tools", chat_gguf(tmp_path / "go.gguf"), template="{{ .Tools }}{{ .Suffix }}")
    assert old.client().show("agent").capabilities == ["completion"]
    assert old.client().show("go-tools").capabilities == ["completion", "tools", "insert"]
    assert all("capabilities" not in item for item in requests.get(f"{old.url}/api/tags", timeout=10).json()["models"])


@pytest.mark.parametrize("version", [CURRENT, OLD])
def test_embedding_model_refuses_generate_and_chat(
    standin_at: Callable[..., Standin], tmp_path: Path, version: str
) -> None:
    server = standin_at(version)
    create(server, "embedder", embedding_gguf(tmp_path / "embed.gguf"))
    client = server.client()
    with pytest.raises(ollama.ResponseError) as generate:
        client.generate("embedder", "hello")
    assert generate.value.status_code == 400 and generate.value.error == '"embedder" does not support generate'
    with pytest.raises(ollama.ResponseError) as chat:
        client.chat("embedder", messages=[{"role": "user", "content": "hi"}])
    assert chat.value.status_code == 400 and chat.value.error == '"embedder" does not support chat'
    with pytest.raises(ollama.ResponseError, match="does not support generate"):
        client.generate("embedder", "")  # a load is refused too
    assert client.generate("embedder", "", keep_alive=0).done_reason == "unload"  # `ollama stop` still works


def test_embed_and_embeddings(standin_at: Callable[..., Standin], tmp_path: Path) -> None:
    server = standin_at(CURRENT)
    create(server, "embedder", embedding_gguf(tmp_path / "embed.gguf", embedding_length=48))
    create(server, "chat", chat_gguf(tmp_path / "chat.gguf"))
    client = server.client()
    first = client.embed("embedder", input=["air gap", "bundle"])
    assert len(first.embeddings) == 2 and all(len(vector) == 48 for vector in first.embeddings)
    assert all(math.isclose(math.fsum(v * v for v in vector), 1.0, rel_tol=1e-6) for vector in first.embeddings)
    assert first.embeddings[0] != first.embeddings[1]
    assert client.embed("embedder", input="air gap").embeddings[0] == first.embeddings[0]  # deterministic
    assert first.prompt_eval_count and first.model == "embedder"
    short = client.embed("embedder", input="air gap", dimensions=8).embeddings[0]
    assert len(short) == 8 and math.isclose(math.fsum(v * v for v in short), 1.0, rel_tol=1e-6)
    assert client.embed("embedder", input=[]).embeddings == []

    legacy = client.embeddings("embedder", prompt="air gap").embedding
    assert len(legacy) == 48 and not math.isclose(math.fsum(v * v for v in legacy), 1.0)  # not normalised
    norm = math.sqrt(math.fsum(v * v for v in legacy))
    assert [v / norm for v in legacy] == pytest.approx(first.embeddings[0])
    assert client.embeddings("embedder", prompt="").embedding == []
    ran = server.cli("run", "embedder", "air gap")  # `ollama run` embeds with an embedding model (cmd.go)
    assert ran.returncode == 0 and json.loads(ran.stdout) == pytest.approx(first.embeddings[0])

    with pytest.raises(ollama.ResponseError) as refused:  # llama-server runs chat models without --embedding
        client.embed("chat", input="air gap")
    assert refused.value.status_code == 501
    assert refused.value.error == "This server does not support embeddings. Start it with `--embeddings`"
    with pytest.raises(ollama.ResponseError) as legacy_refused:
        client.embeddings("chat", prompt="air gap")
    assert legacy_refused.value.status_code == 500
    with pytest.raises(ollama.ResponseError) as missing:
        client.embed("absent", input="air gap")
    assert missing.value.status_code == 404 and missing.value.error == 'model "absent" not found, try pulling it first'
    with pytest.raises(ollama.ResponseError, match="invalid input type"):
        requests_error(server, "/api/embed", {"model": "embedder", "input": [1, 2]})

    old = standin_at(OLD)  # the v0.13 runners embed with any model
    create(old, "chat", chat_gguf(tmp_path / "chat.gguf", embedding_length=8))
    assert len(old.client().embed("chat", input="air gap").embeddings[0]) == 8


def requests_error(server: Standin, path: str, body: dict[str, object]) -> None:
    response = requests.post(f"{server.url}{path}", json=body, timeout=10)
    if response.status_code >= 400:
        raise ollama.ResponseError(response.json()["error"], response.status_code)


def test_images_only_for_vision_models(standin_at: Callable[..., Standin], tmp_path: Path) -> None:
    server = standin_at(CURRENT)
    create(server, "chat", chat_gguf(tmp_path / "chat.gguf"))
    create(server, "llava", chat_gguf(tmp_path / "llava.gguf"), projector_gguf(tmp_path / "mmproj.gguf"))
    create(server, "inline-vision", chat_gguf(tmp_path / "inline.gguf", vision_blocks=2))
    client = server.client()
    for name in ("llava", "inline-vision"):
        described = client.generate(name, "what is this?", images=[IMAGE], options={"num_predict": 3})
        assert described.done and described.response
        seen = client.chat(name, messages=[{"role": "user", "content": "and this?", "images": [IMAGE]}])
        assert seen.message.content
    for call in (
        lambda: client.generate("chat", "what is this?", images=[IMAGE]),
        lambda: client.chat("chat", messages=[{"role": "user", "content": "this?", "images": [IMAGE]}]),
    ):
        with pytest.raises(ollama.ResponseError) as refused:
            call()
        assert refused.value.status_code == 400
        assert refused.value.error.startswith("image input is not supported")


def test_thinking_and_tools_checks(standin_at: Callable[..., Standin], tmp_path: Path) -> None:
    server = standin_at(CURRENT)
    create(server, "chat", chat_gguf(tmp_path / "chat.gguf"))
    create(server, "agent", chat_gguf(tmp_path / "agent.gguf", chat_template=TOOLS_THINKING_TEMPLATE))
    client = server.client()
    with pytest.raises(ollama.ResponseError) as think:
        client.generate("chat", "hi", think=True)
    assert think.value.status_code == 400 and think.value.error == '"chat" does not support thinking'
    tool = {"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}
    with pytest.raises(ollama.ResponseError) as tools:
        client.chat("chat", messages=[{"role": "user", "content": "hi"}], tools=[tool])
    assert tools.value.status_code == 400
    assert tools.value.error == "registry.ollama.ai/library/chat:latest does not support tools"
    reply = client.chat("agent", messages=[{"role": "user", "content": "hi"}], tools=[tool], think=True)
    assert reply.done
