"""Tiny but real GGUF files: chat models, split models, clip projectors, nomic-bert embedders, LoRA adapters.

The files are tens of KB to about a MB, read back with ``gguf.GGUFReader`` (and by llama.cpp's loader, in
principle), and are byte-for-byte deterministic: the same arguments always give the same sha256, so registry
digests stay stable across runs. The metadata keys that decide what ollama makes of a file are the real ones:

- ``<arch>.pooling_type`` → embedding, else completion; ``<arch>.vision.block_count`` → vision
  (ollama server/images.go ``ggufCapabilities``; fs/gguf ``KeyValue`` prefixes the architecture);
- ``general.architecture == "clip"`` + ``clip.has_vision_encoder`` and no ``clip.block_count`` → a projector
  layer (server/create.go ``isProjectorGGUF``); ``clip.projector_type`` present, so create does not rewrite it
  (server/quantization.go ``needsDefaultLlavaProjectorType``);
- ``general.type == "adapter"`` → an adapter layer (server/create.go ``ggufLayersWithMediaType``), with
  ``adapter.type``/``adapter.lora.alpha`` as convert/convert.go writes them;
- ``split.no``/``split.count``/``split.tensors.count`` in every shard, shards named ``NAME-0000i-of-0000n.gguf``
  (llama.cpp gguf-split; server/create.go ``splitGGUFGroupKey`` insists on both);
- ``tokenizer.chat_template`` mentioning ``tools``/``tool_call`` and ``<think>``…``</think>`` → tools/thinking
  (server/images.go ``chatTemplateHasToolSupport``/``chatTemplateHasThinkingSupport``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType, PoolingType, TokenType
from gguf.quants import quantize

Quant = Literal["Q8_0", "Q4_0", "F16"]
ChatStyle = Literal["zephyr", "chatml", "qwen2.5", "qwen3", "gemma"]
KVValue = bool | int | float | str | Sequence[float]

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
    "qwen2.5": ("<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"),
    "qwen3": ("<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>", "<think>", "</think>"),
    "gemma": ("<start_of_turn>", "<end_of_turn>"),
}
_EOS: dict[str, str] = {
    "chatml": "<|im_end|>",
    "qwen2.5": "<|im_end|>",
    "qwen3": "<|im_end|>",
    "gemma": "<end_of_turn>",
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
    # Shortened Qwen2.5 template: the tool block is what makes ollama see "tools" in it.
    "qwen2.5": (
        "{%- if tools %}{{- '<|im_start|>system\n# Tools\n<tools>' }}"
        "{%- for tool in tools %}{{- '\n' }}{{- tool | tojson }}{%- endfor %}"
        "{{- '\n</tools>\nFor each function call, return a json object within <tool_call></tool_call> tags."
        "<|im_end|>\n' }}{%- endif %}"
        "{%- for message in messages %}"
        "{%- if message.role == 'tool' %}{{- '<|im_start|>user\n<tool_response>\n' + message.content"
        " + '\n</tool_response><|im_end|>\n' }}"
        "{%- else %}{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}{%- endif %}"
        "{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
    ),
    # Shortened Qwen3 template: tools as above, and reasoning kept between <think> and </think>.
    "qwen3": (
        "{%- if tools %}{{- '<|im_start|>system\n# Tools\n<tools>' }}"
        "{%- for tool in tools %}{{- '\n' }}{{- tool | tojson }}{%- endfor %}"
        "{{- '\n</tools>\nFor each function call, return a json object within <tool_call></tool_call> tags."
        "<|im_end|>\n' }}{%- endif %}"
        "{%- for message in messages %}"
        "{%- if message.role == 'assistant' and message.reasoning_content %}"
        "{{- '<|im_start|>assistant\n<think>\n' + message.reasoning_content + '\n</think>\n\n'"
        " + message.content + '<|im_end|>\n' }}"
        "{%- elif message.role == 'tool' %}{{- '<|im_start|>user\n<tool_response>\n' + message.content"
        " + '\n</tool_response><|im_end|>\n' }}"
        "{%- else %}{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}{%- endif %}"
        "{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}"
        "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\n\n</think>\n\n' }}{%- endif %}"
        "{%- endif %}"
    ),
    "gemma": (
        "{{ bos_token }}{% for message in messages %}"
        "{% set role = 'model' if message['role'] == 'assistant' else 'user' %}"
        "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
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
        types.append(TokenType.USER_DEFINED if chat_style == "zephyr" else TokenType.CONTROL)
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


def _add_kv(writer: GGUFWriter, key: str, value: KVValue) -> None:
    """One metadata entry with the GGUF type llama.cpp's converters give such values."""
    if isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, int):
        writer.add_uint32(key, value)
    elif isinstance(value, float):
        writer.add_float32(key, value)
    elif isinstance(value, str):
        writer.add_string(key, value)
    else:
        writer.add_array(key, list(value))


