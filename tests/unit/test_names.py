import pytest

from ollama_airgap.names import parse_model_name


@pytest.mark.parametrize(
    ("text", "full", "short"),
    [
        ("llama3.2", "registry.ollama.ai/library/llama3.2:latest", "llama3.2:latest"),
        ("llama3.1:8b", "registry.ollama.ai/library/llama3.1:8b", "llama3.1:8b"),
        ("library/x:tag", "registry.ollama.ai/library/x:tag", "x:tag"),
        ("acme/tiny-assistant:v1", "registry.ollama.ai/acme/tiny-assistant:v1", "acme/tiny-assistant:v1"),
        ("hf.co/org/model:Q4_K_M", "hf.co/org/model:Q4_K_M", "hf.co/org/model:Q4_K_M"),
        ("localhost:5000/ns/m:1", "localhost:5000/ns/m:1", "localhost:5000/ns/m:1"),
    ],
)
def test_parse_fills_ollama_defaults(text: str, full: str, short: str) -> None:
    name = parse_model_name(text)
    assert str(name) == full
    assert name.short == short


def test_manifest_path_is_ollamas_layout() -> None:
    name = parse_model_name("llama3.2:1b")
    assert name.manifest_path == "manifests/registry.ollama.ai/library/llama3.2/1b"
    assert name.repository == "library/llama3.2"


@pytest.mark.parametrize(
    "text", ["", " llama", "a/b/c/d", "llama:", "-bad", "llama:ta g", "llama@sha256:00", "../etc:x", "a/../b"]
)
def test_bad_names_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_model_name(text)
