"""Ollama models as registry layers, and the complete Modelfile that recreates each one with ``ollama create``.

Layer media types and the Modelfile grammar follow ollama's server/images.go and parser/parser.go.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import AirgapError, UnsupportedModelError, VerifyError
from .hashing import DIGEST_RE

_PREFIX = "application/vnd.ollama.image."
MODEL = _PREFIX + "model"
TEMPLATE = _PREFIX + "template"
PROMPT = _PREFIX + "prompt"  # legacy template layer: GetModel reads it as the TEMPLATE
SYSTEM = _PREFIX + "system"
PARAMS = _PREFIX + "params"
LICENSE = _PREFIX + "license"
MESSAGES = _PREFIX + "messages"
ADAPTER = _PREFIX + "adapter"
PROJECTOR = _PREFIX + "projector"
EMBED = _PREFIX + "embed"  # deprecated since 0.1.2; GetModel ignores it
TENSOR = _PREFIX + "tensor"  # safetensors/MLX models (v0.16.0), layers carry a name
JSON = _PREFIX + "json"
DRAFT = _PREFIX + "draft"  # speculative-decoding draft model (Modelfile DRAFT)
CONFIG = "application/vnd.docker.container.image.v1+json"
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
KNOWN_LAYERS = frozenset(
    {MODEL, TEMPLATE, PROMPT, SYSTEM, PARAMS, LICENSE, MESSAGES, ADAPTER, PROJECTOR, EMBED, TENSOR, JSON, DRAFT}
)
# Layers small enough to be read to write the Modelfile.
TEXT_LAYERS = frozenset({TEMPLATE, PROMPT, SYSTEM, PARAMS, LICENSE, MESSAGES})
MAX_TEXT_LAYER = 16 << 20


@dataclass(frozen=True)
class Layer:
    media_type: str
    digest: str
    size: int
    name: str = ""  # tensor/json layers carry their file name


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
    """Check an ollama manifest's shape; digests and sizes come from an untrusted upstream. Media types are checked
    later by :func:`check_layers`, once the config showed whether the model needs a newer ollama."""

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
        name = entry.get("name")
        return Layer(media, digest, size, name if isinstance(name, str) else "")

    if document.get("schemaVersion") != 2:
        raise VerifyError(f"{what}: manifest schemaVersion is {document.get('schemaVersion')!r}, expected 2")
    layers = document.get("layers")
    if layers is None:
        layers = []
    if not isinstance(layers, list):
        raise VerifyError(f"{what}: manifest layers is not a list")
    return ModelManifest(
        config=layer(document.get("config"), "config"),
        layers=tuple(layer(entry, f"layers[{i}]") for i, entry in enumerate(layers)),
    )


def check_layers(manifest: ModelManifest, what: str) -> None:
    """Refuse a layer type this bundler does not know (never drop one silently), and a manifest without weights."""
    for i, layer in enumerate(manifest.layers):
        if layer.media_type not in KNOWN_LAYERS:
            raise UnsupportedModelError(
                f"{what}: layer {i} has the unknown media type {layer.media_type!r} ({layer.digest[:19]}); "
                "this ollama-airgap cannot carry it"
            )
    if not manifest.of_type(MODEL) and not manifest.of_type(TENSOR):
        raise VerifyError(f"{what}: manifest has no {MODEL} or {TENSOR} layer: not an ollama model")


# --- Modelfile -----------------------------------------------------------------------------------------------


class RestoreOnly(AirgapError):
    """No Modelfile can carry this model; its message is the one-line reason (the model is restored instead)."""


@dataclass
class Modelfile:
    """The commands of a Modelfile, in the order ollama's ``Model.String()`` writes them (server/images.go):
    FROM model, ADAPTER, DRAFT, FROM projector (one extra FROM per projector), TEMPLATE, SYSTEM, RENDERER, PARSER,
    PARAMETER, LICENSE, MESSAGE."""

    from_: str = ""
    projectors: list[str] = field(default_factory=list)  # every FROM after the first
    adapters: list[str] = field(default_factory=list)
    draft: str | None = None
    template: str | None = None
    system: str | None = None
    renderer: str | None = None
    parser: str | None = None
    requires: str | None = None  # parsed from a user's Modelfile; Model.String() never writes it
    parameters: list[tuple[str, str]] = field(default_factory=list)
    licenses: list[str] = field(default_factory=list)
    messages: list[tuple[str, str]] = field(default_factory=list)

    def render(self, header: str = "") -> str:
        """The Modelfile text; :class:`RestoreOnly` when some text cannot be written in Modelfile syntax."""
        lines = [f"# {line}" for line in header.splitlines()]
        lines.append(f"FROM {_word(self.from_, 'FROM')}")
        lines.extend(f"ADAPTER {_word(a, 'ADAPTER')}" for a in self.adapters)
        if self.draft is not None:
            lines.append(f"DRAFT {_word(self.draft, 'DRAFT')}")
        lines.extend(f"FROM {_word(p, 'FROM')}" for p in self.projectors)
        if self.template is not None:
            lines.append(f"TEMPLATE {_block(self.template, 'TEMPLATE')}")
        if self.system is not None:
            lines.append(f"SYSTEM {_block(self.system, 'SYSTEM')}")
        if self.renderer is not None:
            lines.append(f"RENDERER {_word(self.renderer, 'RENDERER')}")
        if self.parser is not None:
            lines.append(f"PARSER {_word(self.parser, 'PARSER')}")
        if self.requires is not None:
            lines.append(f"REQUIRES {_word(self.requires, 'REQUIRES')}")
        lines.extend(f"PARAMETER {name} {_quote(value)}" for name, value in self.parameters)
        lines.extend(f"LICENSE {_block(text, 'LICENSE')}" for text in self.licenses)
        lines.extend(f"MESSAGE {role} {_block(content, 'MESSAGE')}" for role, content in self.messages)
        return "\n".join(lines) + "\n"

    def commands(self) -> set[str]:
        """The Modelfile commands this file uses (to check them against the pinned ollama's parser)."""
        used = {"FROM"}
        for command, present in (
            ("ADAPTER", self.adapters),
            ("DRAFT", self.draft is not None),
            ("TEMPLATE", self.template is not None),
            ("SYSTEM", self.system is not None),
            ("RENDERER", self.renderer is not None),
            ("PARSER", self.parser is not None),
            ("REQUIRES", self.requires is not None),
            ("PARAMETER", self.parameters),
            ("LICENSE", self.licenses),
            ("MESSAGE", self.messages),
        ):
            if present:
                used.add(command)
        return used


def _block(text: str, command: str) -> str:
    if '"""' in text or text.endswith('"'):
        raise RestoreOnly(f'{command} text contains """ or ends in ", which a Modelfile cannot carry; use restore')
    return f'"""{text}"""'


def _word(text: str, command: str) -> str:
    if not text or any(ch.isspace() for ch in text) or text.startswith('"'):
        raise RestoreOnly(f"{command} value {text[:40]!r} cannot be written as one Modelfile word; use restore")
    return text


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
    config: dict[str, Any] | None = None,
) -> Modelfile:
    """The complete Modelfile for a model, as ``ollama show --modelfile`` writes it: FROM its GGUF blob, ADAPTER,
    DRAFT, an extra FROM per projector, TEMPLATE (or the legacy prompt layer), SYSTEM, RENDERER and PARSER from the
    config, every PARAMETER, LICENSE and MESSAGE, so ``ollama create`` gives back what ``ollama pull`` would.

    Raises :class:`RestoreOnly` (one-line reason) for a model no Modelfile can carry: safetensors tensor layers,
    several model layers (split GGUF), several adapters or drafts, or text Modelfile syntax cannot quote."""
    if manifest.of_type(TENSOR) or manifest.of_type(JSON):
        raise RestoreOnly("safetensors model (tensor/json layers): no Modelfile command carries its tensors")
    models = manifest.of_type(MODEL)
    if len(models) > 1:
        raise RestoreOnly(
            f"{len(models)} model layers (split GGUF): ollama create joins split parts only by their "
            "*-NNNNN-of-NNNNN.gguf file names, which blob paths do not have"
        )
    if not models:
        raise RestoreOnly(f"no {MODEL} layer to name in FROM")
    if len(manifest.of_type(ADAPTER)) > 1:
        raise RestoreOnly("several adapter layers: ollama create keeps only the last ADAPTER line")
    if len(manifest.of_type(DRAFT)) > 1:
        raise RestoreOnly("several draft layers: a Modelfile names one DRAFT")
    modelfile = Modelfile(from_=from_path(models[0]))
    config = config or {}
    for key in ("renderer", "parser"):
        if isinstance(config.get(key), str) and config[key]:
            setattr(modelfile, key, config[key])

    def text(layer: Layer) -> str:
        if layer.size > MAX_TEXT_LAYER:
            raise VerifyError(f"{what}: {layer.media_type} layer {layer.digest} is {layer.size} bytes, too large")
        try:
            return read_layer(layer).decode("utf-8")
        except UnicodeDecodeError:
            raise RestoreOnly(f"{layer.media_type.rsplit('.', 1)[-1]} layer is not UTF-8 text") from None

    for layer in manifest.layers:
        if layer.media_type in (TEMPLATE, PROMPT):
            modelfile.template = text(layer)
        elif layer.media_type == SYSTEM:
            modelfile.system = text(layer)
        elif layer.media_type == LICENSE:
            modelfile.licenses.append(text(layer))
        elif layer.media_type == ADAPTER:
            modelfile.adapters.append(from_path(layer))
        elif layer.media_type == PROJECTOR:
            modelfile.projectors.append(from_path(layer))
        elif layer.media_type == DRAFT:
            modelfile.draft = from_path(layer)
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
    modelfile.render()  # RestoreOnly now, not later, when some text cannot be written
    return modelfile


def _json(text: str, what: str, layer: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise VerifyError(f"{what}: {layer} layer is not valid JSON") from None


# parser/parser.go isValidCommand (DRAFT since 0.23.1, REQUIRES since 0.14.0, RENDERER/PARSER since 0.12.0).
_COMMANDS = (
    "FROM", "ADAPTER", "DRAFT", "TEMPLATE", "SYSTEM", "RENDERER", "PARSER", "PARAMETER", "LICENSE", "MESSAGE",
    "REQUIRES",
)  # fmt: skip


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
    """Parse a Modelfile: a user's, or one :meth:`Modelfile.render` wrote (every FROM after the first is kept in
    ``projectors``)."""
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
                if modelfile.from_:
                    modelfile.projectors.append(value)
                else:
                    modelfile.from_ = value
            elif command == "ADAPTER":
                modelfile.adapters.append(value)
            elif command == "LICENSE":
                modelfile.licenses.append(value)
            else:
                setattr(modelfile, command.lower(), value)
    if not modelfile.from_:
        raise AirgapError(f"{source}: no FROM line")
    return modelfile