def _finish(writer: GGUFWriter) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _tiny_llama_writer(
    path: Path,
    *,
    name: str,
    seed: int,
    quant: Quant,
    chat_style: ChatStyle,
    shape: TinyShape,
    architecture: str,
    extra_kv: Mapping[str, KVValue],
    split_max_tensors: int = 0,
) -> GGUFWriter:
    """A GGUFWriter holding a whole tiny llama-shaped model (metadata, vocabulary, tensors), not yet written."""
    if quant not in _QUANTS:
        raise ValueError(f"unsupported quant {quant!r}; choose one of {sorted(_QUANTS)}")
    qtype, file_type = _QUANTS[quant]
    tokens, scores, token_types = build_vocabulary(chat_style)
    head_dim = shape.embedding_length // shape.head_count

    writer = GGUFWriter(path, architecture, split_max_tensors=split_max_tensors)
    writer.add_name(name)
    writer.add_description(f"{name}: a tiny {architecture}-architecture test model (random weights) for ollama-airgap")
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
    writer.add_eos_token_id(tokens.index(_EOS.get(chat_style, "</s>")))
    writer.add_unk_token_id(tokens.index("<unk>"))
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(chat_template(chat_style))
    for key, value in extra_kv.items():
        _add_kv(writer, key, value)

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
    return writer


