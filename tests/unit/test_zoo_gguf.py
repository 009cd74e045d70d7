"""The test bed's model zoo: each GGUF read back with gguf's GGUFReader carries the keys that make ollama give the
model its capabilities; configs, tensor layers and cloud configs have the shapes ollama writes."""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path

import pytest
from gguf import GGUFReader, GGUFValueType, LlamaFileType

from testbed.zoo import (
    KINDS,
    MEDIA_ADAPTER,
    MEDIA_DRAFT,
    MEDIA_JSON,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_PROJECTOR,
    MEDIA_PROMPT,
    MEDIA_TEMPLATE,
    MEDIA_TENSOR,
    GGUFFile,
    ZooModel,
    go_config,
    models_of_kind,
    zoo_models,
)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, GGUFFile], list[ZooModel]]:
    return zoo_models(tmp_path_factory.mktemp("zoo"))


def _value(reader: GGUFReader, key: str) -> object:
    field = reader.fields[key]
    if field.types[0] == GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode()
    if field.types[0] == GGUFValueType.ARRAY:
        if field.types[-1] == GGUFValueType.STRING:
            return [bytes(field.parts[index]).decode() for index in field.data]
        return [field.parts[index].tolist()[0] for index in field.data]
    return field.parts[field.data[0]].tolist()[0]


def _layer_path(ggufs: dict[str, GGUFFile], model: ZooModel, media_type: str) -> list[Path]:
    return [ggufs[layer.gguf].path for layer in model.layers if layer.media_type == media_type and layer.gguf]


def _layer_text(model: ZooModel, *media_types: str) -> str:
    return "".join((layer.content or b"").decode() for layer in model.layers if layer.media_type in media_types)


# Python restatements of the checks in ollama's server/images.go and thinking/template.go.
def _chat_template_tools(chat_template: str) -> bool:  # chatTemplateHasToolSupport
    return "tools" in chat_template or "tool_call" in chat_template


def _chat_template_thinking(chat_template: str) -> bool:  # chatTemplateHasThinkingSupport, first branch
    return "<think>" in chat_template and "</think>" in chat_template


def _go_template_tools(template: str) -> bool:  # Template.Vars() contains "tools"
    return any(re.search(r"\.Tools\b", action) for action in re.findall(r"\{\{(.*?)\}\}", template, re.DOTALL))


def _go_template_thinking(template: str) -> bool:  # InferTags: {{ .Thinking }} between text, in range .Messages
    ranged = re.search(r"\{\{-?\s*range [^}]*\.Messages", template)
    return bool(ranged) and bool(re.search(r"<think>\{\{ \.Thinking \}\}</think>", template[ranged.end() :]))


def test_every_kind_is_in_the_zoo(zoo: tuple[dict[str, GGUFFile], list[ZooModel]]) -> None:
    _, models = zoo
    assert {model.kind for model in models} == set(KINDS)
    references = [f"{model.repository}:{tag}" for model in models for tag in model.tags]
    assert len(references) == len(set(references)) == 24
    assert {m.repository for m in models_of_kind(models, "vision-projector")} == {"library/llava", "library/moondream"}
    assert all(model.capabilities for model in models)


def test_ggufs_are_tiny(zoo: tuple[dict[str, GGUFFile], list[ZooModel]]) -> None:
    ggufs, _ = zoo
    legacy = {"tinyllama-q8_0", "tinyllama-q4_0", "tinyqwen-f16"}  # today's chat models, unchanged
    for key, gguf in ggufs.items():
        assert gguf.path.stat().st_size < (2_000_000 if key in legacy else 400_000), key


def test_main_gguf_keys_decide_capabilities(zoo: tuple[dict[str, GGUFFile], list[ZooModel]]) -> None:
    ggufs, models = zoo
    checked = set()
    for model in models:
        paths = _layer_path(ggufs, model, MEDIA_MODEL)
        if not paths:
            assert model.kind in ("tensor", "cloud")
            continue
        reader = GGUFReader(paths[0])
        arch = _value(reader, "general.architecture")
        assert model.config["model_family"] == arch, model.repository
        assert arch in model.config["model_families"]  # type: ignore[operator]
        assert (
            LlamaFileType(_value(reader, "general.file_type")).name.removeprefix("MOSTLY_")
            == (model.config["file_type"])
            or model.config["file_type"] == "F32"
        )
        assert _value(reader, f"{arch}.embedding_length") == model.embedding_length
        pooling = f"{arch}.pooling_type" in reader.fields
        assert ("embedding" in model.capabilities) == pooling
        assert ("completion" in model.capabilities) == (not pooling)
        inline_vision = f"{arch}.vision.block_count" in reader.fields
        projectors = _layer_path(ggufs, model, MEDIA_PROJECTOR)
        assert ("vision" in model.capabilities) == (inline_vision or bool(projectors))
        assert (model.kind == "vision-inline") == inline_vision
        assert (model.kind == "vision-projector") == bool(projectors)

        chat_template = str(_value(reader, "tokenizer.chat_template")) if not pooling else ""
        go_template = _layer_text(model, MEDIA_TEMPLATE, MEDIA_PROMPT)
        # The GGUF chat template and the Go template agree, so ollama's choice between them changes nothing.
        assert _chat_template_tools(chat_template) == _go_template_tools(go_template) == ("tools" in model.capabilities)
        assert _chat_template_thinking(chat_template) == _go_template_thinking(go_template)
        assert _go_template_thinking(go_template) == ("thinking" in model.capabilities)
        checked.add(model.kind)
    assert checked == set(KINDS) - {"tensor", "cloud"}


