"""The model zoo of the test bed registry: one or more models of every kind registry.ollama.ai serves.

``zoo_models(gguf_dir)`` writes the tiny GGUF/safetensors files and returns ``ZooModel`` definitions;
``testbed.registry.seed_models`` pushes them. Each definition records what real ollama would make of it
(``kind``, ``capabilities``) so tests on the bundler, the stand-in and the roles can compare against it.

Where each shape comes from (ollama source, main at fb30760 / v0.33.0-rc2, unless noted):

- layer media types: server/images.go ``GetModel``; manifest/layer.go (``tensor``, ``draft``; ``name`` on a layer);
- config blob: types/model/config.go ``ConfigV2`` — field order and ``omitempty`` as Go marshals it
  (``go_config``). Configs pushed before v0.32.7 carry ``rootfs.diff_ids`` (removed by commit 5a173edb6,
  "manifests: remove OCI rootfs from the model config"); models of the newer kinds are written without it;
- capabilities: server/images.go ``Model.Capabilities`` — config ``capabilities``, then the GGUF
  (``pooling_type`` → embedding else completion, ``vision.block_count`` → vision), a projector layer → vision,
  then the Go template (``.Tools`` → tools, ``.Suffix`` → insert, ``{{ .Thinking }}`` between text inside
  ``range .Messages`` → thinking, thinking/template.go ``InferTags``), family gptoss → thinking. The GGUF
  ``tokenizer.chat_template`` of every zoo model detects the same tools/thinking as its Go template, so
  ollama's choice between them (``shouldPreferChatTemplate``) does not change the answer;
- split models: several ``model`` layers, first shard first — the shape of ollama PR commit efdd9b76d
  ("gguf: add split gguf loading", ``Model.ExtraModelPaths``). Mainline server/create.go
  (``mergeSplitGGUFLayers``) instead merges shards named ``*-0000i-of-0000n.gguf`` into one layer on create;
- draft: server/create.go ``createModel`` appends the draft layer after the model (and adapter) layers and sets
  config ``draft`` = {model_format, architecture};
- tensor models: x/create/pipeline.go ``Create`` (one ``tensor`` layer per tensor, each a one-tensor
  safetensors blob named by the tensor, then every ``*.json`` of the model directory as a ``json`` layer named by
  its file name) and x/create/client/create.go ``newManifestWriter`` (config: model_format "safetensors",
  ``capabilities``, ``requires`` = MinOllamaVersion "0.19.0", no family/arch/os);
- cloud models: server/create.go ``CreateHandler`` with a remote host (``remote_host``
  "https://ollama.com:443", ``remote_model``, ``capabilities``/``context_length``/``embedding_length`` from
  ``info``; no model layer). Real ``/api/tags`` answers list such tags with a size of a few hundred bytes
  (the config alone), e.g. ``qwen3-coder:480b-cloud`` size 382, ``kimi-k2.6:cloud`` size 384.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from testbed import gguf_models as gm

# Media types exactly as registry.ollama.ai serves them.
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_V1 = "application/vnd.docker.container.image.v1+json"
MEDIA_MODEL = "application/vnd.ollama.image.model"
MEDIA_PROJECTOR = "application/vnd.ollama.image.projector"
MEDIA_ADAPTER = "application/vnd.ollama.image.adapter"
MEDIA_DRAFT = "application/vnd.ollama.image.draft"
MEDIA_TENSOR = "application/vnd.ollama.image.tensor"
MEDIA_JSON = "application/vnd.ollama.image.json"
MEDIA_TEMPLATE = "application/vnd.ollama.image.template"
MEDIA_PROMPT = "application/vnd.ollama.image.prompt"  # legacy: parsed as a template (server/images.go GetModel)
MEDIA_SYSTEM = "application/vnd.ollama.image.system"
MEDIA_PARAMS = "application/vnd.ollama.image.params"
MEDIA_LICENSE = "application/vnd.ollama.image.license"
MEDIA_MESSAGES = "application/vnd.ollama.image.messages"

KINDS = (
    "chat",
    "vision-projector",
    "vision-inline",
    "split",
    "embedding",
    "tools-thinking",
    "adapter",
    "draft",
    "tensor",
    "requires-ok",
    "requires-too-new",
    "legacy-prompt",
    "cloud",
)

# --- layer contents ---

ZEPHYR_TEMPLATE = """{{- if .System }}<|system|>
{{ .System }}</s>
{{ end }}{{- range .Messages }}{{- if eq .Role "user" }}<|user|>
{{ .Content }}</s>
{{ else if eq .Role "assistant" }}<|assistant|>
{{ .Content }}</s>
{{ end }}{{- end }}<|assistant|>
"""

CHATML_TEMPLATE = """{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""

# Tools (``.Tools``, ``.ToolCalls``, ``eq .Role "tool"``): what ollama detects in qwen2.5's template.
QWEN25_TEMPLATE = """{{- if or .System .Tools }}<|im_start|>system
{{- if .System }}
{{ .System }}
{{- end }}
{{- if .Tools }}
# Tools
<tools>
{{- range .Tools }}
{"type": "function", "function": {{ .Function }}}
{{- end }}
</tools>
Return each call as {"name": <function-name>, "arguments": <args-json-object>} within <tool_call></tool_call> tags.
{{- end }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Content }}{{ .Content }}
{{- else if .ToolCalls }}<tool_call>
{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}
{{ end }}</tool_call>
{{- end }}{{ if not $last }}<|im_end|>
{{ end }}
{{- else if eq .Role "tool" }}<|im_start|>user
<tool_response>
{{ .Content }}
</tool_response><|im_end|>
{{ end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ end }}
{{- end }}"""

# Tools as above, plus ``<think>{{ .Thinking }}</think>`` inside ``range .Messages`` (thinking/template.go).
QWEN3_TEMPLATE = QWEN25_TEMPLATE.replace(
    """{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Content }}""",
    """{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Thinking }}<think>{{ .Thinking }}</think>
{{ end }}{{ if .Content }}""",
)

GEMMA_TEMPLATE = """{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if or (eq .Role "user") (eq .Role "system") }}<start_of_turn>user
{{ .Content }}<end_of_turn>
{{ if $last }}<start_of_turn>model
{{ end }}
{{- else if eq .Role "assistant" }}<start_of_turn>model
{{ .Content }}{{ if not $last }}<end_of_turn>
{{ end }}
{{- end }}
{{- end }}"""

LLAVA_TEMPLATE = "[INST] {{ if .System }}{{ .System }} {{ end }}{{ .Prompt }} [/INST]"

MOONDREAM_TEMPLATE = """{{ if .Prompt }}

Question: {{ .Prompt }}

{{ end }}

Answer: {{ .Response }}

"""

# A pre-0.1 style prompt layer (``prompt`` media type), e.g. the first llama2 uploads.
LEGACY_PROMPT = "[INST] {{ if .System }}<<SYS>>{{ .System }}<</SYS>>\n\n{{ end }}{{ .Prompt }} [/INST]"

TEST_LICENSE = """Test bed model license (ollama-airgap)

These tiny models carry random weights and exist only to exercise the ollama-airgap
bundler and deployment roles. Permission is hereby granted, free of charge, to use,
copy, modify and distribute them for any purpose, without warranty of any kind.
"""

ASSISTANT_SYSTEM = "You are Tiny Assistant, a terse helper for air-gapped sites. Answer in one sentence."

ASSISTANT_MESSAGES = [
    {"role": "user", "content": "What is an air gap?"},
    {"role": "assistant", "content": "A network with no connection to the outside world."},
]


def json_bytes(value: object) -> bytes:
    """Compact JSON, as Go's encoding/json writes it."""
    return json.dumps(value, separators=(",", ":")).encode()


# ConfigV2 fields in Go struct order; the ``omitempty`` ones are left out when empty (types/model/config.go).
_CONFIG_FIELDS: tuple[tuple[str, bool], ...] = (
    ("model_format", False),
    ("model_family", False),
    ("model_families", False),
    ("model_type", False),
    ("file_type", False),
    ("renderer", True),
    ("parser", True),
    ("requires", True),
    ("remote_host", True),
    ("remote_model", True),
    ("capabilities", True),
    ("context_length", True),
    ("embedding_length", True),
    ("base_name", True),
    ("draft", True),
    ("architecture", False),
    ("os", False),
)


def go_config(**values: object) -> dict[str, object]:
    """A ConfigV2 as ollama marshals it: every non-omitempty field (``None`` → null), set omitempty ones."""
    unknown = set(values) - {name for name, _ in _CONFIG_FIELDS}
    if unknown:
        raise ValueError(f"not ConfigV2 fields: {sorted(unknown)}")
    config: dict[str, object] = {}
    for name, omitempty in _CONFIG_FIELDS:
        value = values.get(name, None if name == "model_families" else "")
        if omitempty and value in ("", 0, None, [], {}):
            continue
        config[name] = value
    return config


def gguf_config(family: str, model_type: str, file_type: str, **extra: object) -> dict[str, object]:
    """The config ollama's create writes for a GGUF model (family from ``general.architecture``)."""
    return go_config(
        model_format="gguf",
        model_family=family,
        model_families=[family],
        model_type=model_type,
        file_type=file_type,
        architecture="amd64",
        os="linux",
        **extra,
    )


# --- safetensors (tensor layers) ---


def safetensors_blob(name: str, array: np.ndarray, dtype: str) -> bytes:
    """One tensor in the safetensors format: u64 header length, JSON header (padded to 8 bytes), raw data."""
    data = array.tobytes()
    header = json.dumps(
        {name: {"dtype": dtype, "shape": list(array.shape), "data_offsets": [0, len(data)]}},
        separators=(",", ":"),
    ).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + data


def _bf16(array: np.ndarray) -> np.ndarray:
    """float32 → bfloat16 bits (truncation), as uint16."""
    return (array.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


def tiny_safetensors_model(seed: int, hidden: int = 32, layers: int = 1, vocab: int = 64) -> list[ZooLayer]:
    """``tensor`` layers (one per tensor, BF16) then ``json`` layers, as x/create/pipeline.go orders them."""
    rng = np.random.default_rng(seed)
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab, hidden)}
    for block in range(layers):
        prefix = f"model.layers.{block}"
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes[f"{prefix}.self_attn.{proj}.weight"] = (hidden, hidden)
        for proj, shape in (("gate_proj", (hidden * 2, hidden)), ("up_proj", (hidden * 2, hidden))):
            shapes[f"{prefix}.mlp.{proj}.weight"] = shape
        shapes[f"{prefix}.mlp.down_proj.weight"] = (hidden, hidden * 2)
        shapes[f"{prefix}.input_layernorm.weight"] = (hidden,)
        shapes[f"{prefix}.post_attention_layernorm.weight"] = (hidden,)
    shapes["model.norm.weight"] = (hidden,)
    shapes["lm_head.weight"] = (vocab, hidden)
    layers_out = [
        ZooLayer(MEDIA_TENSOR, safetensors_blob(name, _bf16(rng.normal(0, 0.02, size=shape)), "BF16"), name=name)
        for name, shape in sorted(shapes.items())
    ]
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": hidden * 2,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": vocab,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "torch_dtype": "bfloat16",
    }
    tokenizer = {
        "version": "1.0",
        "model": {"type": "BPE", "vocab": {f"t{i}": i for i in range(vocab)}, "merges": []},
        "added_tokens": [{"id": 0, "content": "t0", "special": True}],
    }
    tokenizer_config = {
        "bos_token": "t0",
        "eos_token": "t1",
        "chat_template": "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:",
    }
    files = {
        "config.json": config,
        "generation_config.json": {"bos_token_id": 0, "eos_token_id": 1},
        "tokenizer.json": tokenizer,
        "tokenizer_config.json": tokenizer_config,
    }
    layers_out += [ZooLayer(MEDIA_JSON, json_bytes(body), name=name) for name, body in sorted(files.items())]
    return layers_out


