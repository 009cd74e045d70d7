"""Layer contents and config shapes of the test bed's model zoo (see testbed.zoo for where each comes from).

Media types, Go templates as the registry serves them for each model family, ``go_config`` (ollama's ConfigV2 as
Go marshals it: types/model/config.go), and safetensors tensor layers as ollama's x/create writes them.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import numpy as np

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


@dataclass(frozen=True)
class ZooLayer:
    """One manifest layer: small ``content``, or a file from the GGUF table (``gguf`` key); ``name`` if any."""

    media_type: str
    content: bytes | None = None
    gguf: str | None = None
    name: str = ""


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
