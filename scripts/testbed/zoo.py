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

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from testbed import gguf_models as gm
from testbed.zoo_layers import (
    ASSISTANT_MESSAGES,
    ASSISTANT_SYSTEM,
    CHATML_TEMPLATE,
    CONFIG_V1,
    GEMMA_TEMPLATE,
    LEGACY_PROMPT,
    LLAVA_TEMPLATE,
    MANIFEST_V2,
    MEDIA_ADAPTER,
    MEDIA_DRAFT,
    MEDIA_JSON,
    MEDIA_LICENSE,
    MEDIA_MESSAGES,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_PROJECTOR,
    MEDIA_PROMPT,
    MEDIA_SYSTEM,
    MEDIA_TEMPLATE,
    MEDIA_TENSOR,
    MOONDREAM_TEMPLATE,
    QWEN3_TEMPLATE,
    QWEN25_TEMPLATE,
    TEST_LICENSE,
    ZEPHYR_TEMPLATE,
    ZooLayer,
    gguf_config,
    go_config,
    json_bytes,
    tiny_safetensors_model,
)

__all__ = [  # the zoo's vocabulary: its own names and the layer shapes it re-exports
    "ASSISTANT_MESSAGES",
    "ASSISTANT_SYSTEM",
    "CHATML_TEMPLATE",
    "CONFIG_V1",
    "DRAFT",
    "GEMMA_TEMPLATE",
    "KINDS",
    "LEGACY_PROMPT",
    "LLAVA_TEMPLATE",
    "MANIFEST_V2",
    "MEDIA_ADAPTER",
    "MEDIA_DRAFT",
    "MEDIA_JSON",
    "MEDIA_LICENSE",
    "MEDIA_MESSAGES",
    "MEDIA_MODEL",
    "MEDIA_PARAMS",
    "MEDIA_PROJECTOR",
    "MEDIA_PROMPT",
    "MEDIA_SYSTEM",
    "MEDIA_TEMPLATE",
    "MEDIA_TENSOR",
    "MOONDREAM_TEMPLATE",
    "QWEN3_TEMPLATE",
    "QWEN25_TEMPLATE",
    "SMALL",
    "TEST_LICENSE",
    "TINY",
    "ZEPHYR_TEMPLATE",
    "GGUFFile",
    "ZooLayer",
    "ZooModel",
    "build_ggufs",
    "gguf_config",
    "go_config",
    "json_bytes",
    "models_of_kind",
    "tiny_safetensors_model",
    "zoo_models",
]

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

# --- the zoo ---


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
            restore_only=True,
            restore_only_reason=(
                "several model layers (split GGUF): released ollama's create joins split parts only by their "
                "*-0000i-of-0000n.gguf file names (server/create.go mergeSplitGGUFLayers), not blob paths"
            ),
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