# --- the zoo ---


@dataclass(frozen=True)
class ZooLayer:
    """One manifest layer: small ``content``, or a file from the GGUF table (``gguf`` key); ``name`` if any."""

    media_type: str
    content: bytes | None = None
    gguf: str | None = None
    name: str = ""


@dataclass(frozen=True)
class ZooModel:
    repository: str
    tags: tuple[str, ...]
    kind: str
    capabilities: tuple[str, ...]  # what server/images.go Model.Capabilities() returns, in its order
    layers: tuple[ZooLayer, ...]
    config: dict[str, object] = field(hash=False)
    rootfs: bool = True  # config carries rootfs.diff_ids (pushed before v0.32.7)
    embedding_length: int = 0  # GGUF <arch>.embedding_length of the main model; 0 without a GGUF
    restore_only: bool = False
    restore_only_reason: str = ""

    @property
    def requires(self) -> str:
        return str(self.config.get("requires", ""))


@dataclass(frozen=True)
class GGUFFile:
    path: Path
    file_type: str  # general.file_type as ollama names it (config "file_type")
    embedding_length: int


TINY = gm.TinyShape()
SMALL = gm.TinyShape(context_length=4096, embedding_length=64, block_count=2, feed_forward_length=128)
DRAFT = gm.TinyShape(context_length=4096, embedding_length=32, block_count=1, feed_forward_length=64)


