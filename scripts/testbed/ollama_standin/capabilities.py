"""Model capabilities as server/images.go computes them (Model.Capabilities, Model.CheckCapabilities).

Two generations, chosen by the baked-in version:
- v0.13.5 (< 0.30): the GGUF decides embedding (`<arch>.pooling_type`) or completion and vision
  (`<arch>.vision.block_count`); without a model file the config's `capabilities`; then the Go template: `.Tools`
  -> tools, `.Suffix` -> insert; a projector -> vision; `.Thinking` inside `range .Messages` between text tags
  (thinking.InferTags) or family gpt-oss -> thinking.
- v0.30 (llama-server, read at main fb30760): config `capabilities` first; the GGUF (chat template "tools" /
  "tool_call" -> tools, `<think>`..`</think>` -> thinking, unless ollama renders the chat itself), pooling ->
  embedding else completion, vision/audio block counts; projectors -> vision (+ audio for an audio encoder);
  the Go template when it is the selected one; family gpt-oss -> thinking; vision/audio filtered for the
  safetensors models that cannot serve them.
Not imitated: the built-in renderer/parser table (model/parsers), OLLAMA_GO_TEMPLATE.
"""

from __future__ import annotations

import re

from .model import Model
from .version import at_least

COMPLETION, EMBEDDING, VISION, AUDIO, TOOLS, INSERT, THINKING = (
    "completion",
    "embedding",
    "vision",
    "audio",
    "tools",
    "insert",
    "thinking",
)
KNOWN = (COMPLETION, TOOLS, INSERT, VISION, AUDIO, EMBEDDING, THINKING, "image")


def _add(capabilities: list[str], capability: str) -> None:
    if capability not in capabilities:
        capabilities.append(capability)


def template_vars(template: str) -> set[str]:
    """template.Template.Vars(): the lower-cased field names used in the Go template's actions."""
    names: set[str] = set()
    for action in re.findall(r"\{\{(.*?)\}\}", template, flags=re.DOTALL):
        names |= {name.lower() for name in re.findall(r"\.([A-Za-z_]\w*)", action)}
    return names


def infer_thinking_tags(template: str) -> bool:
    """thinking.InferTags: `.Thinking` inside a `range` over `.Messages`, with text tags around it."""
    ranged = re.search(r"\{\{-?\s*range\s[^}]*\.Messages", template)
    if not ranged:
        return False
    after = template[ranged.end() :]
    return bool(re.search(r"\S+\s*\{\{-?\s*\.Thinking\s*-?\}\}\s*\S+", after))


def _go_template_capabilities(template: str) -> list[str]:
    found: list[str] = []
    names = template_vars(template)
    if "tools" in names:
        _add(found, TOOLS)
    if "suffix" in names:
        _add(found, INSERT)
    if infer_thinking_tags(template):
        _add(found, THINKING)
    return found


def chat_template_capabilities(chat_template: str) -> list[str]:
    """chatTemplateCapabilities (v0.30): the GGUF's Jinja tokenizer.chat_template."""
    found: list[str] = []
    if not chat_template:
        return found
    if "tools" in chat_template or "tool_call" in chat_template:
        found.append(TOOLS)
    splits = "content.split('</think>')" in chat_template or 'content.split("</think>")' in chat_template
    if ("<think>" in chat_template and "</think>" in chat_template) or (
        splits and "reasoning_content" not in chat_template and "<SPECIAL_12>" not in chat_template
    ):
        found.append(THINKING)
    return found


def _chat_round_trip(chat_template: str) -> bool:
    if TOOLS not in chat_template_capabilities(chat_template):
        return False
    calls = "tool_calls" in chat_template or "assistant_tool_call" in chat_template
    markers = ("tool_response", "tool_results", "role'] == 'tool'", "role'] == \"tool\"", "role\"] == 'tool'",
               'role"] == "tool"', "message.role == 'tool'", 'message.role == "tool"', "ipython")  # fmt: skip
    return calls and any(marker in chat_template for marker in markers)


def _go_round_trip(template: str) -> bool:
    names = template_vars(template)
    if "tools" not in names or "toolcalls" not in names:
        return False
    return 'eq .Role "tool"' in template or "tool_response" in template or "TOOL_RESULTS" in template


def prefers_chat_template(model: Model) -> bool:
    """GetModel's PreferChatTemplate (shouldPreferChatTemplate), v0.30."""
    info = model.gguf() if model.is_gguf else None
    chat = str(info.kv.get("tokenizer.chat_template", "")) if info else ""
    if not (model.has_go_template and chat) or model.config.get("renderer") or model.config.get("parser"):
        return False
    if uses_harmony(model):
        return False
    chat_caps, go_caps = chat_template_capabilities(chat), _go_template_capabilities(model.template)
    if len(chat_caps) > len(go_caps):
        return not _go_round_trip(model.template) or _chat_round_trip(chat)
    if set(chat_caps) != set(go_caps) or TOOLS not in chat_caps:
        return False
    return _chat_round_trip(chat) and not _go_round_trip(model.template)


