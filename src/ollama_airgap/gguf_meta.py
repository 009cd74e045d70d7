"""A small streaming reader of a GGUF file's key/value header: the metadata ollama looks at, never the tensors.

Layout (ggml's GGUF spec, read as ollama's fs/gguf does): magic ``GGUF``, version (2 or 3), tensor count and KV count
(uint64), then each KV as key string (uint64 length + bytes), value type (uint32) and value. Only the header is read;
big arrays (the tokenizer's vocabulary) are skipped without being kept, and every length is bounded like ollama's
reader (strings 16 MiB, arrays 64 Mi elements), so a hostile or truncated blob ends in :class:`GGUFError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .errors import VerifyError

MAX_STRING = 16 << 20
MAX_ARRAY = 64 << 20
MAX_KV = 1 << 20
KEEP_ARRAY = 256  # arrays up to this many elements are kept as lists; longer ones as ArrayInfo

_SCALARS: dict[int, str] = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9


class GGUFError(VerifyError):
    """The file is not a GGUF file, or its header is truncated or out of bounds."""


@dataclass(frozen=True)
class ArrayInfo:
    """A long array that was skipped: its element type and length."""

    item_type: int
    count: int


@dataclass(frozen=True)
class GGUFMeta:
    version: int
    tensor_count: int
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def architecture(self) -> str:
        arch = self.values.get("general.architecture")
        return arch if isinstance(arch, str) else ""

    def key(self, key: str) -> str:
        """The full key as ollama's ``File.KeyValue`` resolves it: prefixed with the architecture unless it is a
        ``general.`` or ``tokenizer.`` key."""
        if key.startswith(("general.", "tokenizer.")):
            return key
        return f"{self.architecture}.{key}"

    def has(self, key: str) -> bool:
        return self.key(key) in self.values

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(self.key(key), default)

    def string(self, key: str) -> str:
        value = self.get(key)
        return value if isinstance(value, str) else ""

    def integer(self, key: str) -> int:
        value = self.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0


class _Reader:
    def __init__(self, handle: BinaryIO, what: str) -> None:
        self.handle, self.what = handle, what

    def fail(self, problem: str) -> GGUFError:
        return GGUFError(f"{self.what}: {problem}")

    def exact(self, n: int) -> bytes:
        data = self.handle.read(n)
        if len(data) != n:
            raise self.fail("GGUF header is truncated")
        return data

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.exact(struct.calcsize(fmt)))[0]

    def skip(self, n: int) -> None:
        self.handle.seek(n, 1)

    def string(self, keep: bool = True) -> str:
        n = self.unpack("<Q")
        if n > MAX_STRING:
            raise self.fail(f"GGUF string of {n} bytes is longer than {MAX_STRING}")
        if not keep:
            self.skip(n)
            return ""
        return self.exact(n).decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item, count = self.unpack("<I"), self.unpack("<Q")
            if count > MAX_ARRAY:
                raise self.fail(f"GGUF array of {count} elements is longer than {MAX_ARRAY}")
            if item == _ARRAY:
                raise self.fail("nested GGUF arrays are not supported")
            if count <= KEEP_ARRAY:
                return [self.value(item) for _ in range(count)]
            if item == _STRING:
                for _ in range(count):
                    self.string(keep=False)
            elif item in _SCALARS:
                self.skip(count * struct.calcsize(_SCALARS[item]))
            else:
                raise self.fail(f"unknown GGUF array element type {item}")
            return ArrayInfo(item, count)
        raise self.fail(f"unknown GGUF value type {kind}")


def read_gguf_meta(path: Path, what: str | None = None) -> GGUFMeta:
    """The key/value header of the GGUF file at ``path`` (the tensors are not read)."""
    with open(path, "rb") as handle:
        return read_gguf_header(handle, what or str(path))


def read_gguf_header(handle: BinaryIO, what: str) -> GGUFMeta:
    reader = _Reader(handle, what)
    if handle.read(4) != b"GGUF":
        raise reader.fail("not a GGUF file")
    version = reader.unpack("<I")
    if version not in (2, 3):
        raise reader.fail(f"unsupported GGUF version {version}")
    tensors, count = reader.unpack("<Q"), reader.unpack("<Q")
    if count > MAX_KV:
        raise reader.fail(f"GGUF header claims {count} keys")
    values: dict[str, Any] = {}
    for _ in range(count):
        key = reader.string()
        values[key] = reader.value(reader.unpack("<I"))
    return GGUFMeta(version, tensors, values)