def build_ggufs(gguf_dir: Path) -> dict[str, GGUFFile]:
    """Write every GGUF the zoo uses (deterministic bytes); key → file."""
    out: dict[str, GGUFFile] = {}

    def add(key: str, path: Path, file_type: str, embedding_length: int) -> None:
        out[key] = GGUFFile(path, file_type, embedding_length)

    write = gm.write_tiny_gguf
    add(
        "tinyllama-q8_0", write(gguf_dir / "tinyllama-1.1b-q8_0.gguf", name="TinyLlama 1.1B Chat", seed=11), "Q8_0", 128
    )
    add(
        "tinyllama-q4_0",
        write(gguf_dir / "tinyllama-1.1b-q4_0.gguf", name="TinyLlama 1.1B Chat", seed=11, quant="Q4_0"),
        "Q4_0",
        128,
    )
    tinyqwen = write(
        gguf_dir / "tinyqwen-0.5b-f16.gguf",
        name="TinyQwen 0.5B Instruct",
        seed=22,
        quant="F16",
        chat_style="chatml",
        shape=gm.TinyShape(context_length=4096),
    )
    add("tinyqwen-f16", tinyqwen, "F16", 128)
    add("llava", write(gguf_dir / "llava-7b.gguf", name="LLaVA 7B", seed=31, shape=SMALL), "Q8_0", 64)
    add(
        "llava-projector",
        gm.write_clip_projector(
            gguf_dir / "llava-7b-mmproj.gguf", name="vit-large336-custom", seed=32, projection_dim=64
        ),
        "F16",
        0,
    )
    add(
        "moondream",
        write(gguf_dir / "moondream2.gguf", name="moondream2", seed=33, shape=SMALL, architecture="phi2"),
        "Q8_0",
        64,
    )
    add(
        "moondream-projector",
        gm.write_clip_projector(
            gguf_dir / "moondream2-mmproj.gguf", name="moondream2-mmproj", seed=34, projection_dim=64, image_size=378
        ),
        "F16",
        0,
    )
    for key, arch, seed, vision in (("gemma3", "gemma3", 41, 2), ("qwen2.5vl", "qwen25vl", 42, 2)):
        add(
            key,
            write(
                gguf_dir / f"{key}.gguf",
                name=key,
                seed=seed,
                shape=SMALL,
                architecture=arch,
                chat_style="gemma" if arch == "gemma3" else "chatml",
                extra_kv={
                    f"{arch}.vision.block_count": vision,
                    f"{arch}.vision.embedding_length": 32,
                    f"{arch}.vision.attention.head_count": 4,
                    f"{arch}.vision.image_size": 224 if arch == "gemma3" else 448,
                    f"{arch}.vision.patch_size": 14,
                },
            ),
            "Q8_0",
            64,
        )
    shards = gm.write_split_gguf(gguf_dir, "split-llama", shards=3, name="Split Llama", seed=51, shape=SMALL)
    for number, shard in enumerate(shards, start=1):
        add(f"split-{number}", shard, "Q8_0", 64 if number == 1 else 0)
    add(
        "nomic-embed-text",
        gm.write_nomic_bert_gguf(gguf_dir / "nomic-embed-text-v1.5.gguf", name="nomic-embed-text-v1.5", seed=61),
        "F16",
        64,
    )
    qwen3 = write(
        gguf_dir / "qwen3-0.6b.gguf", name="Qwen3 0.6B", seed=71, shape=SMALL, chat_style="qwen3", architecture="qwen3"
    )
    add("qwen3", qwen3, "Q8_0", 64)
    qwen25 = write(
        gguf_dir / "qwen2.5-0.5b.gguf",
        name="Qwen2.5 0.5B Instruct",
        seed=72,
        shape=SMALL,
        chat_style="qwen2.5",
        architecture="qwen2",
    )
    add("qwen2.5", qwen25, "Q8_0", 64)
    add("lora", gm.write_lora_adapter(gguf_dir / "tiny-lora.gguf", name="tinyllama-lora", seed=81), "F32", 0)
    add(
        "draft",
        write(
            gguf_dir / "qwen-draft.gguf", name="TinyQwen draft", seed=91, quant="F16", chat_style="chatml", shape=DRAFT
        ),
        "F16",
        32,
    )
    return out


