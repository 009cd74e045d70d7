"""Ollama models as registry layers, and the complete Modelfile that recreates each one with ``ollama create``.

Layer media types and the Modelfile grammar follow ollama's server/images.go and parser/parser.go.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import AirgapError, VerifyError
from .hashing import DIGEST_RE

MODEL = "application/vnd.ollama.image.model"
TEMPLATE = "application/vnd.ollama.image.template"
SYSTEM = "application/vnd.ollama.image.system"
PARAMS = "application/vnd.ollama.image.params"
LICENSE = "application/vnd.ollama.image.license"
MESSAGES = "application/vnd.ollama.image.messages"
ADAPTER = "application/vnd.ollama.image.adapter"
PROJECTOR = "application/vnd.ollama.image.projector"
CONFIG = "application/vnd.docker.container.image.v1+json"
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
KNOWN_LAYERS = {MODEL, TEMPLATE, SYSTEM, PARAMS, LICENSE, MESSAGES, ADAPTER, PROJECTOR}
# Layers small enough to be read to write the Modelfile.
TEXT_LAYERS = {TEMPLATE, SYSTEM, PARAMS, LICENSE, MESSAGES}
MAX_TEXT_LAYER = 16 << 20


@dataclass(frozen=True)
class Layer:
    media_type: str
    digest: str
    size: int


@dataclass(frozen=True)
class ModelManifest:
    config: Layer
    layers: tuple[Layer, ...]

    @property
    def blobs(self) -> tuple[Layer, ...]:
        return (self.config, *self.layers)

    @property
    def size(self) -> int:
        return sum(b.size for b in self.blobs)

    def of_type(self, media_type: str) -> list[Layer]:
        return [layer for layer in self.layers if layer.media_type == media_type]


def parse_manifest(document: dict[str, Any], what: str) -> ModelManifest:
    """Check an ollama manifest's shape; digests and sizes come from an untrusted upstream."""

    def layer(entry: Any, key: str) -> Layer:
        if not isinstance(entry, dict):
            raise VerifyError(f"{what}: manifest {key} is not an object")
        digest, size, media = entry.get("digest"), entry.get("size"), entry.get("mediaType")
        if not isinstance(digest, str) or not DIGEST_RE.match(digest):
            raise VerifyError(f"{what}: manifest {key} has a bad digest {digest!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise VerifyError(f"{what}: manifest {key} has a bad size {size!r}")
        if not isinstance(media, str):
            raise VerifyError(f"{what}: manifest {key} has no mediaType")
        return Layer(media, digest, size)

    if document.get("schemaVersion") != 2:
        raise VerifyError(f"{what}: manifest schemaVersion is {document.get('schemaVersion')!r}, expected 2")
    layers = document.get("layers")
    if not isinstance(layers, list) or not layers:
        raise VerifyError(f"{what}: manifest has no layers")
    parsed = ModelManifest(
        config=layer(document.get("config"), "config"),
        layers=tuple(layer(entry, f"layers[{i}]") for i, entry in enumerate(layers)),
    )
    if not parsed.of_type(MODEL):
        raise VerifyError(f"{what}: manifest has no {MODEL} layer: not an ollama model")
    return parsed


# --- Modelfile -----------------------------------------------------------------------------------------------


@dataclass
class Modelfile:
    """The commands of a Modelfile, in the order ollama's parser keeps them."""

    from_: str = ""
    template: str | None = None
    system: str | None = None
    parameters: list[tuple[str, str]] = field(default_factory=list)
    licenses: list[str] = field(default_factory=list)
    messages: list[tuple[str, str]] = field(default_factory=list)
    adapters: list[str] = field(default_factory=list)

    def render(self, header: str = "") -> str:
        lines = [f"# {line}" for line in header.splitlines()]
        lines.append(f"FROM {self.from_}")
        lines.extend(f"ADAPTER {a}" for a in self.adapters)
        if self.template is not None:
            lines.append(f"TEMPLATE {_block(self.template, 'TEMPLATE')}")
        if self.system is not None:
            lines.append(f"SYSTEM {_block(self.system, 'SYSTEM')}")
        lines.extend(f"PARAMETER {name} {_quote(value)}" for name, value in self.parameters)
        lines.extend(f"LICENSE {_block(text, 'LICENSE')}" for text in self.licenses)
        lines.extend(f"MESSAGE {role} {_block(content, 'MESSAGE')}" for role, content in self.messages)
        return "\n".join(lines) + "\n"


def _block(text: str, command: str) -> str:
    if '"""' in text or text.endswith('"'):
        raise AirgapError(f'{command} text contains """ or ends in ", which a Modelfile cannot carry; use restore')
    return f'"""{text}"""'


def _quote(value: str) -> str:
    if value and not re.search(r'[\s"\\]', value):
        return value
    if '"' in value and '"""' not in value and "\n" in value:
        return f'"""{value}"""'
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_parameter(value: Any) -> str:
    """A params-layer JSON value as ollama prints it (Go's %v): 2048 not 2048.0, true not True."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parameters_from_json(params: dict[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name in sorted(params):
        value = params[name]
        for item in value if isinstance(value, list) else [value]:
            out.append((name, format_parameter(item)))
    return out


def modelfile_from_layers(
    manifest: ModelManifest,
    read_layer: Callable[[Layer], bytes],
    from_path: Callable[[Layer], str],
    what: str,
) -> Modelfile:
    """The complete Modelfile for a model: FROM its GGUF blob plus every TEMPLATE, SYSTEM, PARAMETER, LICENSE and
    MESSAGE its registry layers carry, so ``ollama create`` gives back what ``ollama pull`` would."""
    models = manifest.of_type(MODEL)
    if len(models) != 1:
        raise AirgapError(f"{what}: {len(models)} model layers; only single-GGUF models can be recreated")
    if manifest.of_type(PROJECTOR):
        raise AirgapError(f"{what}: vision projector layers cannot be expressed in a Modelfile; use restore")
    modelfile = Modelfile(from_=from_path(models[0]))

    def text(layer: Layer) -> str:
        if layer.size > MAX_TEXT_LAYER:
            raise VerifyError(f"{what}: {layer.media_type} layer {layer.digest} is {layer.size} bytes, too large")
        return read_layer(layer).decode("utf-8")

    for layer in manifest.layers:
        if layer.media_type == TEMPLATE:
            modelfile.template = text(layer)
        elif layer.media_type == SYSTEM:
            modelfile.system = text(layer)
        elif layer.media_type == LICENSE:
            modelfile.licenses.append(text(layer))
        elif layer.media_type == ADAPTER:
            modelfile.adapters.append(from_path(layer))
        elif layer.media_type == PARAMS:
            params = _json(text(layer), what, "params")
            if not isinstance(params, dict):
                raise VerifyError(f"{what}: params layer is not a JSON object")
            modelfile.parameters = parameters_from_json(params)
        elif layer.media_type == MESSAGES:
            messages = _json(text(layer), what, "messages")
            if not isinstance(messages, list):
                raise VerifyError(f"{what}: messages layer is not a JSON list")
            for message in messages:
                if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                    raise VerifyError(f"{what}: messages layer holds a message without a role")
                modelfile.messages.append((message["role"], str(message.get("content", ""))))
    return modelfile


def _json(text: str, what: str, layer: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise VerifyError(f"{what}: {layer} layer is not valid JSON") from None


_COMMANDS = ("FROM", "ADAPTER", "TEMPLATE", "SYSTEM", "PARAMETER", "LICENSE", "MESSAGE", "REQUIRES")


class _Reader:
    """A cursor over Modelfile text, reading words and values as ollama's parser does."""

    def __init__(self, text: str, source: str) -> None:
        self.text, self.source, self.pos = text, source, 0

    def fail(self, problem: str) -> AirgapError:
        line = self.text.count("\n", 0, self.pos) + 1
        return AirgapError(f"{self.source}: line {line}: {problem}")

    def skip_blank(self) -> None:
        while self.pos < len(self.text):
            if self.text[self.pos].isspace():
                self.pos += 1
            elif self.text[self.pos] == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                break

    def word(self) -> str:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1
        start = self.pos
        while self.pos < len(self.text) and not self.text[self.pos].isspace():
            self.pos += 1
        return self.text[start : self.pos]

    def value(self) -> str:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1
        text = self.text
        if text.startswith('"""', self.pos):
            close = text.find('"""', self.pos + 3)
            if close < 0:
                raise self.fail('unterminated """ block')
            value, self.pos = text[self.pos + 3 : close], close + 3
        elif text.startswith('"', self.pos):
            out, i = [], self.pos + 1
            while i < len(text) and text[i] != '"':
                if text[i] == "\\" and i + 1 < len(text):
                    i += 1
                out.append(text[i])
                i += 1
            if i >= len(text):
                raise self.fail("unterminated quoted string")
            value, self.pos = "".join(out), i + 1
        else:
            end = text.find("\n", self.pos)
            end = len(text) if end < 0 else end
            value, self.pos = text[self.pos : end].strip(), end
        rest_end = text.find("\n", self.pos)
        rest_end = len(text) if rest_end < 0 else rest_end
        if text[self.pos : rest_end].strip():
            raise self.fail(f"unexpected text after the value: {text[self.pos : rest_end].strip()[:40]!r}")
        self.pos = rest_end
        return value


def parse_modelfile(text: str, source: str) -> Modelfile:
    """Parse a user's Modelfile (the commands that matter for a bundle; REQUIRES is accepted and dropped)."""
    modelfile = Modelfile()
    reader = _Reader(text, source)
    while True:
        reader.skip_blank()
        if reader.pos >= len(text):
            break
        command = reader.word().upper()
        if command not in _COMMANDS:
            raise reader.fail(f"unknown Modelfile command {command!r}")
        if command == "PARAMETER":
            modelfile.parameters.append((reader.word().lower(), reader.value()))
        elif command == "MESSAGE":
            role = reader.word()
            modelfile.messages.append((role, reader.value()))
        else:
            value = reader.value()
            if command == "FROM":
                modelfile.from_ = value
            elif command == "ADAPTER":
                modelfile.adapters.append(value)
            elif command == "TEMPLATE":
                modelfile.template = value
            elif command == "SYSTEM":
                modelfile.system = value
            elif command == "LICENSE":
                modelfile.licenses.append(value)
    if not modelfile.from_:
        raise AirgapError(f"{source}: no FROM line")
    return modelfile
