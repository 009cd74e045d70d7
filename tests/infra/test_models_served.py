"""Every bundle model is served (restored ones with the registry's digest), with the capabilities bundle.yaml lists,
and answers by capability: completion generates text, vision describes an image, embedding returns a vector of the
model's embedding length. A model without completion is never sent to /api/generate (ollama refuses it)."""

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


def test_capabilities_match_the_bundle(api: Any, expected: Expected) -> None:
    """/api/show's capabilities (ollama's Model.Capabilities(), server/images.go) equal what the bundler recorded."""
    problems = []
    for model in expected.models():
        if not model["capabilities_recorded"]:
            continue  # a bundle built before capabilities were recorded
        status, shown = api("POST", "/api/show", {"model": model["short"]})
        if status != 200:
            problems.append(f"{model['short']}: /api/show answered HTTP {status} {shown}")
            continue
        served = sorted(shown.get("capabilities") or [])
        if served != sorted(model["capabilities"]):
            problems.append(
                f"{model['short']}: /api/show capabilities {served}, bundle.yaml {sorted(model['capabilities'])}"
            )
    assert not problems, "; ".join(problems)


def test_completion_models_generate_text(api: Any, expected: Expected) -> None:
    silent = []
    for model in expected.smoke_models():
        if "completion" not in model["capabilities"]:
            continue
        body = {
            "model": model["short"],
            "prompt": expected["smoke_test_prompt"],
            "stream": False,
            "options": {"num_predict": int(expected["smoke_test_num_predict"])},
        }
        if "vision" in model["capabilities"]:
            body["images"] = [expected["smoke_test_image"]]
        status, answer = api("POST", "/api/generate", body)
        if status != 200 or not str(answer.get("response", "")).strip():
            what = "vision" if "images" in body else "completion"
            silent.append(f"{model['short']} ({what}): HTTP {status} {answer}")
    assert not silent, "no text from: " + "; ".join(silent)


def test_embedding_models_embed_with_their_length(api: Any, expected: Expected) -> None:
    problems = []
    for model in expected.smoke_models():
        if "embedding" not in model["capabilities"]:
            continue
        body = {"model": model["short"], "input": expected["smoke_test_embed_input"]}
        status, answer = api("POST", "/api/embed", body)
        vectors = answer.get("embeddings") if status == 200 and isinstance(answer, dict) else None
        length = int(model.get("embedding_length") or 0)
        if not vectors or len(vectors) != 1 or not vectors[0]:
            problems.append(f"{model['short']} (embedding): HTTP {status} {str(answer)[:300]}")
        elif length and len(vectors[0]) != length:
            problems.append(f"{model['short']} (embedding): vector of {len(vectors[0])}, bundle.yaml says {length}")
    assert not problems, "; ".join(problems)
