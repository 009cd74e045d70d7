"""GGUF reader (fs/ggml, fs/gguf): metadata and tensor infos only; tensor data is never read."""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

GGUF_MAGIC = b"GGUF"
_GGUF_SCALARS = {
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
FILE_TYPES = [
    "F32", "F16", "Q4_0", "Q4_1", "Q4_1_F16", "Q4_2", "Q4_3", "Q8_0", "Q5_0", "Q5_1", "Q2_K", "Q3_K_S", "Q3_K_M",
    "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "IQ2_XXS", "IQ2_XS", "Q2_K_S", "IQ3_XS", "IQ3_XXS",
    "IQ1_S", "IQ4_NL", "IQ3_S", "IQ3_M", "IQ2_S", "IQ2_M", "IQ4_XS", "IQ1_M", "BF16",
]  # fmt: skip
TENSOR_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K",
    12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 30: "BF16",
}  # fmt: skip
ALWAYS_KEPT_ARRAYS = ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type")


class GGUFError(Exception):
    pass


@dataclass
class GGUFInfo:
    version: int
    kv: dict[str, Any]
    tensor_count: int
    parameter_count: int
    tensors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def architecture(self) -> str:
        return str(self.kv.get("general.architecture", ""))

    def arch_value(self, key: str, default: Any = None) -> Any:
        return self.kv.get(f"{self.architecture}.{key}", default)

    @property
    def file_type(self) -> str:
        value = self.kv.get("general.file_type", 0)
        if isinstance(value, int) and 0 < value < len(FILE_TYPES):
            return FILE_TYPES[value]
        return "unknown"


def is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(4) == GGUF_MAGIC
    except OSError:
        return False


def read_gguf(path: Path, keep_arrays: Iterable[str] = ALWAYS_KEPT_ARRAYS, all_arrays: bool = False) -> GGUFInfo:
    """Read the GGUF header, KV metadata and tensor infos. Arrays longer than 5 are kept only when named."""
    keep = set(keep_arrays)
    with path.open("rb") as raw:
        handle: BinaryIO = raw

        def take(size: int) -> bytes:
            data = handle.read(size)
            if len(data) != size:
                raise GGUFError("unexpected end of GGUF file")
            return data

        def scalar(kind: int) -> Any:
            fmt = _GGUF_SCALARS[kind]
            return struct.unpack(fmt, take(struct.calcsize(fmt)))[0]

        def string() -> str:
            (length,) = struct.unpack("<Q", take(8))
            return take(length).decode("utf-8", errors="replace")

        def value(kind: int, key: str) -> Any:
            if kind == 8:
                return string()
            if kind in _GGUF_SCALARS:
                return scalar(kind)
            if kind != 9:
                raise GGUFError(f"invalid GGUF value type {kind}")
            item_kind, count = struct.unpack("<IQ", take(12))
            if count <= 5 or all_arrays or key in keep:
                if item_kind in _GGUF_SCALARS and item_kind != 7:
                    fmt = _GGUF_SCALARS[item_kind]
                    return list(struct.unpack(f"<{count}{fmt[1]}", take(count * struct.calcsize(fmt))))
                return [value(item_kind, "") for _ in range(count)]
            if item_kind in _GGUF_SCALARS:  # skip without reading
                handle.seek(count * struct.calcsize(_GGUF_SCALARS[item_kind]), os.SEEK_CUR)
            else:
                for _ in range(count):
                    if item_kind == 8:
                        (length,) = struct.unpack("<Q", take(8))
                        handle.seek(length, os.SEEK_CUR)
                    else:
                        value(item_kind, "")
            return []

        if take(4) != GGUF_MAGIC:
            raise GGUFError("invalid file magic")
        (version,) = struct.unpack("<I", take(4))
        if version == 1:
            tensor_count, kv_count = struct.unpack("<II", take(8))
        elif version in (2, 3):
            tensor_count, kv_count = struct.unpack("<QQ", take(16))
        else:
            raise GGUFError(f"unsupported GGUF version {version}")
        kv: dict[str, Any] = {}
        for _ in range(kv_count):
            key = string()
            (kind,) = struct.unpack("<I", take(4))
            kv[key] = value(kind, key)
        tensors = []
        parameters = 0
        for _ in range(tensor_count):
            name = string()
            (dims,) = struct.unpack("<I", take(4))
            shape = list(struct.unpack(f"<{dims}Q", take(8 * dims)))
            ttype, _offset = struct.unpack("<IQ", take(12))
            tensors.append({"name": name, "type": TENSOR_TYPES.get(ttype, str(ttype)), "shape": shape})
            parameters += math.prod(shape)
    kv["general.parameter_count"] = parameters
    return GGUFInfo(version=version, kv=kv, tensor_count=tensor_count, parameter_count=parameters, tensors=tensors)
