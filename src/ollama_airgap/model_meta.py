"""What bundle.yaml says about a model's behaviour: its capabilities (as ollama computes them) and embedding length,
read from the GGUF headers of its cached blobs (only the headers; see :mod:`.gguf_meta`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .capabilities import ModelFacts, capabilities
from .gguf_meta import GGUFError, GGUFMeta, read_gguf_meta
from .ollama_model import MAX_TEXT_LAYER, MODEL, PROJECTOR, PROMPT, TEMPLATE, ModelManifest


def _header(path: Path) -> GGUFMeta | None:
    """ollama logs and carries on when a model file does not open as GGUF; so does this."""
    try:
        return read_gguf_meta(path)
    except (GGUFError, OSError):
        return None


def model_facts(manifest: ModelManifest, config: dict[str, Any], path_of: Callable[[str], Path]) -> ModelFacts:
    """The inputs of ollama's capability rules, as GetModel (server/images.go) gathers them from the layers: the last
    model layer is the model, the last template/prompt layer the template, every projector counts."""
    models = manifest.of_type(MODEL)
    template = None
    for layer in manifest.layers:
        if layer.media_type in (TEMPLATE, PROMPT) and layer.size <= MAX_TEXT_LAYER:
            template = path_of(layer.digest).read_bytes().decode("utf-8", errors="replace")
    return ModelFacts(
        config=config,
        model=_header(path_of(models[-1].digest)) if models else None,
        has_model_layer=bool(models),
        projectors=[_header(path_of(layer.digest)) for layer in manifest.of_type(PROJECTOR)],
        template=template,
    )


def embedding_length(facts: ModelFacts, first_model: GGUFMeta | None, config: dict[str, Any]) -> int:
    """``<arch>.embedding_length`` of the model GGUF (the first split part carries the metadata when the last does
    not), else the config's ``embedding_length`` (tensor and remote models); 0 when unknown."""
    for meta in (facts.model, first_model):
        if meta is not None and meta.integer("embedding_length") > 0:
            return meta.integer("embedding_length")
    value = config.get("embedding_length")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def model_facts_meta(
    manifest: ModelManifest,
    config: dict[str, Any],
    path_of: Callable[[str], Path],
    ollama_version: str | None = None,
) -> dict[str, Any]:
    """bundle.yaml's ``capabilities`` (as the pinned ollama computes them) and ``embedding_length`` for a model
    whose blobs are in the cache."""
    facts = model_facts(manifest, config, path_of)
    models = manifest.of_type(MODEL)
    first = _header(path_of(models[0].digest)) if len(models) > 1 else None
    return {
        "capabilities": capabilities(facts, ollama_version),
        "embedding_length": embedding_length(facts, first, config),
    }
