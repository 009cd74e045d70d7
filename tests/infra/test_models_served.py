"""Every bundle model is served (restored ones with the registry's digest), and generation works."""

from __future__ import annotations

from typing import Any

from conftest import Expected


def test_root_answers(api: Any) -> None:
    status, body = api("GET", "/")
    assert status == 200 and "Ollama is running" in str(body)


def test_every_bundle_model_is_listed(api: Any, expected: Expected) -> None:
    status, tags = api("GET", "/api/tags")
    assert status == 200, tags
    listed = {model["name"]: model["digest"] for model in tags["models"]}
    problems = []
    for model in expected.models():
        if model["short"] not in listed:
            problems.append(f"{model['short']} is not listed by /api/tags")
        elif model["method"] == "restore" and f"sha256:{listed[model['short']]}" != model["manifest_digest"]:
            problems.append(
                f"{model['short']} (restore) has digest sha256:{listed[model['short']]}, "
                f"the bundle says {model['manifest_digest']}"
            )
    assert not problems, "; ".join(problems)


def test_generation_returns_text(api: Any, expected: Expected) -> None:
    silent = []
    for model in expected.models():
        body = {
            "model": model["short"],
            "prompt": expected["smoke_test_prompt"],
            "stream": False,
            "options": {"num_predict": int(expected["smoke_test_num_predict"])},
        }
        status, answer = api("POST", "/api/generate", body)
        if status != 200 or not str(answer.get("response", "")).strip():
            silent.append(f"{model['short']}: HTTP {status} {answer}")
    assert not silent, "no text from: " + "; ".join(silent)
