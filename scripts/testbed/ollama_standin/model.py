"""server/images.go Model and GetModel."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .ggufread import GGUFError, GGUFInfo, read_gguf
from .modelfile import command_string
from .names import ModelName
from .store import (
    DEFAULT_TEMPLATE,
    MT_ADAPTER,
    MT_DRAFT,
    MT_JSON,
    MT_LICENSE,
    MT_MESSAGES,
    MT_MODEL,
    MT_PARAMS,
    MT_PROJECTOR,
    MT_PROMPT,
    MT_SYSTEM,
    MT_TEMPLATE,
    MT_TENSOR,
    Manifest,
    Store,
)
from .util import go_sprint, log


@dataclass
class Model:
    """server/images.go Model: what GetModel reads from a manifest's layers."""

    name: ModelName
    manifest: Manifest
    config: dict[str, Any]
    model_path: Path | None = None
    extra_model_paths: list[Path] = field(default_factory=list)  # further `model` layers (split GGUF shards)
    parent_model: str = ""
    template: str = DEFAULT_TEMPLATE
    has_go_template: bool = False  # a template (or legacy prompt) layer exists
    system: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    licenses: list[str] = field(default_factory=list)
    adapters: list[Path] = field(default_factory=list)
    projectors: list[Path] = field(default_factory=list)
    draft_path: Path | None = None
    tensor_layers: list[dict[str, Any]] = field(default_factory=list)  # `tensor` and `json` layers
    _gguf: dict[Path, GGUFInfo | None] = field(default_factory=dict, repr=False)

    @property
    def is_gguf(self) -> bool:
        """Model.isGGUF: config model_format empty or "gguf"."""
        return self.config.get("model_format", "") in ("", "gguf")

    @property
    def is_mlx(self) -> bool:
        """Model.IsMLX: a safetensors (tensor-layer) model, run by the MLX runner."""
        return self.config.get("model_format", "") == "safetensors"

    @property
    def is_remote(self) -> bool:
        return bool(self.config.get("remote_host")) and bool(self.config.get("remote_model"))

    def gguf(self, path: Path | None = None) -> GGUFInfo | None:
        """The GGUF metadata of the model layer (or `path`), read once; None when unreadable."""
        path = path or self.model_path
        if path is None:
            return None
        if path not in self._gguf:
            try:
                self._gguf[path] = read_gguf(path, keep_arrays=())
            except (GGUFError, OSError, struct.error) as err:
                log("ERROR", "couldn't open model file", source="images.go", error=str(err))
                self._gguf[path] = None
        return self._gguf[path]

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": self.parent_model,
            "format": self.config.get("model_format", ""),
            "family": self.config.get("model_family", ""),
            "families": self.config.get("model_families"),
            "parameter_size": self.config.get("model_type", ""),
            "quantization_level": self.config.get("file_type", ""),
        }

    def modelfile_body(self) -> str:
        """Model.String(): the Modelfile commands rendered by parser.Command.String.

        Projectors are extra FROM lines (as ollama writes them), the draft a DRAFT line (v0.30); split shards
        beyond the first are extra FROM lines too (the stand-in's own choice, so the Modelfile re-creates them).
        """
        commands: list[tuple[str, str]] = [("model", str(self.model_path or ""))]
        commands += [("model", str(path)) for path in self.extra_model_paths]
        commands += [("adapter", str(path)) for path in self.adapters]
        if self.draft_path is not None:
            commands.append(("draft", str(self.draft_path)))
        commands += [("model", str(path)) for path in self.projectors]
        commands.append(("template", self.template))
        if self.system:
            commands.append(("system", self.system))
        for key in ("renderer", "parser"):
            if self.config.get(key):
                commands.append((key, self.config[key]))
        for key, value in sorted(self.options.items()):
            for item in value if isinstance(value, list) else [value]:
                commands.append((key, go_sprint(item)))
        commands += [("license", text) for text in self.licenses]
        commands += [("message", f"{m.get('role', '')}: {m.get('content', '')}") for m in self.messages]
        return "".join(command_string(name, args) + "\n" for name, args in commands)


def get_model(store: Store, manifest: Manifest) -> Model:
    """GetModel: the layers by media type. Several `model` layers (a split GGUF) keep the first shard
    (split.no 0, else the first layer) as the model path and the others as extra model paths."""
    model = Model(name=manifest.name, manifest=manifest, config=store.read_config(manifest))
    model_layers: list[tuple[Path, str]] = []
    for layer in manifest.layers:
        path = store.blob_path(layer["digest"])
        media_type = layer.get("mediaType", "")
        if media_type == MT_MODEL:
            model_layers.append((path, layer.get("from", "")))
        elif media_type == MT_DRAFT:
            model.draft_path = path
        elif media_type == MT_ADAPTER:
            model.adapters.append(path)
        elif media_type == MT_PROJECTOR:
            model.projectors.append(path)
        elif media_type in (MT_TEMPLATE, MT_PROMPT):
            model.template = path.read_text(encoding="utf-8")
            model.has_go_template = True
        elif media_type == MT_SYSTEM:
            model.system = path.read_text(encoding="utf-8")
        elif media_type == MT_PARAMS:
            model.options = json.loads(path.read_bytes())
        elif media_type == MT_MESSAGES:
            model.messages = json.loads(path.read_bytes())
        elif media_type == MT_LICENSE:
            model.licenses.append(path.read_text(encoding="utf-8"))
        elif media_type in (MT_TENSOR, MT_JSON):
            model.tensor_layers.append(layer)
    if model_layers:
        first = 0
        if len(model_layers) > 1 and model.is_gguf:
            for index, (path, _) in enumerate(model_layers):
                info = model.gguf(path)
                if info is not None and info.kv.get("split.no") == 0:
                    first = index
                    break
        model.model_path, model.parent_model = model_layers[first]
        model.extra_model_paths = [path for index, (path, _) in enumerate(model_layers) if index != first]
    return model
