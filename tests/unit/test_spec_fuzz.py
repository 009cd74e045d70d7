"""Fuzz the spec loader: whatever YAML a user writes, the answer is a Spec or one SpecError line naming the file."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ollama_airgap.errors import SpecError
from ollama_airgap.spec import SPEC_KEYS, load_spec, validate_spec

SPEC = Path("/nonexistent/fuzz.yaml")
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.sampled_from(["0.13.5", "v0.14.1", "llama3.2:1b", "amd64", "arm64", "acme/x:tag", "a/b/c/d", ""]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
keys = st.sampled_from(sorted(SPEC_KEYS | {"version", "architectures", "unknown"}))
documents = st.one_of(values, st.dictionaries(keys, values, max_size=7))


def check(document: object) -> None:
    try:
        validate_spec(document, SPEC)
    except SpecError as exc:
        message = str(exc)
        assert message.startswith(f"{SPEC}: "), message
        assert "\n" not in message


@given(documents)
@settings(max_examples=400, deadline=None)
def test_any_document_gives_a_spec_or_one_spec_error(document: object) -> None:
    check(document)


@given(
    st.fixed_dictionaries(
        {
            "name": st.one_of(st.text(max_size=20), st.just("demo")),
            "ollama": st.fixed_dictionaries(
                {"version": st.one_of(st.text(max_size=10), st.just("0.13.5"), st.floats(), st.integers())},
                optional={"architectures": st.lists(st.text(max_size=8), max_size=3), "rocm": values},
            ),
            "models": st.lists(st.one_of(st.text(max_size=40), st.just("tinyllama:latest")), max_size=4),
        },
        optional={"mirrors": st.dictionaries(st.text(max_size=10), st.text(max_size=30), max_size=2)},
    )
)
@settings(max_examples=400, deadline=None)
def test_near_valid_specs(document: dict) -> None:
    check(document)


@given(st.text(max_size=200))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_text_file(tmp_path_factory, text: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("fuzz") / "spec.yaml"
    path.write_text(text)
    try:
        load_spec(path)
    except SpecError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)


def test_yaml_roundtrip_of_a_valid_spec() -> None:
    good = {"name": "demo", "ollama": {"version": "0.13.5"}, "models": ["tinyllama"]}
    assert validate_spec(yaml.safe_load(yaml.safe_dump(good)), SPEC).models[0].short == "tinyllama:latest"
