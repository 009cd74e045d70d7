"""The streaming GGUF header reader against files written by the `gguf` library (llama.cpp's own writer)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader, GGUFWriter

from ollama_airgap.gguf_meta import MAX_STRING, ArrayInfo, GGUFError, read_gguf_meta


def write(path: Path, arch: str = "llama", tensor_mib: int = 0, **extra: object) -> Path:
    writer = GGUFWriter(path, arch)
    writer.add_name("tiny")
    writer.add_embedding_length(64)
    writer.add_context_length(2048)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")
    writer.add_token_list([f"tok{i}" for i in range(1000)])
    writer.add_token_scores([0.5] * 1000)
    writer.add_array(f"{arch}.small", [1, 2, 3])
    writer.add_bool(f"{arch}.flag", True)
    writer.add_uint64(f"{arch}.big", 1 << 40)
    writer.add_int32(f"{arch}.negative", -7)
    writer.add_float64(f"{arch}.precise", 0.125)
    for key, value in extra.items():
        writer.add_uint32(f"{arch}.{key}", int(value))  # type: ignore[call-overload]
    rows = max(1, tensor_mib * 1024 * 1024 // (64 * 4))
    writer.add_tensor("token_embd.weight", np.zeros((rows, 64), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_reads_what_gguf_wrote(tmp_path: Path) -> None:
    path = write(tmp_path / "m.gguf", pooling_type=1)
    meta = read_gguf_meta(path)
    reference = GGUFReader(path)
    assert meta.version == 3
    assert meta.tensor_count == len(reference.tensors) == 1
    assert set(meta.values) == set(reference.fields) - {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count"}
    assert meta.architecture == "llama"
    assert meta.integer("embedding_length") == 64  # arch-prefixed as ollama's KeyValue does
    assert meta.get("general.name") == "tiny"
    assert meta.string("tokenizer.chat_template").startswith("{% for m")
    assert meta.has("pooling_type") and not meta.has("vision.block_count")
    assert meta.get("small") == [1, 2, 3]
    assert meta.get("flag") is True and meta.get("big") == 1 << 40 and meta.get("negative") == -7
    assert meta.get("precise") == 0.125
    assert meta.get("attention.layer_norm_rms_epsilon") == pytest.approx(1e-5)  # float32
    assert meta.values["tokenizer.ggml.tokens"] == ArrayInfo(8, 1000)  # long arrays skipped, not kept
    assert meta.values["tokenizer.ggml.scores"] == ArrayInfo(6, 1000)


def test_reads_only_the_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "big.gguf", tensor_mib=8)
    size = path.stat().st_size
    read = 0
    real_open = open

    class Counting:
        def __init__(self, handle):  # type: ignore[no-untyped-def]
            self.handle = handle

        def read(self, n: int = -1) -> bytes:
            nonlocal read
            data = self.handle.read(n)
            read += len(data)
            return data

        def __getattr__(self, name):  # type: ignore[no-untyped-def]
            return getattr(self.handle, name)

        def __enter__(self):  # type: ignore[no-untyped-def]
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

    monkeypatch.setattr("builtins.open", lambda *a, **k: Counting(real_open(*a, **k)))
    meta = read_gguf_meta(path)
    assert meta.architecture == "llama"
    assert size > 8 << 20 and read < 64 << 10, (size, read)


@pytest.mark.parametrize(
    "data, problem",
    [
        (b"GGML" + b"\0" * 32, "not a GGUF file"),
        (b"GGUF" + struct.pack("<I", 1) + b"\0" * 16, "unsupported GGUF version 1"),
        (b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + struct.pack("<Q", 4) + b"ab", "truncated"),
        (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", MAX_STRING + 1), "longer than"),
        (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"k" + struct.pack("<I", 99), "type 99"),
        (b"GGUF" + struct.pack("<IQQ", 3, 0, 1 << 40), "claims"),
    ],
)
def test_bad_headers_are_one_line_errors(tmp_path: Path, data: bytes, problem: str) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    with pytest.raises(GGUFError, match=problem) as info:
        read_gguf_meta(path, "blob sha256:abc")
    assert str(info.value).startswith("blob sha256:abc: ") and "\n" not in str(info.value)


def test_truncated_real_file(tmp_path: Path) -> None:
    full = write(tmp_path / "m.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(full[:300])
    with pytest.raises(GGUFError, match="truncated"):
        read_gguf_meta(cut)
