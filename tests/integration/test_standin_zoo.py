"""Every model of the test bed zoo (testbed.zoo), restored into the current stand-in's store as the registry
serves it: /api/show gives the capabilities the zoo records as ollama's, and each model answers by capability."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import ollama
import pytest
from standin_ggufs import CURRENT, blob, standin_at_fixture  # noqa: F401

from testbed import zoo
from testbed.standin_server import Standin
from testbed.zoo_layers import CONFIG_V1, MANIFEST_V2, json_bytes

REFUSED_AT_LOAD = {"requires-too-new": 500, "tensor": 500}


def restore(models: Path, gguf_dir: Path) -> list[tuple[str, zoo.ZooModel]]:
    files, definitions = zoo.zoo_models(gguf_dir)
    restored = []
    for definition in definitions:
        layers = []
        for layer in definition.layers:
            data = files[layer.gguf].path.read_bytes() if layer.gguf else (layer.content or b"")
            descriptor = {"mediaType": layer.media_type, **blob(models, data)}
            if layer.name:
                descriptor["name"] = layer.name
            layers.append(descriptor)
        config = dict(definition.config)
        if definition.rootfs:
            config["rootfs"] = {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]}
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_V2,
            "config": {"mediaType": CONFIG_V1, **blob(models, json_bytes(config))},
            "layers": layers,
        }
        namespace, model = definition.repository.split("/")
        for tag in definition.tags:
            target = models / "manifests" / "registry.ollama.ai" / namespace / model / tag
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(json_bytes(manifest))
            restored.append((f"{definition.repository}:{tag}".removeprefix("library/"), definition))
    return restored


def test_every_zoo_kind_on_the_current_standin(standin_at: Callable[..., Standin], tmp_path: Path) -> None:
    models = tmp_path / "models"
    restored = restore(models, tmp_path / "ggufs")
    server = standin_at(CURRENT, models=models)
    client = server.client()
    kinds = set()
    for name, definition in restored:
        kinds.add(definition.kind)
        if definition.kind == "cloud":  # a `-cloud` tag is proxied to ollama.com (modelref): no network here
            with pytest.raises(ollama.ResponseError) as proxied:
                client.show(name)
            assert proxied.value.status_code == 502
            continue
        shown = client.show(name)
        assert tuple(shown.capabilities or ()) == definition.capabilities, (name, definition.kind)
        capabilities = set(definition.capabilities)
        if definition.kind in REFUSED_AT_LOAD:
            with pytest.raises(ollama.ResponseError) as refused:
                client.generate(name, "hello")
            assert refused.value.status_code == REFUSED_AT_LOAD[definition.kind], name
        elif "embedding" in capabilities:
            (vector,) = client.embed(name, input="air gap").embeddings
            assert len(vector) == definition.embedding_length
            assert math.isclose(math.fsum(v * v for v in vector), 1.0, rel_tol=1e-6)
            with pytest.raises(ollama.ResponseError, match="does not support generate"):
                client.generate(name, "hello")
        else:
            images = ["iVBORw0KGgo="] if "vision" in capabilities else None
            assert client.generate(name, "hello", images=images, options={"num_predict": 2}).done, name
    assert {"chat", "embedding", "vision-projector", "split", "tensor", "cloud"} <= kinds