def zoo_models(gguf_dir: Path) -> tuple[dict[str, GGUFFile], list[ZooModel]]:
    """Write the zoo's files under ``gguf_dir``; return the GGUF table and the model definitions."""
    ggufs = build_ggufs(gguf_dir)
    license_layer = ZooLayer(MEDIA_LICENSE, TEST_LICENSE.encode())

    def params(**values: object) -> ZooLayer:
        return ZooLayer(MEDIA_PARAMS, json_bytes(values))

    def template(text: str) -> ZooLayer:
        return ZooLayer(MEDIA_TEMPLATE, text.encode())

    def model(key: str, media_type: str = MEDIA_MODEL) -> ZooLayer:
        return ZooLayer(media_type, gguf=key)

    def cfg(key: str, family: str, model_type: str, **extra: object) -> dict[str, object]:
        return gguf_config(family, model_type, ggufs[key].file_type, **extra)

    zephyr_params = params(stop=["<|system|>", "<|user|>", "<|assistant|>", "</s>"], temperature=0.7, num_ctx=2048)
    chatml_params = params(stop=["<|im_start|>", "<|im_end|>"], temperature=0.7, num_ctx=4096)
    completion = ("completion",)
    vision = ("completion", "vision")
    tensor_layers = tiny_safetensors_model(seed=101)
    models = [
        # chat: today's models
        ZooModel(
            "library/tinyllama",
            ("latest", "1.1b"),
            "chat",
            completion,
            (model("tinyllama-q8_0"), template(ZEPHYR_TEMPLATE), license_layer, zephyr_params),
            cfg("tinyllama-q8_0", "llama", "1.1B"),
            embedding_length=128,
        ),
        ZooModel(
            "library/tinyllama",
            ("1.1b-q4_0",),
            "chat",
            completion,
            (model("tinyllama-q4_0"), template(ZEPHYR_TEMPLATE), license_layer, zephyr_params),
            cfg("tinyllama-q4_0", "llama", "1.1B"),
            embedding_length=128,
        ),
        ZooModel(
            "library/tinyqwen",
            ("latest", "0.5b"),
            "chat",
            completion,
            (model("tinyqwen-f16"), template(CHATML_TEMPLATE), license_layer, chatml_params),
            cfg("tinyqwen-f16", "llama", "494.03M"),
            embedding_length=128,
        ),
        ZooModel(
            "acme/tiny-assistant",
            ("v1",),
            "chat",
            completion,
            (
                model("tinyqwen-f16"),
                template(CHATML_TEMPLATE),
                ZooLayer(MEDIA_SYSTEM, ASSISTANT_SYSTEM.encode()),
                license_layer,
                params(stop=["<|im_end|>"], temperature=0.2, num_ctx=2048),
                ZooLayer(MEDIA_MESSAGES, json_bytes(ASSISTANT_MESSAGES)),
            ),
            cfg("tinyqwen-f16", "llama", "494.03M"),
            embedding_length=128,
        ),
        # vision with a separate clip projector (llava:7b, moondream)
        ZooModel(
            "library/llava",
            ("7b", "latest"),
            "vision-projector",
            vision,
            (
                model("llava"),
                model("llava-projector", MEDIA_PROJECTOR),
                template(LLAVA_TEMPLATE),
                license_layer,
                params(stop=["[INST]", "[/INST]"]),
            ),
            go_config(
                model_format="gguf",
                model_family="llama",
                model_families=["llama", "clip"],
                model_type="7B",
                file_type="Q8_0",
                architecture="amd64",
                os="linux",
            ),
            embedding_length=64,
        ),
        ZooModel(
            "library/moondream",
            ("latest", "1.8b"),
            "vision-projector",
            vision,
            (
                model("moondream"),
                model("moondream-projector", MEDIA_PROJECTOR),
                template(MOONDREAM_TEMPLATE),
                license_layer,
                params(stop=["<|endoftext|>", "Question:"], temperature=0),
            ),
            go_config(
                model_format="gguf",
                model_family="phi2",
                model_families=["phi2", "clip"],
                model_type="1B",
                file_type="Q8_0",
                architecture="amd64",
                os="linux",
            ),
            embedding_length=64,
        ),
        # vision inside one GGUF (ollama's own engine: <arch>.vision.block_count)
        ZooModel(
            "library/gemma3",
            ("4b",),
            "vision-inline",
            vision,
            (
                model("gemma3"),
                license_layer,
                template(GEMMA_TEMPLATE),
                params(stop=["<end_of_turn>"], temperature=1, top_k=64, top_p=0.95),
            ),
            cfg("gemma3", "gemma3", "4.3B"),
            embedding_length=64,
        ),
        ZooModel(
            "library/qwen2.5vl",
            ("3b",),
            "vision-inline",
            vision,
            (model("qwen2.5vl"), template(CHATML_TEMPLATE), license_layer, chatml_params),
            cfg("qwen2.5vl", "qwen25vl", "3.8B"),
            embedding_length=64,
        ),
        # one model split over three GGUF files: three model layers, shard order
        ZooModel(
            "acme/split-llama",
            ("v1",),
            "split",
            completion,
            (
                model("split-1"),
                model("split-2"),
                model("split-3"),
                template(ZEPHYR_TEMPLATE),
                license_layer,
                zephyr_params,
            ),
            cfg("split-1", "llama", "1.1B"),
            rootfs=False,
            embedding_length=64,
        ),
        # embedding: no template; params as nomic-embed-text is served
        ZooModel(
            "library/nomic-embed-text",
            ("latest", "v1.5"),
            "embedding",
            ("embedding",),
            (model("nomic-embed-text"), license_layer, params(num_ctx=8192)),
            cfg("nomic-embed-text", "nomic-bert", "137M"),
            embedding_length=64,
        ),
        # tools and thinking, detected from the template
        ZooModel(
            "library/qwen3",
            ("0.6b",),
            "tools-thinking",
            ("completion", "tools", "thinking"),
            (
                model("qwen3"),
                template(QWEN3_TEMPLATE),
                license_layer,
                params(
                    repeat_penalty=1,
                    stop=["<|im_start|>", "<|im_end|>"],
                    temperature=0.6,
                    top_k=20,
                    top_p=0.95,
                ),
            ),
            cfg("qwen3", "qwen3", "751.63M"),
            embedding_length=64,
        ),
        ZooModel(
            "library/qwen2.5",
            ("0.5b",),
            "tools-thinking",
            ("completion", "tools"),
            (model("qwen2.5"), template(QWEN25_TEMPLATE), license_layer),
            cfg("qwen2.5", "qwen2", "494.03M"),
            embedding_length=64,
        ),
        # a LoRA adapter on the tinyllama weights
        ZooModel(
            "acme/tiny-lora",
            ("v1",),
            "adapter",
            completion,
            (
                model("tinyllama-q8_0"),
                model("lora", MEDIA_ADAPTER),
                template(ZEPHYR_TEMPLATE),
                license_layer,
                zephyr_params,
            ),
            cfg("tinyllama-q8_0", "llama", "1.1B"),
            embedding_length=128,
        ),
        # speculative decoding: a draft model beside the target (ollama >= 0.30.0)
        ZooModel(
            "acme/speculative-qwen",
            ("v1",),
            "draft",
            completion,
            (
                model("tinyqwen-f16"),
                model("draft", MEDIA_DRAFT),
                template(CHATML_TEMPLATE),
                license_layer,
                chatml_params,
            ),
            cfg(
                "tinyqwen-f16",
                "llama",
                "494.03M",
                draft={"model_format": "gguf", "architecture": "llama"},
            ),
            rootfs=False,
            embedding_length=128,
        ),
        # safetensors tensors, as ollama's x/create imports them (needs the MLX engine to run)
        ZooModel(
            "acme/tiny-safetensors",
            ("v1",),
            "tensor",
            completion,
            tuple(tensor_layers),
            go_config(model_format="safetensors", capabilities=["completion"], requires="0.19.0"),
            rootfs=False,
            restore_only=True,
            restore_only_reason=(
                "safetensors tensor layers (application/vnd.ollama.image.tensor) are not files a Modelfile FROM "
                "can name; only the blobs themselves carry the model"
            ),
        ),
        # requires: one our current ollama (0.35.1) satisfies, one nothing we ship does
        ZooModel(
            "acme/requires-030",
            ("v1",),
            "requires-ok",
            completion,
            (model("tinyllama-q4_0"), template(ZEPHYR_TEMPLATE), license_layer, zephyr_params),
            cfg("tinyllama-q4_0", "llama", "1.1B", requires="0.30.0"),
            rootfs=False,
            embedding_length=128,
        ),
        ZooModel(
            "acme/requires-099",
            ("v1",),
            "requires-too-new",
            completion,
            (model("tinyllama-q4_0"), template(ZEPHYR_TEMPLATE), license_layer, zephyr_params),
            cfg("tinyllama-q4_0", "llama", "1.1B", requires="0.99.0"),
            rootfs=False,
            embedding_length=128,
        ),
        # the legacy prompt layer instead of a template
        ZooModel(
            "acme/legacy-prompt",
            ("v1",),
            "legacy-prompt",
            completion,
            (model("tinyllama-q8_0"), ZooLayer(MEDIA_PROMPT, LEGACY_PROMPT.encode()), license_layer),
            cfg("tinyllama-q8_0", "llama", "1.1B"),
            embedding_length=128,
        ),
        # a cloud model: config only, the weights stay at ollama.com
        ZooModel(
            "library/gpt-oss",
            ("120b-cloud",),
            "cloud",
            ("completion", "tools", "thinking"),
            (),
            go_config(
                model_family="gptoss",
                model_families=["gptoss"],
                model_type="116.8B",
                file_type="MXFP4",
                remote_host="https://ollama.com:443",
                remote_model="gpt-oss:120b",
                capabilities=["completion", "tools", "thinking"],
                context_length=131072,
                embedding_length=2880,
                architecture="amd64",
                os="linux",
            ),
        ),
    ]
    bad = [m.repository for m in models if m.kind not in KINDS]
    if bad:
        raise ValueError(f"unknown kinds in the zoo: {bad}")
    return ggufs, models


def models_of_kind(models: Sequence[ZooModel], kind: str) -> list[ZooModel]:
    return [m for m in models if m.kind == kind]