def uses_harmony(model: Model) -> bool:
    """shouldUseHarmony (server/routes.go)."""
    family = model.config.get("model_family", "")
    return family in ("gptoss", "gpt-oss") and "<|start|>" in model.template and "<|end|>" in model.template


def uses_go_template(model: Model) -> bool:
    """shouldUseGoTemplate (v0.30, OLLAMA_GO_TEMPLATE unset): a TEMPLATE layer wins unless the chat template is
    preferred."""
    return model.has_go_template and not prefers_chat_template(model)


def capabilities(model: Model) -> list[str]:
    """Model.Capabilities for the stand-in's version."""
    if at_least("0.30.0"):
        return _capabilities_llama_server(model)
    return _capabilities_v013(model)


def _capabilities_v013(model: Model) -> list[str]:
    found: list[str] = []
    info = model.gguf()
    if model.model_path is not None:
        if info is not None:
            found.append(EMBEDDING if info.arch_value("pooling_type") is not None else COMPLETION)
            if info.arch_value("vision.block_count") is not None:
                found.append(VISION)
    else:
        found += [str(item) for item in model.config.get("capabilities") or []]
    names = template_vars(model.template)
    if "tools" in names:
        found.append(TOOLS)
    if "suffix" in names:
        found.append(INSERT)
    if model.projectors:
        found.append(VISION)
    if THINKING not in found and (
        infer_thinking_tags(model.template) or model.config.get("model_family") in ("gptoss", "gpt-oss")
    ):
        found.append(THINKING)
    return found


def _capabilities_llama_server(model: Model) -> list[str]:
    found: list[str] = []
    for item in model.config.get("capabilities") or []:
        _add(found, str(item))
    arch = ""
    info = model.gguf() if model.model_path is not None and model.is_gguf else None
    if info is not None:
        arch = info.architecture
        rendered = bool(model.config.get("renderer") or model.config.get("parser")) or uses_harmony(model)
        if not rendered and not uses_go_template(model):
            for item in chat_template_capabilities(str(info.kv.get("tokenizer.chat_template", ""))):
                _add(found, item)
        _add(found, EMBEDDING if info.arch_value("pooling_type") is not None else COMPLETION)
        if info.arch_value("vision.block_count") is not None:
            _add(found, VISION)
        if info.arch_value("audio.block_count") is not None:
            _add(found, AUDIO)
    if model.projectors:
        _add(found, VISION)
        for path in model.projectors:
            projector = model.gguf(path)
            if projector is None:
                continue
            audio = bool(projector.kv.get("clip.has_audio_encoder")) or any(
                key.endswith(".has_audio_encoder") and bool(value) for key, value in projector.kv.items()
            )
            if audio and projector.arch_value("vision.projector_type") != "gemma3nv":
                _add(found, AUDIO)
    if model.has_go_template and uses_go_template(model):
        for item in _go_template_capabilities(model.template):
            _add(found, item)
    if model.config.get("model_family") in ("gptoss", "gpt-oss"):
        _add(found, THINKING)
    safetensors = model.is_mlx
    families = model.config.get("model_families") or []
    nemotron = safetensors and (
        "nemotron-3-nano" in (model.config.get("parser"), model.config.get("renderer"))
        or model.config.get("model_family") == "nemotron_h_omni"
        or "nemotron_h_omni" in families
    )
    gemma4 = safetensors and str(model.config.get("renderer", "")).startswith("gemma4")
    if (
        gemma4
        or nemotron
        or (safetensors and model.config.get("renderer") == "glimmer")
        or ("nemotron_h_omni" in (arch, model.config.get("model_family")) or "nemotron_h_omni" in families)
    ):
        found = [item for item in found if item != AUDIO]
    if gemma4 or nemotron:
        found = [item for item in found if item != VISION]
    return found


class CapabilityError(Exception):
    """CheckCapabilities' error: `does not support <missing...>` (errors.Join, one per line)."""

    def __init__(self, missing: list[str]) -> None:
        self.missing = missing
        super().__init__("does not support " + "\n".join(missing))


def check_capabilities(model: Model, *wanted: str) -> None:
    """Model.CheckCapabilities: raise CapabilityError naming every wanted capability the model lacks."""
    available = capabilities(model)
    missing = [capability for capability in wanted if capability not in available]
    if missing:
        raise CapabilityError(missing)
