"""Models the pinned ollama cannot take are refused with one line (exit 2) before any model blob is fetched;
the pinned ollama's User-Agent; version rules for ``requires``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ollama_airgap.builder import Builder
from ollama_airgap.cache import BlobCache
from ollama_airgap.errors import UnsupportedModelError
from ollama_airgap.hashing import sha256_bytes
from ollama_airgap.ollama_compat import (
    check_config,
    go_version,
    is_cloud_tag,
    supports_command,
    user_agent,
    version_lt,
)
from ollama_airgap.progress import Reporter
from ollama_airgap.spec import load_spec


def test_versions() -> None:
    assert version_lt("0.14.1", "0.30.0") and not version_lt("0.30.0", "0.14.1")
    assert version_lt("0.30.0-rc1", "0.30.0") and version_lt("0.30.0-rc1", "0.30.0-rc2")
    assert version_lt("0.30.0-rc.9", "0.30.0-rc.10")  # numeric identifiers compare as numbers (semver)
    assert not version_lt("v0.14.0", "0.14") and not version_lt("0.14", "0.14.0")
    assert version_lt("0.9.9", "0.10.0")


def test_user_agent_of_the_pinned_ollama() -> None:
    """makeRequest in server/images.go: ollama/<version> (<GOARCH> <GOOS>) Go/<runtime.Version()>."""
    assert user_agent("0.14.1") == "ollama/0.14.1 (amd64 linux) Go/go1.24.1"
    assert user_agent("0.13.5", "arm64") == "ollama/0.13.5 (arm64 linux) Go/go1.24.1"
    assert user_agent("0.35.1") == "ollama/0.35.1 (amd64 linux) Go/go1.26.0"
    assert go_version("0.12.8") == "1.24.0" and go_version("0.23.0") == "1.24.1" and go_version("0.23.1") == "1.26.0"
    assert go_version("0.5.1") == "1.22.8"


def test_modelfile_commands_by_version() -> None:
    assert not supports_command("0.14.1", "DRAFT") and supports_command("0.35.1", "DRAFT")
    assert not supports_command("0.13.5", "REQUIRES") and supports_command("0.14.1", "REQUIRES")
    assert supports_command("0.13.5", "FROM") and supports_command("0.13.5", "PARSER")
    assert not supports_command("0.11.11", "RENDERER")


def test_cloud_tags() -> None:
    assert is_cloud_tag("cloud") and is_cloud_tag("120b-cloud")
    assert not is_cloud_tag("latest") and not is_cloud_tag("cloudy")


@pytest.mark.parametrize(
    "config, message",
    [
        ({"requires": "0.99.0"}, "model acme/x:v1: requires ollama 0.99.0, the bundle pins ollama 0.14.1; "),
        ({"requires": "v0.15.0-rc1"}, "model acme/x:v1: requires ollama 0.15.0-rc1, the bundle pins ollama 0.14.1"),
        ({"requires": "soon"}, "model acme/x:v1: config requires 'soon', which is not a version"),
        ({"remote_host": "https://ollama.com:443"}, "model acme/x:v1: a cloud model (config remote "),
        ({"remote_model": "gpt-oss:120b"}, "model acme/x:v1: a cloud model (config remote 'gpt-oss:120b')"),
    ],
)
def test_config_refusals(config: dict[str, object], message: str) -> None:
    with pytest.raises(UnsupportedModelError) as info:
        check_config("model acme/x:v1", config, "0.14.1")
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("config", [{}, {"requires": ""}, {"requires": "0.14.0"}, {"requires": "0.14.1"}])
def test_config_accepted(config: dict[str, object]) -> None:
    check_config("m", config, "0.14.1")


def store_with(tmp_path: Path, config: dict[str, object]) -> tuple[Path, str]:
    """An ollama store holding acme/x:v1 with the given config; returns the store and the model blob's digest."""
    store = tmp_path / "store"
    blobs = store / "blobs"
    blobs.mkdir(parents=True)

    def blob(data: bytes) -> dict[str, object]:
        digest = "sha256:" + sha256_bytes(data)
        (blobs / digest.replace(":", "-")).write_bytes(data)
        return {"digest": digest, "size": len(data)}

    config_blob = blob(json.dumps(config).encode())
    model = blob(b"GGUF" + b"\0" * 60)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **config_blob},
        "layers": [{"mediaType": "application/vnd.ollama.image.model", **model}],
    }
    path = store / "manifests" / "registry.ollama.ai" / "acme" / "x" / "v1"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(manifest))
    return store, str(model["digest"])


def builder(tmp_path: Path, store: Path | None, models: list[str] | None = None) -> Builder:
    spec = {"name": "t", "ollama": {"version": "0.14.1", "architectures": ["arm64", "amd64"]}}
    if models:
        spec["models"] = models
    if store:
        spec["store_models"] = [{"path": str(store), "models": ["acme/x:v1"]}]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    # The registry stand-in is a closed port: any request would fail with a connection error, not the refusal.
    loaded = load_spec(path, {"registry.ollama.ai": "http://127.0.0.1:9", "github.com": "http://127.0.0.1:9"})
    return Builder(loaded, BlobCache(tmp_path / "cache"), Reporter(enabled=False))


@pytest.mark.parametrize(
    "config, message",
    [
        ({"requires": "0.99.0"}, "requires ollama 0.99.0, the bundle pins ollama 0.14.1"),
        ({"remote_host": "https://ollama.com:443", "remote_model": "x"}, "a cloud model"),
    ],
)
def test_refused_before_the_model_blob(tmp_path: Path, config: dict[str, object], message: str) -> None:
    store, model_digest = store_with(tmp_path, config)
    build = builder(tmp_path, store)
    with pytest.raises(UnsupportedModelError, match=message):
        build.resolve_models()
    assert not build.cache.has(model_digest)  # only the config was read


def test_cloud_tag_refused_without_a_request(tmp_path: Path) -> None:
    build = builder(tmp_path, None, ["gpt-oss:120b-cloud"])
    with pytest.raises(UnsupportedModelError, match=r"^model gpt-oss:120b-cloud: a cloud model \(tag '120b-cloud'\)"):
        build.resolve_models()
    assert build.fetcher.stats.requests == 0


def test_model_requests_carry_the_pinned_user_agent(tmp_path: Path) -> None:
    build = builder(tmp_path, None, ["x"])
    assert build.model_registry.agent == {"User-Agent": "ollama/0.14.1 (arm64 linux) Go/go1.24.1"}
    assert build.registry.agent == {}  # images and releases: the bundler's own
