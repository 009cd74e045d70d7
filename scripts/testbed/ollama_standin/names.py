"""types/model/name.go: model names."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
MISSING_PART = "!MISSING!"


@dataclass(frozen=True)
class ModelName:
    host: str = ""
    namespace: str = ""
    model: str = ""
    tag: str = ""

    def __str__(self) -> str:
        text = "".join(part + "/" for part in (self.host, self.namespace) if part) + self.model
        return text + (f":{self.tag}" if self.tag else "")

    def is_valid(self) -> bool:
        kinds = ("host", "namespace", "model", "tag")
        return all(_valid_name_part(kind, part) for kind, part in zip(kinds, self.parts(), strict=True))

    def parts(self) -> tuple[str, str, str, str]:
        return (self.host, self.namespace, self.model, self.tag)

    def display_shortest(self) -> str:
        if self.host.lower() != DEFAULT_HOST:
            prefix = f"{self.host}/{self.namespace}/"
        elif self.namespace.lower() != DEFAULT_NAMESPACE:
            prefix = f"{self.namespace}/"
        else:
            prefix = ""
        return f"{prefix}{self.model}:{self.tag}"

    def equal_fold(self, other: ModelName) -> bool:
        return [p.lower() for p in self.parts()] == [p.lower() for p in other.parts()]


def _cut_promised(text: str, sep: str) -> tuple[str, str, bool]:
    index = text.rfind(sep)
    if index < 0:
        return text, "", False
    return (text[:index] or MISSING_PART), (text[index + len(sep) :] or MISSING_PART), True


def parse_name_bare(text: str) -> ModelName:
    tag = namespace = host = ""
    if text.rfind(":") > text.rfind("/"):
        text, tag, _ = _cut_promised(text, ":")
    text, model, promised = _cut_promised(text, "/")
    if not promised:
        return ModelName(model=text, tag=tag)
    text, namespace, promised = _cut_promised(text, "/")
    if not promised:
        return ModelName(namespace=text, model=model, tag=tag)
    host = text.split("://", 1)[1] if "://" in text else text
    return ModelName(host=host, namespace=namespace, model=model, tag=tag)


def parse_name(text: str) -> ModelName:
    """model.ParseName: fill in registry.ollama.ai / library / latest."""
    bare = parse_name_bare(text)
    return ModelName(
        host=bare.host or DEFAULT_HOST,
        namespace=bare.namespace or DEFAULT_NAMESPACE,
        model=bare.model,
        tag=bare.tag or DEFAULT_TAG,
    )


def _valid_name_part(kind: str, part: str) -> bool:
    if not 1 <= len(part) <= (350 if kind == "host" else 80):
        return False
    for index, char in enumerate(part):
        alnum = char.isascii() and (char.isalnum() or char == "_")
        if index == 0:
            if not alnum:
                return False
        elif char in "_-":
            continue
        elif char == ".":
            if kind == "namespace":
                return False
        elif char == ":":
            if kind != "host":
                return False
        elif not alnum:
            return False
    return True
