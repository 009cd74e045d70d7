"""Capabilities as ollama's Model.Capabilities() computes them, on GGUF files written by the `gguf` library."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

from ollama_airgap import go_template
from ollama_airgap.capabilities import ModelFacts, capabilities, chat_template_capabilities
from ollama_airgap.gguf_meta import read_gguf_meta
from ollama_airgap.model_meta import model_facts_meta
from ollama_airgap.ollama_model import CONFIG, MODEL, PROJECTOR, PROMPT, TEMPLATE, Layer, ModelManifest

ZEPHYR = "{{ if .System }}<|system|>\n{{ .System }}</s>\n{{ end }}<|user|>\n{{ .Prompt }}</s>\n<|assistant|>\n"
QWEN3 = (
    "{{- if .Tools }}<tools>{{ range .Tools }}{{ . }}{{ end }}</tools>{{ end }}"
    "{{- range $i, $_ := .Messages }}"
    '{{- if eq .Role "assistant" }}<|im_start|>assistant\n'
    "{{- if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}"
    "{{ .Content }}{{ range .ToolCalls }}<tool_call>{{ .Function.Name }}</tool_call>{{ end }}<|im_end|>"
    '{{- else if eq .Role "tool" }}<tool_response>{{ .Content }}</tool_response>'
    "{{- else }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>{{ end }}{{ end }}"
)
FIM = "{{ if .Suffix }}<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>{{ else }}{{ .Prompt }}{{ end }}"
JINJA_TOOLS = "{% for m in messages %}{% if tools %}{{ tools }}{% endif %}{{ m.content }}{% endfor %}"


def gguf_file(path: Path, arch: str, *, chat: str = "", **kv: object) -> Path:
    writer = GGUFWriter(path, arch)
    writer.add_embedding_length(48)
    writer.add_block_count(1)
    if chat:
        writer.add_chat_template(chat)
    for key, value in kv.items():
        key = key.replace("__", ".")
        if isinstance(value, bool):
            writer.add_bool(f"{arch}.{key}", value)
        elif isinstance(value, str):
            writer.add_string(f"{arch}.{key}", value)
        else:
            writer.add_uint32(f"{arch}.{key}", int(value))  # type: ignore[call-overload]
    writer.add_tensor("token_embd.weight", np.zeros((4, 48), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "llama": gguf_file(tmp_path / "llama.gguf", "llama", chat="{{ messages }}"),
        "llama-tools": gguf_file(tmp_path / "llama-tools.gguf", "llama", chat=JINJA_TOOLS),
        "bert": gguf_file(tmp_path / "bert.gguf", "nomic-bert", pooling_type=1),
        "gemma3": gguf_file(tmp_path / "gemma3.gguf", "gemma3", vision__block_count=2),
        "audio": gguf_file(tmp_path / "audio.gguf", "gemma3n", audio__block_count=2),
        "clip": gguf_file(tmp_path / "clip.gguf", "clip", has_vision_encoder=True),
        "clip-audio": gguf_file(tmp_path / "clip-audio.gguf", "clip", has_audio_encoder=True),
        "clip-3n": gguf_file(
            tmp_path / "clip-3n.gguf", "clip", has_audio_encoder=True, vision__projector_type="gemma3nv"
        ),
    }


def caps(files: dict[str, Path], model: str | None, template: str | None = None, **more: object) -> list[str]:
    projectors = [read_gguf_meta(files[p]) for p in more.pop("projectors", [])]  # type: ignore[attr-defined]
    config = dict(more.pop("config", {}))  # type: ignore[call-overload]
    return capabilities(
        ModelFacts(
            config=config,
            model=read_gguf_meta(files[model]) if model else None,
            has_model_layer=model is not None,
            projectors=projectors,
            template=template,
        )
    )


def test_kinds(files: dict[str, Path]) -> None:
    assert caps(files, "llama", ZEPHYR) == ["completion"]
    assert caps(files, "bert") == ["embedding"]
    assert caps(files, "gemma3", ZEPHYR) == ["completion", "vision"]
    assert caps(files, "llama", ZEPHYR, projectors=["clip"]) == ["completion", "vision"]
    assert caps(files, "llama", QWEN3) == ["completion", "tools", "thinking"]
    assert caps(files, "llama", FIM) == ["completion", "insert"]
    assert caps(files, "audio", ZEPHYR) == ["completion", "audio"]


def test_projector_audio(files: dict[str, Path]) -> None:
    assert caps(files, "llama", ZEPHYR, projectors=["clip-audio"]) == ["completion", "vision", "audio"]
    assert caps(files, "llama", ZEPHYR, projectors=["clip-3n"]) == ["completion", "vision"]


def test_config_parser_family_and_suppression(files: dict[str, Path]) -> None:
    # a tensor model: no GGUF, capabilities from the config
    assert caps(files, None, config={"model_format": "safetensors", "capabilities": ["completion"]}) == ["completion"]
    assert caps(files, "llama", config={"parser": "qwen3-thinking"}) == ["completion", "tools", "thinking"]
    assert caps(files, "llama", config={"parser": "olmo3-think"}) == ["completion", "thinking"]
    assert caps(files, "llama", ZEPHYR, config={"model_family": "gptoss"}) == ["completion", "thinking"]
    gemma4_st = {"model_format": "safetensors", "renderer": "gemma4", "capabilities": ["completion", "vision"]}
    assert caps(files, None, config=gemma4_st) == ["completion"]


def test_template_choice(files: dict[str, Path]) -> None:
    # No Go TEMPLATE: the GGUF chat template's tools count (ollama does not render the chat itself).
    assert caps(files, "llama-tools") == ["tools", "completion"]
    # A Go TEMPLATE without tools loses to a chat template with more capabilities (shouldPreferChatTemplate).
    assert caps(files, "llama-tools", ZEPHYR) == ["tools", "completion"]
    # A renderer means ollama renders: the chat template is not looked at.
    assert caps(files, "llama-tools", config={"renderer": "x"}) == ["completion"]


def test_unreadable_model_gives_no_completion(tmp_path: Path) -> None:
    """ollama logs "couldn't open model file" and carries on without the GGUF's capabilities."""
    assert capabilities(ModelFacts(model=None, has_model_layer=True, template=ZEPHYR)) == []


