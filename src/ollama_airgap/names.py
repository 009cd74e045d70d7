"""Ollama model names, parsed the way ollama's types/model/name.go does: [host/][namespace/]model[:tag]."""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

_HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,349}(:[0-9]{1,5})?$")
_PART_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$")
_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,79}$")


@dataclass(frozen=True, order=True)
class ModelName:
    host: str
    namespace: str
    model: str
    tag: str

    @property
    def repository(self) -> str:
        """The registry repository, e.g. ``library/llama3.2``."""
        return f"{self.namespace}/{self.model}"

    @property
    def short(self) -> str:
        """The name as ``ollama list`` shows it: host and library namespace left out when they are the defaults."""
        prefix = ""
        if self.host != DEFAULT_HOST:
            prefix = f"{self.host}/{self.namespace}/"
        elif self.namespace != DEFAULT_NAMESPACE:
            prefix = f"{self.namespace}/"
        return f"{prefix}{self.model}:{self.tag}"

    @property
    def manifest_path(self) -> str:
        """Relative path of the manifest in ollama's store: ``manifests/<host>/<ns>/<model>/<tag>``."""
        return f"manifests/{self.host}/{self.namespace}/{self.model}/{self.tag}"

    def __str__(self) -> str:
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"


def parse_model_name(text: str) -> ModelName:
    """Parse an ollama model name, filling in ollama's defaults. Raises ValueError saying what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("model name is empty")
    if text != text.strip() or any(c.isspace() for c in text):
        raise ValueError(f"model name {text!r} contains whitespace")
    if "@" in text:
        raise ValueError(f"model name {text!r}: digests are pinned by the lock file, not in the name")
    rest, tag = text, DEFAULT_TAG
    last = text.rsplit("/", 1)[-1]
    if ":" in last:
        rest, tag = text.rsplit(":", 1)
    parts = rest.split("/")
    if len(parts) == 1:
        host, namespace, model = DEFAULT_HOST, DEFAULT_NAMESPACE, parts[0]
    elif len(parts) == 2:
        host, (namespace, model) = DEFAULT_HOST, parts
    elif len(parts) == 3:
        host, namespace, model = parts
    else:
        raise ValueError(f"model name {text!r} has too many '/' parts (want [host/][namespace/]model[:tag])")
    if not _HOST_RE.match(host):
        raise ValueError(f"model name {text!r}: invalid host {host!r}")
    if not _NAMESPACE_RE.match(namespace):
        raise ValueError(f"model name {text!r}: invalid namespace {namespace!r}")
    if not _PART_RE.match(model):
        raise ValueError(f"model name {text!r}: invalid model {model!r}")
    if not _PART_RE.match(tag):
        raise ValueError(f"model name {text!r}: invalid tag {tag!r}")
    return ModelName(host, namespace, model, tag)
