import json

import pytest

from ollama_airgap.errors import AirgapError
from ollama_airgap.ollama_model import (
    LICENSE,
    MESSAGES,
    MODEL,
    PARAMS,
    SYSTEM,
    TEMPLATE,
    Layer,
    Modelfile,
    ModelManifest,
    modelfile_from_layers,
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
