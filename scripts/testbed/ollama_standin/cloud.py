"""Cloud (remote) models: internal/modelref (`:cloud` / `-cloud` / `:local` suffixes, v0.17.6), the remote-model
branch of GenerateHandler/ChatHandler (config remote_host + remote_model, v0.12), OLLAMA_REMOTES, and
OLLAMA_NO_CLOUD (envconfig.NoCloud, internal/cloud/policy.go, v0.16.2). The stand-in has no network: a request
that ollama would send to the remote host fails as a failed dial does."""

from __future__ import annotations

import json
import os
import urllib.parse
from dataclasses import dataclass

from .envconfig import env_bool
from .model import Model
from .util import ApiError
from .version import at_least

CLOUD_PROXY_BASE_URL = "https://ollama.com:443"
DISABLED_PREFIX = "ollama cloud is disabled"
REMOTE_INFERENCE_UNAVAILABLE = "remote model is unavailable"
REMOTE_DETAILS_UNAVAILABLE = "remote model details are unavailable"


@dataclass(frozen=True)
class ModelRef:
    original: str
    base: str
    source: str  # "", "local" or "cloud"


def parse_model_ref(raw: str) -> ModelRef:
    """modelref.ParseRef (v0.17.6; older versions take every name as it is)."""
    raw = raw.strip()
    if not at_least("0.17.6"):
        return ModelRef(raw, raw, "")
    base, source = _source_suffix(raw)
    if source and _source_suffix(base)[1]:
        raise ApiError(f"use either :local or :cloud, not both: {json.dumps(raw)}", 400)
    return ModelRef(raw, base, source)


def _source_suffix(raw: str) -> tuple[str, str]:
    index = raw.rfind(":")
    if index < 0:
        return raw, ""
    suffix = raw[index + 1 :].strip()
    if suffix.lower() in ("cloud", "local"):
        return raw[:index], suffix.lower()
    if "/" not in suffix and suffix.lower().endswith("-cloud"):
        return raw[: index + 1] + suffix[: -len("-cloud")], "cloud"
    return raw, ""


def cloud_disabled() -> bool:
    """envconfig.NoCloud (OLLAMA_NO_CLOUD; ~/.ollama/server.json's disable_ollama_cloud is not read)."""
    return at_least("0.16.2") and env_bool("OLLAMA_NO_CLOUD")


def remotes() -> list[str]:
    """envconfig.Remotes: OLLAMA_REMOTES split at commas, default ollama.com."""
    raw = os.environ.get("OLLAMA_REMOTES", "").strip()
    return raw.split(",") if raw else ["ollama.com"]


def disabled_error(operation: str) -> ApiError:
    return ApiError(f"{DISABLED_PREFIX}: {operation}", 403)


def _dial_error(url: str, path: str) -> str:
    host = urllib.parse.urlsplit(url).hostname or url
    return f'Post "{url.rstrip("/")}{path}": dial tcp: lookup {host}: no such host'


def proxy_to_cloud(path: str) -> ApiError:
    """proxyCloudJSONRequest for a `:cloud` name: 403 when cloud is disabled, else the dial fails (502)."""
    if cloud_disabled():
        return disabled_error(REMOTE_INFERENCE_UNAVAILABLE)
    return ApiError(_dial_error(CLOUD_PROXY_BASE_URL, path), 502)


def remote_refusal(model: Model, ref: ModelRef, path: str) -> ApiError:
    """What GenerateHandler/ChatHandler answer for a model whose config names a remote host."""
    if ref.source == "local":
        return ApiError(f"model '{ref.original}' not found", 404)
    if cloud_disabled():
        return disabled_error(REMOTE_INFERENCE_UNAVAILABLE)
    remote = str(model.config.get("remote_host", ""))
    if urllib.parse.urlsplit(remote).hostname not in remotes():
        return ApiError("this server cannot run this remote model", 400)
    return ApiError(_dial_error(remote, path), 500)