def test_chat_template_rules() -> None:
    assert chat_template_capabilities("{{ tool_call }}") == ["tools"]
    assert chat_template_capabilities("<think></think>") == ["thinking"]
    assert chat_template_capabilities("content.split('</think>')") == ["thinking"]
    assert chat_template_capabilities("content.split('</think>') reasoning_content") == []


def test_go_template_reader() -> None:
    parsed = go_template.parse(QWEN3)
    assert {"tools", "messages", "thinking", "toolcalls", "role"} <= go_template.variables(parsed)
    assert go_template.thinking_tags(parsed) == ("<think>", "</think>")
    # .Thinking outside a range over .Messages, trim markers, comments with }} and quotes inside
    assert go_template.thinking_tags(go_template.parse("<think>{{ .Thinking }}</think>")) == ("", "")
    trimmed = go_template.parse('{{/* it\'s }} */}}a  {{- .X -}}  b{{ if and .A (eq .B "}}") }}{{ end }}')
    assert go_template.variables(trimmed) == {"x", "a", "b"}
    assert [n.text for n in trimmed.root.nodes if isinstance(n, go_template.Text)] == ["a", "b"]
    for bad in ("{{ if .X }}", "{{ end }}", "{{ .X", '{{ "open }}'):
        with pytest.raises(go_template.TemplateError):
            go_template.parse(bad)


def test_bundle_meta_from_cached_blobs(files: dict[str, Path], tmp_path: Path) -> None:
    """The last model layer is the model (GetModel); embedding_length falls back to the first split part;
    a legacy prompt layer counts as the template."""
    template = tmp_path / "template"
    template.write_text(QWEN3)
    paths = {
        "sha256:" + c * 64: p
        for c, p in zip("abcd", [files["bert"], files["llama"], files["clip"], template], strict=True)
    }
    digests = list(paths)
    manifest = ModelManifest(
        Layer(CONFIG, "sha256:" + "0" * 64, 2),
        (
            Layer(MODEL, digests[0], 1),
            Layer(MODEL, digests[1], 1),
            Layer(PROJECTOR, digests[2], 1),
            Layer(PROMPT, digests[3], len(QWEN3)),
        ),
    )
    meta = model_facts_meta(manifest, {}, paths.__getitem__)
    assert meta == {"capabilities": ["completion", "vision", "tools", "thinking"], "embedding_length": 48}
    assert TEMPLATE != PROMPT


def test_releases_before_llama_server_use_the_older_rules(files: dict[str, Path]) -> None:
    """Model.Capabilities() of v0.14/v0.15: projector vision after tools, no chat-template detection, plain
    appends, and v0.14's image short cut."""

    def old(model: str | None, template: str | None = None, version: str = "0.14.1", **more: object) -> list[str]:
        projectors = [read_gguf_meta(files[p]) for p in more.pop("projectors", [])]  # type: ignore[attr-defined]
        facts = ModelFacts(
            config=dict(more.pop("config", {})),  # type: ignore[call-overload]
            model=read_gguf_meta(files[model]) if model else None,
            has_model_layer=model is not None,
            projectors=projectors,
            template=template,
        )
        return capabilities(facts, version)

    assert old("llama", QWEN3, projectors=["clip"]) == ["completion", "tools", "vision", "thinking"]
    assert caps(files, "llama", QWEN3, projectors=["clip"]) == ["completion", "vision", "tools", "thinking"]
    assert old("gemma3", ZEPHYR, projectors=["clip"]) == ["completion", "vision", "vision"]
    assert old("llama-tools") == ["completion"]
    assert old("bert") == ["embedding"]
    assert old(None, config={"capabilities": ["completion"]}) == ["completion"]
    assert old(None, config={"capabilities": ["image"]}) == ["image"]
    assert old(None, version="0.15.0", config={"capabilities": ["image"]}) == ["image"]
    assert old("llama", ZEPHYR, config={"model_family": "gptoss"}, version="0.29.9") == ["completion", "thinking"]
    assert capabilities(ModelFacts(model=None, has_model_layer=True), "0.13.5") == []
