"""server/images.go Model and GetModel."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .modelfile import command_string
from .names import ModelName
from .store import (
    DEFAULT_TEMPLATE,
    MT_ADAPTER,
    MT_LICENSE,
    MT_MESSAGES,
    MT_MODEL,
    MT_PARAMS,
    MT_PROJECTOR,
    MT_SYSTEM,
    MT_TEMPLATE,
    Manifest,
    Store,
)
from .util import go_sprint


@dataclass
class Model:
    """server/images.go Model: what GetModel reads from a manifest's layers."""

    name: ModelName
    manifest: Manifest
    config: dict[str, Any]
    model_path: Path | None = None
    parent_model: str = ""
    template: str = DEFAULT_TEMPLATE
    system: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    licenses: list[str] = field(default_factory=list)
    adapters: list[Path] = field(default_factory=list)
    projectors: list[Path] = field(default_factory=list)

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
        """Model.String(): the Modelfile commands rendered by parser.Command.String."""
        commands: list[tuple[str, str]] = [("model", str(self.model_path or ""))]
        commands += [("adapter", str(path)) for path in self.adapters]
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
    """GetModel."""
    model = Model(name=manifest.name, manifest=manifest, config=store.read_config(manifest))
    for layer in manifest.layers:
        path = store.blob_path(layer["digest"])
        media_type = layer.get("mediaType", "")
        if media_type == MT_MODEL:
            model.model_path = path
            model.parent_model = layer.get("from", "")
        elif media_type == MT_ADAPTER:
            model.adapters.append(path)
        elif media_type == MT_PROJECTOR:
            model.projectors.append(path)
        elif media_type in (MT_TEMPLATE, "application/vnd.ollama.image.prompt"):
            model.template = path.read_text(encoding="utf-8")
        elif media_type == MT_SYSTEM:
            model.system = path.read_text(encoding="utf-8")
        elif media_type == MT_PARAMS:
            model.options = json.loads(path.read_bytes())
        elif media_type == MT_MESSAGES:
            model.messages = json.loads(path.read_bytes())
        elif media_type == MT_LICENSE:
            model.licenses.append(path.read_text(encoding="utf-8"))
    return model