def test_projectors_are_clip_ggufs(zoo: tuple[dict[str, GGUFFile], list[ZooModel]]) -> None:
    ggufs, models = zoo
    for model in models_of_kind(models, "vision-projector"):
        (projector,) = _layer_path(ggufs, model, MEDIA_PROJECTOR)
        reader = GGUFReader(projector)
        assert _value(reader, "general.architecture") == "clip"
        assert _value(reader, "clip.has_vision_encoder") is True
        assert _value(reader, "clip.has_llava_projector") is True
        # isProjectorGGUF: clip + vision encoder + no text block count; projector_type set, so create keeps it.
        assert "clip.block_count" not in reader.fields
        assert _value(reader, "clip.projector_type") == "mlp"
        assert _value(reader, "clip.vision.block_count") == 2
        assert _value(reader, "clip.vision.projection_dim") == model.embedding_length
        assert len(_value(reader, "clip.vision.image_mean")) == 3  # type: ignore[arg-type]
        assert {"mm.0.weight", "mm.2.weight", "v.patch_embd.weight"} <= {t.name for t in reader.tensors}
        assert "clip" in model.config["model_families"]  # type: ignore[operator]


def test_split_model_shards(zoo: tuple[dict[str, GGUFFile], list[ZooModel]]) -> None:
    ggufs, models = zoo
    (model,) = models_of_kind(models, "split")
    shards = _layer_path(ggufs, model, MEDIA_MODEL)
    assert [re.sub(r".*-(\d{5})-of-(\d{5})\.gguf$", r"\1/\2", p.name) for p in shards] == [
        "00001/00003",
        "00002/00003",
        "00003/00003",
    ]
    readers = [GGUFReader(path) for path in shards]
    assert [_value(r, "split.no") for r in readers] == [0, 1, 2]
    assert {_value(r, "split.count") for r in readers} == {3}
    assert readers[0].fields["split.no"].types == [GGUFValueType.UINT16]
    assert readers[0].fields["split.tensors.count"].types == [GGUFValueType.INT32]
    assert {_value(r, "split.tensors.count") for r in readers} == {sum(len(r.tensors) for r in readers)}
    assert all(len(r.tensors) > 0 for r in readers)
    # Only the first shard describes the model (gguf-split); the others carry just their tensors.
    assert _value(readers[0], "general.architecture") == "llama"
    assert all("general.architecture" not in r.fields for r in readers[1:])
    assert readers[0].tensors[0].name == "token_embd.weight"
    assert readers[-1].tensors[-1].name == "output.weight"


def test_embedding_model(zoo: tuple[dict[str, GGUFFile], list[ZooModel]]) -> None:
    ggufs, models = zoo
    for model in models_of_kind(models, "embedding"):
        (path,) = _layer_path(ggufs, model, MEDIA_MODEL)
        reader = GGUFReader(path)
        assert _value(reader, "general.architecture") == "nomic-bert"
        assert _value(reader, "nomic-bert.pooling_type") == 1  # mean
        assert _value(reader, "nomic-bert.attention.causal") is False
        assert _value(reader, "tokenizer.ggml.model") == "bert"
        assert "tokenizer.chat_template" not in reader.fields
        assert not [layer for layer in model.layers if layer.media_type in (MEDIA_TEMPLATE, MEDIA_PROMPT)]
        (params,) = [layer for layer in model.layers if layer.media_type == MEDIA_PARAMS]
        assert json.loads(params.content or b"") == {"num_ctx": 8192}
        assert model.capabilities == ("embedding",) and model.embedding_length == 64


def test_adapter_layer(zoo: tuple[dict[str, GGUFFile], list[ZooModel]]) -> None:
    ggufs, models = zoo
    (model,) = models_of_kind(models, "adapter")
    (adapter,) = _layer_path(ggufs, model, MEDIA_ADAPTER)
    reader = GGUFReader(adapter)
    assert _value(reader, "general.type") == "adapter"
    assert _value(reader, "adapter.type") == "lora"
    assert _value(reader, "adapter.lora.alpha") == 8.0
    assert _value(reader, "general.architecture") == "llama"
    names = [tensor.name for tensor in reader.tensors]
    assert names and all(name.endswith((".lora_a", ".lora_b")) for name in names)
    base = GGUFReader(_layer_path(ggufs, model, MEDIA_MODEL)[0])
    assert _value(base, "llama.embedding_length") == int(reader.tensors[0].shape[0])
    assert [layer.media_type for layer in model.layers][:2] == [MEDIA_MODEL, MEDIA_ADAPTER]