def write_tiny_gguf(
    path: str | os.PathLike[str],
    *,
    name: str,
    seed: int,
    quant: Quant = "Q8_0",
    chat_style: ChatStyle = "zephyr",
    shape: TinyShape = TinyShape(),
    architecture: str = "llama",
    extra_kv: Mapping[str, KVValue] | None = None,
) -> Path:
    """Write a tiny llama-shaped GGUF to ``path`` and return it. Same arguments → same bytes.

    ``architecture`` names the metadata prefix (``gemma3.context_length`` …); ``extra_kv`` adds full keys such
    as ``gemma3.vision.block_count`` after the tokenizer.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write to a temporary name and rename, so a half-written file never looks like a model.
    partial = target.with_name(target.name + ".partial")
    writer = _tiny_llama_writer(
        partial,
        name=name,
        seed=seed,
        quant=quant,
        chat_style=chat_style,
        shape=shape,
        architecture=architecture,
        extra_kv=extra_kv or {},
    )
    _finish(writer)
    partial.replace(target)
    return target


def write_split_gguf(
    directory: str | os.PathLike[str],
    stem: str,
    *,
    shards: int,
    name: str,
    seed: int,
    quant: Quant = "Q8_0",
    chat_style: ChatStyle = "zephyr",
    shape: TinyShape = TinyShape(),
) -> list[Path]:
    """One tiny model split as llama.cpp's gguf-split does: ``STEM-0000i-of-0000n.gguf``, in shard order.

    The first shard carries all metadata; every shard carries ``split.no`` (uint16), ``split.count`` (uint16)
    and ``split.tensors.count`` (int32) — gguf-py's writer, the same keys ollama's server/create.go reads.
    """
    target_dir = Path(directory)
    staging = target_dir / f".{stem}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    tensors_per_block = 9
    total = 2 + tensors_per_block * shape.block_count + 1
    writer = _tiny_llama_writer(
        staging / f"{stem}.gguf",
        name=name,
        seed=seed,
        quant=quant,
        chat_style=chat_style,
        shape=shape,
        architecture="llama",
        extra_kv={},
        split_max_tensors=-(-total // shards),
    )
    _finish(writer)
    written = sorted(staging.glob(f"{stem}-*-of-*.gguf"))
    if len(written) != shards:
        raise RuntimeError(f"gguf writer produced {len(written)} shards of {stem}, not {shards}")
    paths = []
    for shard in written:
        paths.append(shard.replace(target_dir / shard.name))
    staging.rmdir()
    return paths


def write_clip_projector(
    path: str | os.PathLike[str],
    *,
    name: str,
    seed: int,
    projection_dim: int,
    image_size: int = 336,
    patch_size: int = 14,
    embedding_length: int = 32,
    block_count: int = 2,
) -> Path:
    """A llava-style vision projector: ``general.architecture`` "clip" with ``clip.vision.*`` keys, F16.

    Keys as llama.cpp's llava surgery / convert_image_encoder_to_gguf.py write them for llava and moondream
    projectors (``clip.has_llava_projector``, ``clip.projector_type`` "mlp", ``clip.vision.image_mean`` …);
    ``projection_dim`` is the text model's embedding length (the ``mm.2`` output size).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    writer = GGUFWriter(partial, "clip")
    writer.add_name(name)
    writer.add_description(f"{name}: image encoder for a tiny llava-style test model (random weights)")
    writer.add_file_type(int(LlamaFileType.MOSTLY_F16))
    writer.add_bool("clip.has_text_encoder", False)
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_bool("clip.has_llava_projector", True)
    writer.add_string("clip.projector_type", "mlp")
    writer.add_uint32("clip.vision.image_size", image_size)
    writer.add_uint32("clip.vision.patch_size", patch_size)
    writer.add_uint32("clip.vision.embedding_length", embedding_length)
    writer.add_uint32("clip.vision.feed_forward_length", embedding_length * 4)
    writer.add_uint32("clip.vision.projection_dim", projection_dim)
    writer.add_uint32("clip.vision.attention.head_count", 4)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-5)
    writer.add_uint32("clip.vision.block_count", block_count)
    writer.add_array("clip.vision.image_mean", [0.48145466, 0.4578275, 0.40821073])
    writer.add_array("clip.vision.image_std", [0.26862954, 0.26130258, 0.27577711])
    writer.add_bool("clip.use_gelu", False)

    rng = np.random.default_rng(seed)
    n_embd, n_ff = embedding_length, embedding_length * 4
    patches = (image_size // patch_size) ** 2

    def f16(rows: int, cols: int) -> np.ndarray:
        return _matrix(rng, rows, cols).astype(np.float16)

    writer.add_tensor("mm.0.weight", f16(projection_dim, n_embd))
    writer.add_tensor("mm.0.bias", np.zeros(projection_dim, dtype=np.float32))
    writer.add_tensor("mm.2.weight", f16(projection_dim, projection_dim))
    writer.add_tensor("mm.2.bias", np.zeros(projection_dim, dtype=np.float32))
    writer.add_tensor("v.class_embd", rng.normal(0.0, 0.02, size=n_embd).astype(np.float32))
    writer.add_tensor("v.patch_embd.weight", f16(n_embd, 3 * patch_size * patch_size))
    writer.add_tensor("v.position_embd.weight", f16(patches + 1, n_embd))
    writer.add_tensor("v.pre_ln.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("v.pre_ln.bias", np.zeros(n_embd, dtype=np.float32))
    for block in range(block_count):
        prefix = f"v.blk.{block}"
        for part in ("attn_q", "attn_k", "attn_v", "attn_out"):
            writer.add_tensor(f"{prefix}.{part}.weight", f16(n_embd, n_embd))
            writer.add_tensor(f"{prefix}.{part}.bias", np.zeros(n_embd, dtype=np.float32))
        for norm in ("ln1", "ln2"):
            writer.add_tensor(f"{prefix}.{norm}.weight", np.ones(n_embd, dtype=np.float32))
            writer.add_tensor(f"{prefix}.{norm}.bias", np.zeros(n_embd, dtype=np.float32))
        writer.add_tensor(f"{prefix}.ffn_down.weight", f16(n_ff, n_embd))
        writer.add_tensor(f"{prefix}.ffn_down.bias", np.zeros(n_ff, dtype=np.float32))
        writer.add_tensor(f"{prefix}.ffn_up.weight", f16(n_embd, n_ff))
        writer.add_tensor(f"{prefix}.ffn_up.bias", np.zeros(n_embd, dtype=np.float32))
    _finish(writer)
    partial.replace(target)
    return target


_BERT_WORDS: tuple[str, ...] = tuple(
    piece.removeprefix("▁") for piece in _PIECES if piece.startswith("▁") and len(piece) > 1
) + tuple(f"##{suffix}" for suffix in ("s", "ed", "ing", "ly", "er", "est", "ion", "ment"))


def write_nomic_bert_gguf(
    path: str | os.PathLike[str],
    *,
    name: str,
    seed: int,
    embedding_length: int = 64,
    block_count: int = 2,
    context_length: int = 2048,
) -> Path:
    """A tiny nomic-embed-text: ``nomic-bert`` architecture, mean ``pooling_type``, a BERT WordPiece vocabulary.

    Keys as llama.cpp's convert_hf_to_gguf.py NomicBertModel writes them (``nomic-bert.pooling_type`` = 1,
    ``nomic-bert.attention.causal`` = false, ``tokenizer.ggml.model`` "bert", ``token_type_count`` 2); no chat
    template, so ollama gives it only the embedding capability. F16, as nomic-embed-text:v1.5 is served.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(_BERT_WORDS)]
    token_types = [int(TokenType.CONTROL)] * 5 + [int(TokenType.NORMAL)] * (len(tokens) - 5)
    writer = GGUFWriter(partial, "nomic-bert")
    writer.add_name(name)
    writer.add_description(f"{name}: a tiny nomic-bert test embedder (random weights) for ollama-airgap")
    writer.add_file_type(int(LlamaFileType.MOSTLY_F16))
    writer.add_context_length(context_length)
    writer.add_embedding_length(embedding_length)
    writer.add_block_count(block_count)
    writer.add_feed_forward_length(embedding_length * 4)
    writer.add_head_count(4)
    writer.add_layer_norm_eps(1e-12)
    writer.add_causal_attention(False)
    writer.add_pooling_type(PoolingType.MEAN)
    writer.add_rope_freq_base(1000.0)
    writer.add_tokenizer_model("bert")
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_type_count(2)
    writer.add_unk_token_id(1)
    writer.add_bos_token_id(2)  # [CLS], as the converter sets it
    writer.add_eos_token_id(3)  # [SEP]
    writer.add_sep_token_id(3)
    writer.add_pad_token_id(0)
    writer.add_mask_token_id(4)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(True)

    rng = np.random.default_rng(seed)
    n_embd, n_ff = embedding_length, embedding_length * 4

    def f16(rows: int, cols: int) -> np.ndarray:
        return _matrix(rng, rows, cols).astype(np.float16)

    writer.add_tensor("token_embd.weight", f16(len(tokens), n_embd))
    writer.add_tensor("token_types.weight", _matrix(rng, 2, n_embd))
    writer.add_tensor("token_embd_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("token_embd_norm.bias", np.zeros(n_embd, dtype=np.float32))
    for block in range(block_count):
        prefix = f"blk.{block}"
        writer.add_tensor(f"{prefix}.attn_qkv.weight", f16(3 * n_embd, n_embd))
        writer.add_tensor(f"{prefix}.attn_output.weight", f16(n_embd, n_embd))
        writer.add_tensor(f"{prefix}.attn_output_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"{prefix}.attn_output_norm.bias", np.zeros(n_embd, dtype=np.float32))
        writer.add_tensor(f"{prefix}.ffn_up.weight", f16(n_ff, n_embd))
        writer.add_tensor(f"{prefix}.ffn_gate.weight", f16(n_ff, n_embd))
        writer.add_tensor(f"{prefix}.ffn_down.weight", f16(n_embd, n_ff))
        writer.add_tensor(f"{prefix}.layer_output_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"{prefix}.layer_output_norm.bias", np.zeros(n_embd, dtype=np.float32))
    _finish(writer)
    partial.replace(target)
    return target


def write_lora_adapter(
    path: str | os.PathLike[str],
    *,
    name: str,
    seed: int,
    shape: TinyShape = TinyShape(),
    rank: int = 4,
    alpha: float = 8.0,
) -> Path:
    """A LoRA adapter GGUF for a tiny llama of ``shape``: ``general.type`` "adapter", ``adapter.type`` "lora".

    Keys as ollama's convert/convert.go (``adapter.lora.alpha``) and llama.cpp's convert_lora_to_gguf.py write
    them; ``lora_a``/``lora_b`` pairs for the attention q and v projections of every block, F32.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    writer = GGUFWriter(partial, "llama")
    writer.add_type("adapter")
    writer.add_name(name)
    writer.add_file_type(int(LlamaFileType.ALL_F32))
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", alpha)
    rng = np.random.default_rng(seed)
    n_embd = shape.embedding_length
    n_kv = shape.head_count_kv * (n_embd // shape.head_count)
    for block in range(shape.block_count):
        for part, rows in (("attn_q", n_embd), ("attn_v", n_kv)):
            writer.add_tensor(f"blk.{block}.{part}.weight.lora_a", _matrix(rng, rank, n_embd))
            writer.add_tensor(f"blk.{block}.{part}.weight.lora_b", _matrix(rng, rows, rank))
    _finish(writer)
    partial.replace(target)
    return target
