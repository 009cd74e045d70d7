"""A model's capabilities, computed as ollama's ``Model.Capabilities()`` computes them (server/images.go, with
``usesOllamaRenderedChat``/``shouldUseGoTemplate`` from server/routes.go and parser support from
model/parsers/parsers.go), for the default environment (``OLLAMA_GO_TEMPLATE`` unset).

In order: the config's ``capabilities``; for a GGUF model (the *last* ``model`` layer, as GetModel keeps it) the
chat-template tools/thinking when ollama does not render the chat itself, ``<arch>.pooling_type`` → embedding else
completion, ``<arch>.vision.block_count`` → vision, ``<arch>.audio.block_count`` → audio; a projector → vision (and
audio when it has an audio encoder, gemma3nv excepted); the Go TEMPLATE's ``tools``/``suffix``/thinking tags when it is
the selected template; the built-in parser's tools/thinking; gpt-oss → thinking; then vision/audio dropped where
ollama suppresses them.

Releases before 0.30.0 (before llama-server) computed them differently; :func:`capabilities` given such a pinned
version follows that older ``Model.Capabilities()`` (read at v0.15.0, with v0.14's ``image`` short cut): the GGUF's
embedding/completion and inline vision (else the config's list), then the Go TEMPLATE's tools and insert, a projector's
vision, and thinking from the template's tags, gpt-oss or the parser — appended in that order, without de-duplication.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import go_template
from .gguf_meta import GGUFMeta
from .ollama_compat import version_lt

LLAMA_SERVER_SINCE = "0.30.0"  # the capability rules changed with the move to llama-server

COMPLETION, TOOLS, INSERT, VISION, AUDIO, EMBEDDING, THINKING = (
    "completion",
    "tools",
    "insert",
    "vision",
    "audio",
    "embedding",
    "thinking",
)
DEFAULT_TEMPLATE = "{{ .Prompt }}"  # template.DefaultTemplate

# model/parsers ParserForName: name → (HasToolSupport, HasThinkingSupport)
PARSERS: dict[str, tuple[bool, bool]] = {
    "qwen3": (True, False),
    "qwen3-thinking": (True, True),
    "qwen3.5": (True, True),
    "ornith": (True, True),
    "qwen3-coder": (True, False),
    "qwen3-vl-instruct": (True, False),
    "qwen3-vl-thinking": (True, True),
    "ministral": (True, False),
    "passthrough": (False, False),
    "harmony": (True, True),
    "cogito": (True, True),
    "deepseek3": (True, True),
    "olmo3": (True, False),
    "olmo3-think": (False, True),
    "nemotron-3-nano": (True, True),
    "nemotron-3.5-nano": (True, True),
    "functiongemma": (True, False),
    "glm-4.7": (True, True),
    "gemma4": (True, True),
    "gemma4-no-thinking": (True, False),
    "glm-ocr": (True, False),
    "lfm2": (True, False),
    "lfm2-thinking": (True, True),
    "laguna": (True, True),
    "poolside-v1": (True, True),
    "cohere": (True, True),
    "glimmer": (True, True),
}
GEMMA4_RENDERERS = ("gemma4", "gemma4-small", "gemma4-large")
_TOOL_ROLE_MARKERS = (
    "tool_response",
    "tool_results",
    "role'] == 'tool'",
    'role\'] == "tool"',
    "role\"] == 'tool'",
    'role"] == "tool"',
    "message.role == 'tool'",
    'message.role == "tool"',
    "ipython",
)


@dataclass
class ModelFacts:
    """What ollama's GetModel reads for a model, from the bundle's layers."""

    config: dict[str, Any] = field(default_factory=dict)
    model: GGUFMeta | None = None  # the GGUF header of the last model layer (None: none, or not GGUF)
    has_model_layer: bool = False
    projectors: Sequence[GGUFMeta | None] = ()
    template: str | None = None  # template or legacy prompt layer text


def _add(caps: list[str], cap: str) -> None:
    if cap not in caps:
        caps.append(cap)


def chat_template_capabilities(chat_template: str) -> list[str]:
    caps: list[str] = []
    if not chat_template:
        return caps
    if "tools" in chat_template or "tool_call" in chat_template:
        _add(caps, TOOLS)
    if ("<think>" in chat_template and "</think>" in chat_template) or (
        ("content.split('</think>')" in chat_template or 'content.split("</think>")' in chat_template)
        and "reasoning_content" not in chat_template
        and "<SPECIAL_12>" not in chat_template
    ):
        _add(caps, THINKING)
    return caps


def _chat_round_trip(chat_template: str) -> bool:
    if TOOLS not in chat_template_capabilities(chat_template):
        return False
    calls = "tool_calls" in chat_template or "assistant_tool_call" in chat_template
    return calls and any(marker in chat_template for marker in _TOOL_ROLE_MARKERS)


@dataclass
class _Template:
    raw: str
    parsed: go_template.Parsed | None

    def capabilities(self) -> list[str]:
        """goTemplateCapabilities: nothing when the template does not parse."""
        if self.parsed is None:
            return []
        try:
            names = go_template.variables(self.parsed)
        except go_template.TemplateError:
            return []
        caps: list[str] = []
        if "tools" in names:
            _add(caps, TOOLS)
        if "suffix" in names:
            _add(caps, INSERT)
        opening, closing = go_template.thinking_tags(self.parsed)
        if opening and closing:
            _add(caps, THINKING)
        return caps

    def round_trip(self) -> bool:
        if self.parsed is None:
            return False
        try:
            names = go_template.variables(self.parsed)
        except go_template.TemplateError:
            return False
        if "tools" not in names or "toolcalls" not in names:
            return False
        return any(marker in self.raw for marker in ('eq .Role "tool"', "tool_response", "TOOL_RESULTS"))


def _parse_template(text: str) -> _Template:
    try:
        return _Template(text, go_template.parse(text))
    except go_template.TemplateError:
        return _Template(text, None)


def _prefer_chat_template(chat: str, chat_caps: list[str], tmpl: _Template, go_caps: list[str]) -> bool:
    """shouldPreferChatTemplate."""
    if len(chat_caps) > len(go_caps):
        return not tmpl.round_trip() or _chat_round_trip(chat)
    if set(chat_caps) != set(go_caps) or len(chat_caps) != len(go_caps) or TOOLS not in chat_caps:
        return False
    return _chat_round_trip(chat) and not tmpl.round_trip()


def _str(config: dict[str, Any], key: str) -> str:
    value = config.get(key)
    return value if isinstance(value, str) else ""


def capabilities(facts: ModelFacts, ollama_version: str | None = None) -> list[str]:
    """What ``Model.Capabilities()`` of the given ollama release returns (the newest rules when None)."""
    if ollama_version is not None and version_lt(ollama_version, LLAMA_SERVER_SINCE):
        return _capabilities_before_llama_server(facts, ollama_version)
    config = facts.config
    renderer, parser, family = _str(config, "renderer"), _str(config, "parser"), _str(config, "model_family")
    model_format = _str(config, "model_format")
    families = [f for f in config.get("model_families") or [] if isinstance(f, str)]
    is_gguf = model_format in ("", "gguf")
    safetensors = model_format == "safetensors"

    has_go_template = facts.template is not None
    tmpl = _parse_template(facts.template if facts.template is not None else DEFAULT_TEMPLATE)
    chat = facts.model.string("tokenizer.chat_template") if facts.model is not None and is_gguf else ""
    harmony = family in ("gptoss", "gpt-oss") and "<|start|>" in tmpl.raw and "<|end|>" in tmpl.raw
    prefer_chat = (
        has_go_template
        and chat != ""
        and renderer == ""
        and parser == ""
        and not harmony
        and _prefer_chat_template(chat, chat_template_capabilities(chat), tmpl, tmpl.capabilities())
    )
    use_go_template = has_go_template and not prefer_chat
    ollama_renders = renderer != "" or parser != "" or harmony or use_go_template

    caps: list[str] = []
    for cap in config.get("capabilities") or []:
        if isinstance(cap, str):
            _add(caps, cap)
    arch = ""
    if facts.has_model_layer and is_gguf and facts.model is not None:
        gguf = facts.model
        arch = gguf.architecture
        if not ollama_renders:
            for cap in chat_template_capabilities(chat):
                _add(caps, cap)
        _add(caps, EMBEDDING if gguf.has("pooling_type") else COMPLETION)
        if gguf.has("vision.block_count"):
            _add(caps, VISION)
        if gguf.has("audio.block_count"):
            _add(caps, AUDIO)
    if facts.projectors:
        _add(caps, VISION)
        for projector in facts.projectors:
            if projector is not None and _projector_audio(projector):
                _add(caps, AUDIO)
    if not (has_go_template and not use_go_template):
        for cap in tmpl.capabilities():
            _add(caps, cap)
    tools, thinking = PARSERS.get(parser, (False, False))
    if tools:
        _add(caps, TOOLS)
    if thinking:
        _add(caps, THINKING)
    if family in ("gptoss", "gpt-oss"):
        _add(caps, THINKING)

    nemotron = safetensors and (
        "nemotron-3-nano" in (parser, renderer) or family == "nemotron_h_omni" or "nemotron_h_omni" in families
    )
    gemma4_st = renderer in GEMMA4_RENDERERS and safetensors
    if (
        gemma4_st
        or (safetensors and renderer == "glimmer")
        or nemotron
        or "nemotron_h_omni" in (arch, family)
        or "nemotron_h_omni" in families
    ):
        caps = [c for c in caps if c != AUDIO]
    if gemma4_st or nemotron:
        caps = [c for c in caps if c != VISION]
    return caps


def _projector_audio(projector: GGUFMeta) -> bool:
    """projectorHasAudio and not projectorSuppressesAudioCapability."""
    has_audio = projector.get("has_audio_encoder") is True or any(
        key.endswith(".has_audio_encoder") and value is True for key, value in projector.values.items()
    )
    return has_audio and projector.string("vision.projector_type") != "gemma3nv"


def _capabilities_before_llama_server(facts: ModelFacts, ollama_version: str) -> list[str]:
    config = facts.config
    config_caps = [c for c in config.get("capabilities") or [] if isinstance(c, str)]
    if "image" in config_caps and version_lt(ollama_version, "0.15.0"):
        return ["image"]
    caps: list[str] = []
    if facts.has_model_layer:
        if facts.model is not None:
            caps.append(EMBEDDING if facts.model.has("pooling_type") else COMPLETION)
            if facts.model.has("vision.block_count"):
                caps.append(VISION)
    else:
        caps.extend(config_caps)
    tmpl = _parse_template(facts.template if facts.template is not None else DEFAULT_TEMPLATE)
    names: set[str] = set()
    if tmpl.parsed is not None:
        try:
            names = go_template.variables(tmpl.parsed)
        except go_template.TemplateError:
            names = set()
    tools, thinking = PARSERS.get(_str(config, "parser"), (False, False))
    if "tools" in names or tools:
        caps.append(TOOLS)
    if "suffix" in names:
        caps.append(INSERT)
    if facts.projectors:
        caps.append(VISION)
    if THINKING in caps:
        return caps
    opening, closing = go_template.thinking_tags(tmpl.parsed) if tmpl.parsed is not None else ("", "")
    if (opening and closing) or _str(config, "model_family") in ("gptoss", "gpt-oss") or thinking:
        caps.append(THINKING)
    return caps