def test_draft_layer(zoo: tuple[dict[str, GGUFFile], list[ZooModel]]) -> None:
    ggufs, models = zoo
    (model,) = models_of_kind(models, "draft")
    (target,) = _layer_path(ggufs, model, MEDIA_MODEL)
    (draft,) = _layer_path(ggufs, model, MEDIA_DRAFT)
    target_reader, draft_reader = GGUFReader(target), GGUFReader(draft)
    assert model.config["draft"] == {
        "model_format": "gguf",
        "architecture": _value(draft_reader, "general.architecture"),
    }
    # Speculative decoding needs the same vocabulary, and a smaller model.
    tokens = _value(target_reader, "tokenizer.ggml.tokens")
    assert isinstance(tokens, list) and "<|im_end|>" in tokens
    assert tokens == _value(draft_reader, "tokenizer.ggml.tokens")
    assert draft.stat().st_size < target.stat().st_size
    assert [layer.media_type for layer in model.layers][:2] == [MEDIA_MODEL, MEDIA_DRAFT]


def test_tensor_model_layers(zoo: tuple[dict[str, GGUFFile], list[ZooModel]]) -> None:
    _, models = zoo
    (model,) = models_of_kind(models, "tensor")
    assert model.config == go_config(model_format="safetensors", capabilities=["completion"], requires="0.19.0")
    assert model.restore_only and model.restore_only_reason
    tensors = [layer for layer in model.layers if layer.media_type == MEDIA_TENSOR]
    jsons = [layer for layer in model.layers if layer.media_type == MEDIA_JSON]
    assert len(tensors) + len(jsons) == len(model.layers)
    assert model.layers[: len(tensors)] == tuple(tensors)  # tensors first, then the json files
    for layer in tensors:
        data = layer.content or b""
        (header_length,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + header_length])
        assert list(header) == [layer.name]
        start, end = header[layer.name]["data_offsets"]
        assert header[layer.name]["dtype"] == "BF16" and end - start == len(data) - 8 - header_length
        count = 1
        for dim in header[layer.name]["shape"]:
            count *= dim
        assert end - start == 2 * count
    assert [layer.name for layer in jsons] == [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    config_json = json.loads(jsons[0].content or b"")
    assert config_json["architectures"] == ["LlamaForCausalLM"]
    assert "model.embed_tokens.weight" in {layer.name for layer in tensors}


def test_cloud_and_requires_configs(zoo: tuple[dict[str, GGUFFile], list[ZooModel]]) -> None:
    _, models = zoo
    (cloud,) = models_of_kind(models, "cloud")
    assert cloud.layers == () and cloud.tags == ("120b-cloud",)
    assert cloud.config["remote_host"] == "https://ollama.com:443"
    assert cloud.config["remote_model"] == "gpt-oss:120b"
    assert tuple(cloud.config["capabilities"]) == cloud.capabilities  # type: ignore[arg-type]
    assert cloud.config["model_format"] == ""  # no model layer to take it from (server/create.go)
    assert [m.requires for m in models_of_kind(models, "requires-ok")] == ["0.30.0"]
    assert [m.requires for m in models_of_kind(models, "requires-too-new")] == ["0.99.0"]
    legacy = models_of_kind(models, "legacy-prompt")[0]
    assert MEDIA_PROMPT in {layer.media_type for layer in legacy.layers}
    assert MEDIA_TEMPLATE not in {layer.media_type for layer in legacy.layers}


def test_configs_keep_go_field_order(zoo: tuple[dict[str, GGUFFile], list[ZooModel]]) -> None:
    _, models = zoo
    order = ["model_format", "model_family", "model_families", "model_type", "file_type", "renderer", "parser"]
    order += ["requires", "remote_host", "remote_model", "capabilities", "context_length", "embedding_length"]
    order += ["base_name", "draft", "architecture", "os"]
    for model in models:
        keys = list(model.config)
        assert keys == sorted(keys, key=order.index), model.repository
        assert {"model_format", "model_family", "model_families", "model_type", "file_type"} <= set(keys)


def test_zoo_files_are_deterministic(tmp_path: Path, zoo: tuple[dict[str, GGUFFile], list[ZooModel]]) -> None:
    ggufs, _ = zoo
    again, _ = zoo_models(tmp_path)
    assert set(again) == set(ggufs)
    for key, gguf in ggufs.items():
        assert hashlib.sha256(again[key].path.read_bytes()).digest() == hashlib.sha256(gguf.path.read_bytes()).digest()
