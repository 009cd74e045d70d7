import json
import re

import pytest

from ollama_airgap.errors import AirgapError, UnsupportedModelError
from ollama_airgap.ollama_model import (
    ADAPTER,
    CONFIG,
    DRAFT,
    EMBED,
    JSON,
    LICENSE,
    MESSAGES,
    MODEL,
    PARAMS,
    PROJECTOR,
    PROMPT,
    SYSTEM,
    TEMPLATE,
    TENSOR,
    Layer,
    Modelfile,
    ModelManifest,
    RestoreOnly,
    check_layers,
    modelfile_from_layers,
    parse_manifest,
    parse_modelfile,
)

CONTENT = {
    "sha256:" + "1" * 64: b"",
    "sha256:" + "2" * 64: b"{{ if .System }}<|system|>{{ .System }}{{ end }}<|user|>{{ .Prompt }}",
    "sha256:" + "3" * 64: b"You are terse.",
    "sha256:" + "4" * 64: json.dumps({"stop": ["<|user|>", "<|end|>"], "temperature": 0.7, "num_ctx": 2048.0}).encode(),
    "sha256:" + "5" * 64: b"Apache License\nVersion 2.0",
    "sha256:" + "6" * 64: json.dumps(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    ).encode(),
}
TYPES = [MODEL, TEMPLATE, SYSTEM, PARAMS, LICENSE, MESSAGES]


def manifest() -> ModelManifest:
    layers = tuple(Layer(t, d, len(c)) for t, (d, c) in zip(TYPES, CONTENT.items(), strict=True))
    return ModelManifest(
        config=Layer("application/vnd.docker.container.image.v1+json", "sha256:" + "0" * 64, 2), layers=layers
    )


def test_modelfile_carries_every_layer() -> None:
    mf = modelfile_from_layers(
        manifest(), lambda layer: CONTENT[layer.digest], lambda layer: f"blobs/{layer.digest}", "m"
    )
    assert mf.from_ == "blobs/sha256:" + "1" * 64
    assert mf.template == CONTENT["sha256:" + "2" * 64].decode()
    assert mf.system == "You are terse."
    assert mf.parameters == [("num_ctx", "2048"), ("stop", "<|user|>"), ("stop", "<|end|>"), ("temperature", "0.7")]
    assert mf.licenses == ["Apache License\nVersion 2.0"]
    assert mf.messages == [("user", "hi"), ("assistant", "hello")]
    assert parse_modelfile(mf.render("header"), "generated") == mf


def test_parse_user_modelfile() -> None:
    text = (
        'FROM ./x.gguf\n# comment\nPARAMETER stop "a b"\nPARAMETER top_k 40\n'
        'TEMPLATE """{{ .Prompt }}\n"""\nSYSTEM hi there\n'
    )
    mf = parse_modelfile(text, "Modelfile")
    assert mf.from_ == "./x.gguf"
    assert mf.parameters == [("stop", "a b"), ("top_k", "40")]
    assert mf.template == "{{ .Prompt }}\n"
    assert mf.system == "hi there"


@pytest.mark.parametrize("text", ["PARAMETER x 1\n", "FROM x\nBOGUS y\n", 'FROM x\nTEMPLATE """never closed\n'])
def test_bad_modelfiles(text: str) -> None:
    with pytest.raises(AirgapError, match="Modelfile"):
        parse_modelfile(text, "Modelfile")


def test_unrepresentable_text_is_refused() -> None:
    with pytest.raises(AirgapError, match="use restore"):
        Modelfile(from_="x", system='say """hi"""').render()


# --- every kind ollama can express, as Model.String() writes it ------------------------------------------------

D = {
    name: "sha256:" + c * 64
    for name, c in zip(["model", "proj", "lora", "draft", "tmpl", "model2"], "abcdef", strict=True)
}
TEXT = {D["tmpl"]: b"{{ .Prompt }}"}


def kind(*layers: tuple[str, str]) -> ModelManifest:
    return ModelManifest(
        config=Layer(CONFIG, "sha256:" + "0" * 64, 2),
        layers=tuple(Layer(media, D[name], len(TEXT.get(D[name], b""))) for media, name in layers),
    )


def render(manifest: ModelManifest, config: dict[str, str] | None = None) -> str:
    mf = modelfile_from_layers(
        manifest, lambda layer: TEXT[layer.digest], lambda layer: layer.digest[7:13], "m", config
    )
    text = mf.render()
    assert parse_modelfile(text, "generated") == mf  # round trip
    return text


