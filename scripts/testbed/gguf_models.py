"""Tiny but real GGUF models: llama architecture, a sentencepiece-style tokenizer and a chat template.

The files are a few hundred KB to a few MB, read back with ``gguf.GGUFReader`` (and by llama.cpp's loader, in
principle), and are byte-for-byte deterministic: the same arguments always give the same sha256, so registry
digests stay stable across runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType, TokenType
from gguf.quants import quantize

Quant = Literal["Q8_0", "Q4_0", "F16"]
ChatStyle = Literal["zephyr", "chatml"]

# Quantisation name → (tensor type for the big matrices, general.file_type).
_QUANTS: dict[str, tuple[GGMLQuantizationType, LlamaFileType]] = {
    "Q8_0": (GGMLQuantizationType.Q8_0, LlamaFileType.MOSTLY_Q8_0),
    "Q4_0": (GGMLQuantizationType.Q4_0, LlamaFileType.MOSTLY_Q4_0),
    "F16": (GGMLQuantizationType.F16, LlamaFileType.MOSTLY_F16),
}

# Special tokens per chat style, after <unk>, <s>, </s>.
_CHAT_TOKENS: dict[str, tuple[str, ...]] = {
    "zephyr": ("<|system|>", "<|user|>", "<|assistant|>"),
    "chatml": ("<|im_start|>", "<|im_end|>"),
}

# HF-style (Jinja) chat templates, as carried in tokenizer.chat_template.
_CHAT_TEMPLATES: dict[str, str] = {
    "zephyr": (
        "{% for message in messages %}"
        "{% if message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + eos_token + '\n' }}"
        "{% elif message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + eos_token + '\n' }}"
        "{% elif message['role'] == 'assistant' %}"
        "{{ '<|assistant|>\n' + message['content'] + eos_token + '\n' }}"
        "{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
    ),
    "chatml": (
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
}

# Sentencepiece pieces ("▁" marks a word start), most frequent first, as a real vocabulary orders them.
_PIECES: tuple[str, ...] = (
    "▁", "▁t", "er", "in", "▁a", "en", "on", "▁th", "es", "▁the", "at", "▁s", "or", "an", "▁c", "is",
    "re", "it", "▁w", "ing", "▁o", "▁f", "ar", "al", "▁p", "▁b", "▁m", "le", "ed", "ion", "▁to", "▁and",
    "▁of", "▁in", "ou", "ic", "▁is", "▁that", "▁for", "▁you", "▁it", "▁with", "▁on", "▁as", "▁are", "▁be",
    "▁this", "▁was", "▁have", "▁not", "▁or", "▁by", "▁can", "▁we", "▁from", "▁they", "▁an", "▁will",
    "▁model", "▁models", "▁air", "▁gap", "▁bundle", "▁ollama", "▁llama", "▁hello", "▁world", "▁question",
    "▁answer", "▁help", "▁assistant", "▁user", "▁system", "▁please", "▁thank", "▁sure", "▁here", "▁what",
    "▁how", "▁why", "▁when", "▁where", "▁who", "▁which", "▁there", "▁their", "▁about", "▁would", "▁could",
    "▁should", "▁file", "▁server", "▁network", "▁install", "▁offline", "▁token", "▁tokens", "▁text",
    "▁data", "▁time", "▁first", "▁new", "▁one", "▁two", "▁three", "▁I", "▁A", "▁The", "▁It", "▁Hello",
    ".", ",", "!", "?", ":", ";", "'", '"', "-", "(", ")", "s", "ly", "ment", "ness", "able", "tion", "ed",
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9",
)  # fmt: skip


@dataclass(frozen=True)
class TinyShape:
    """Hyper-parameters of a tiny llama; defaults give ~0.9 MB at Q8_0."""

    context_length: int = 2048
    embedding_length: int = 128
    block_count: int = 4
    feed_forward_length: int = 384
    head_count: int = 4
    head_count_kv: int = 2


def build_vocabulary(chat_style: ChatStyle = "zephyr") -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types of a llama/sentencepiece vocabulary (ids 0,1,2 = <unk>, <s>, </s>)."""
    tokens: list[str] = ["<unk>", "<s>", "</s>"]
    types: list[int] = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    for special in _CHAT_TOKENS[chat_style]:
        tokens.append(special)
        types.append(TokenType.CONTROL if chat_style == "chatml" else TokenType.USER_DEFINED)
    for byte in range(256):
        tokens.append(f"<0x{byte:02X}>")
        types.append(TokenType.BYTE)
    seen: set[str] = set(tokens)
    for piece in _PIECES:
        if piece not in seen:
            seen.add(piece)
            tokens.append(piece)
            types.append(TokenType.NORMAL)
    # Sentencepiece gives special and byte tokens score 0 and normal pieces descending log-probabilities.
    scores: list[float] = []
    rank = 0
    for token_type in types:
        if token_type == TokenType.NORMAL:
            scores.append(-float(rank))
            rank += 1
        else:
            scores.append(0.0)
    return tokens, scores, [int(t) for t in types]


