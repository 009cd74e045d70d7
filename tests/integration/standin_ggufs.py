"""Tiny GGUFs (written with the `gguf` library), hand-made manifests and a versioned stand-in fixture for the
ollama stand-in's fidelity tests."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from testbed import config
from testbed.standin_server import Standin, start_standin, write_standin

CURRENT = config.OLLAMA_VERSION_CURRENT
OLD = config.OLLAMA_VERSION_TGZ

WORDS = ["air", "gap", "model", "bundle", "host", "cache", "digest", "layer", "blob", "vector", "image", "tool"]
TOOLS_THINKING_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'tool' %}<tool_response>{{ m['content'] }}</tool_response>"
    "{% else %}<|{{ m['role'] }}|>{{ m['content'] }}{% endif %}{% endfor %}"
    "{% if tools %}<tools>{{ tools | tojson }}</tools>{% endif %}<|assistant|><think>\n</think>"
)


def _write(path: Path, arch: str, fill: Callable[[gguf.GGUFWriter], None], vocab: bool = True) -> Path:
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(path.stem)
    writer.add_file_type(1)
    if vocab:
        tokens = ["<unk>", "<s>", "</s>"] + ["\u2581" + word for word in WORDS]
        writer.add_tokenizer_model("llama")
        writer.add_token_list(tokens)
        writer.add_token_types([gguf.TokenType.CONTROL] * 3 + [gguf.TokenType.NORMAL] * len(WORDS))
    fill(writer)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def chat_gguf(path: Path, chat_template: str = "", vision_blocks: int = 0, embedding_length: int = 8) -> Path:
    """A llama-architecture chat model (optionally with vision blocks inside, as gemma3/qwen2.5vl are)."""

    def fill(writer: gguf.GGUFWriter) -> None:
        writer.add_context_length(256)
        writer.add_embedding_length(embedding_length)
        writer.add_block_count(1)
        writer.add_head_count(2)
        if vision_blocks:
            writer.add_uint32("llama.vision.block_count", vision_blocks)
        if chat_template:
            writer.add_chat_template(chat_template)
        writer.add_tensor("token_embd.weight", np.ones((len(WORDS) + 3, embedding_length), dtype=np.float16))

    return _write(path, "llama", fill)


def embedding_gguf(path: Path, embedding_length: int = 48) -> Path:
    """A nomic-bert embedder: `<arch>.pooling_type`, no chat template."""

    def fill(writer: gguf.GGUFWriter) -> None:
        writer.add_context_length(64)
        writer.add_embedding_length(embedding_length)
        writer.add_block_count(1)
        writer.add_head_count(2)
        writer.add_pooling_type(gguf.PoolingType.MEAN)
        writer.add_tensor("token_embd.weight", np.ones((len(WORDS) + 3, embedding_length), dtype=np.float16))

    return _write(path, "nomic-bert", fill)


def projector_gguf(path: Path) -> Path:
    """A clip projector (llava's mmproj): vision blocks, no `clip.block_count`."""

    def fill(writer: gguf.GGUFWriter) -> None:
        writer.add_type("mmproj")
        writer.add_uint32("clip.vision.block_count", 1)
        writer.add_bool("clip.has_vision_encoder", True)
        writer.add_tensor("v.patch_embd.weight", np.ones((4, 4), dtype=np.float16))

    return _write(path, "clip", fill, vocab=False)


def adapter_gguf(path: Path) -> Path:
    """A LoRA adapter (general.type adapter)."""

    def fill(writer: gguf.GGUFWriter) -> None:
        writer.add_type("adapter")
        writer.add_string("adapter.type", "lora")
        writer.add_float32("adapter.lora.alpha", 16.0)
        writer.add_tensor("blk.0.attn_q.weight.lora_a", np.ones((2, 8), dtype=np.float16))

    return _write(path, "llama", fill, vocab=False)


def split_ggufs(folder: Path, stem: str = "tiny") -> list[Path]:
    """One model in two shards as llama.cpp's gguf-split names and marks them."""
    paths = []
    for index in range(2):

        def fill(writer: gguf.GGUFWriter, index: int = index) -> None:
            if index == 0:
                writer.add_context_length(256)
                writer.add_embedding_length(8)
                writer.add_block_count(1)
            writer.add_uint16("split.no", index)
            writer.add_uint16("split.count", 2)
            writer.add_int32("split.tensors.count", 2)
            writer.add_tensor(f"blk.{index}.weight", np.ones((len(WORDS) + 3, 8), dtype=np.float16))

        paths.append(_write(folder / f"{stem}-{index + 1:05d}-of-00002.gguf", "llama", fill, vocab=index == 0))
    return paths


def blob(models: Path, data: bytes) -> dict[str, Any]:
    """Store bytes as a blob; returns the descriptor {digest, size}."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = models / "blobs" / digest.replace(":", "-")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": digest, "size": len(data)}


def write_manifest(models: Path, name: str, config: dict[str, Any], layers: list[tuple[str, bytes, str]]) -> None:
    """A manifest as the registry serves it (restored by hand): layers are (media type suffix, bytes, name)."""
    body_layers = []
    for kind, data, layer_name in layers:
        layer = {"mediaType": f"application/vnd.ollama.image.{kind}", **blob(models, data)}
        if layer_name:
            layer["name"] = layer_name
        body_layers.append(layer)
    config_blob = blob(models, json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **config_blob},
        "layers": body_layers,
    }
    model, _, tag = name.partition(":")
    path = models / "manifests" / "registry.ollama.ai" / "library" / model / (tag or "latest")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))


@pytest.fixture(name="standin_at")
def standin_at_fixture(tmp_path: Path) -> Iterator[Callable[..., Standin]]:
    """Start stand-ins of a given ollama version (each ended by PID afterwards)."""
    servers: list[Standin] = []

    def start(version: str, models: Path | None = None, **env: str) -> Standin:
        script = tmp_path / f"ollama-{version}"
        if not script.exists():
            write_standin(script, version)
        log = tmp_path / f"serve-{len(servers)}.log"
        server = start_standin(script, models or tmp_path / f"models-{version}", tmp_path, log, **env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