def test_projector_is_an_extra_from_after_adapter_and_draft() -> None:
    text = render(
        kind((MODEL, "model"), (PROJECTOR, "proj"), (ADAPTER, "lora"), (DRAFT, "draft"), (TEMPLATE, "tmpl")),
        {"renderer": "qwen3-vl", "parser": "qwen3-vl-instruct"},
    )
    assert text == (
        "FROM aaaaaa\nADAPTER cccccc\nDRAFT dddddd\nFROM bbbbbb\n"
        'TEMPLATE """{{ .Prompt }}"""\nRENDERER qwen3-vl\nPARSER qwen3-vl-instruct\n'
    )


def test_legacy_prompt_layer_is_the_template_and_embed_is_ignored() -> None:
    assert render(kind((MODEL, "model"), (PROMPT, "tmpl"), (EMBED, "proj"))) == (
        'FROM aaaaaa\nTEMPLATE """{{ .Prompt }}"""\n'
    )


@pytest.mark.parametrize(
    "layers, reason",
    [
        (((MODEL, "model"), (MODEL, "model2")), "2 model layers (split GGUF)"),
        (((TENSOR, "model"), (JSON, "model2")), "safetensors model"),
        (((MODEL, "model"), (ADAPTER, "lora"), (ADAPTER, "proj")), "several adapter layers"),
        (((MODEL, "model"), (DRAFT, "draft"), (DRAFT, "proj")), "several draft layers"),
    ],
)
def test_restore_only_kinds(layers: tuple[tuple[str, str], ...], reason: str) -> None:
    with pytest.raises(RestoreOnly, match=re.escape(reason)) as info:
        modelfile_from_layers(kind(*layers), lambda layer: b"", lambda layer: "x", "m")
    assert "\n" not in str(info.value)


def test_text_a_modelfile_cannot_quote_is_restore_only() -> None:
    TEXT[D["tmpl"]] = b'say """hi"""'
    try:
        with pytest.raises(RestoreOnly, match='TEMPLATE text contains """'):
            modelfile_from_layers(
                kind((MODEL, "model"), (TEMPLATE, "tmpl")), lambda la: TEXT[la.digest], lambda la: "x", "m"
            )
    finally:
        TEXT[D["tmpl"]] = b"{{ .Prompt }}"


def test_unknown_media_type_is_refused_not_dropped() -> None:
    manifest = kind((MODEL, "model"))
    manifest = ModelManifest(manifest.config, (*manifest.layers, Layer(TEMPLATE[:-8] + "future", D["proj"], 3)))
    with pytest.raises(
        UnsupportedModelError, match=r"unknown media type 'application/vnd\.ollama\.image\.future'"
    ) as e:
        check_layers(manifest, "model acme/x:v1")
    assert e.value.exit_code == 2 and str(e.value).startswith("model acme/x:v1: layer 1 ")
    with pytest.raises(AirgapError, match="not an ollama model"):
        check_layers(kind((TEMPLATE, "tmpl")), "m")
    for known in (MODEL, PROJECTOR, ADAPTER, DRAFT, TEMPLATE, PROMPT, SYSTEM, PARAMS, MESSAGES, LICENSE, EMBED):
        check_layers(kind((MODEL, "model"), (known, "proj")), "m")
    check_layers(kind((TENSOR, "model"), (JSON, "proj")), "m")


def test_manifest_without_layers_parses_for_the_cloud_check() -> None:
    document = {"schemaVersion": 2, "config": {"mediaType": CONFIG, "digest": D["model"], "size": 10}, "layers": []}
    assert parse_manifest(document, "m").layers == ()
    named = {"mediaType": TENSOR, "digest": D["proj"], "size": 1, "name": "model.embed_tokens.weight"}
    assert parse_manifest({**document, "layers": [named]}, "m").layers[0].name == "model.embed_tokens.weight"


def test_parse_draft_renderer_parser_requires() -> None:
    mf = parse_modelfile("FROM a\nFROM b\nDRAFT d\nRENDERER r\nPARSER p\nREQUIRES 0.14.0\n", "Modelfile")
    assert (mf.from_, mf.projectors, mf.draft, mf.renderer, mf.parser, mf.requires) == (
        "a",
        ["b"],
        "d",
        "r",
        "p",
        "0.14.0",
    )
    assert mf.commands() == {"FROM", "DRAFT", "RENDERER", "PARSER", "REQUIRES"}