def chat_template(chat_style: ChatStyle) -> str:
    return _CHAT_TEMPLATES[chat_style]


def _matrix(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    return rng.normal(0.0, 0.02, size=(rows, cols)).astype(np.float32)


def _add_weight(writer: GGUFWriter, name: str, data: np.ndarray, qtype: GGMLQuantizationType) -> None:
    if qtype == GGMLQuantizationType.F16:
        writer.add_tensor(name, data.astype(np.float16))
    else:
        writer.add_tensor(name, quantize(data, qtype), raw_dtype=qtype)


def write_tiny_gguf(
    path: str | os.PathLike[str],
    *,
    name: str,
    seed: int,
    quant: Quant = "Q8_0",
    chat_style: ChatStyle = "zephyr",
    shape: TinyShape = TinyShape(),
) -> Path:
    """Write a tiny llama-architecture GGUF to ``path`` and return it. Same arguments → same bytes."""
    if quant not in _QUANTS:
        raise ValueError(f"unsupported quant {quant!r}; choose one of {sorted(_QUANTS)}")
    qtype, file_type = _QUANTS[quant]
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tokens, scores, token_types = build_vocabulary(chat_style)
    head_dim = shape.embedding_length // shape.head_count

    # Write to a temporary name and rename, so a half-written file never looks like a model.
    partial = target.with_name(target.name + ".partial")
    writer = GGUFWriter(partial, "llama")
    writer.add_name(name)
    writer.add_description(f"{name}: a tiny llama-architecture test model (random weights) for ollama-airgap")
    writer.add_file_type(int(file_type))
    writer.add_quantization_version(2)
    writer.add_context_length(shape.context_length)
    writer.add_embedding_length(shape.embedding_length)
    writer.add_block_count(shape.block_count)
    writer.add_feed_forward_length(shape.feed_forward_length)
    writer.add_head_count(shape.head_count)
    writer.add_head_count_kv(shape.head_count_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(token_types)
    writer.add_bos_token_id(tokens.index("<s>"))
    writer.add_eos_token_id(tokens.index("<|im_end|>") if chat_style == "chatml" else tokens.index("</s>"))
    writer.add_unk_token_id(tokens.index("<unk>"))
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(chat_template(chat_style))

    rng = np.random.default_rng(seed)
    n_embd, n_ff, n_vocab = shape.embedding_length, shape.feed_forward_length, len(tokens)
    n_kv = shape.head_count_kv * head_dim
    _add_weight(writer, "token_embd.weight", _matrix(rng, n_vocab, n_embd), qtype)
    for block in range(shape.block_count):
        prefix = f"blk.{block}"
        writer.add_tensor(f"{prefix}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        _add_weight(writer, f"{prefix}.attn_q.weight", _matrix(rng, n_embd, n_embd), qtype)
        _add_weight(writer, f"{prefix}.attn_k.weight", _matrix(rng, n_kv, n_embd), qtype)
        _add_weight(writer, f"{prefix}.attn_v.weight", _matrix(rng, n_kv, n_embd), qtype)
        _add_weight(writer, f"{prefix}.attn_output.weight", _matrix(rng, n_embd, n_embd), qtype)
        writer.add_tensor(f"{prefix}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        _add_weight(writer, f"{prefix}.ffn_gate.weight", _matrix(rng, n_ff, n_embd), qtype)
        _add_weight(writer, f"{prefix}.ffn_up.weight", _matrix(rng, n_ff, n_embd), qtype)
        _add_weight(writer, f"{prefix}.ffn_down.weight", _matrix(rng, n_embd, n_ff), qtype)
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    _add_weight(writer, "output.weight", _matrix(rng, n_vocab, n_embd), qtype)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    partial.replace(target)
    return target
