"""server/create.go: CreateHandler's work and the legacy {"modelfile"} form."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .create_layers import BaseLayer, layers_from_files, layers_from_model
from .envconfig import env_bool
from .ggufread import is_gguf
from .modelfile import ModelfileError, expand_path, modelfile_create_request, parse_modelfile
from .names import ModelName, parse_name
from .store import (
    CONFIG_MEDIA_TYPE,
    MT_ADAPTER,
    MT_DRAFT,
    MT_LICENSE,
    MT_MESSAGES,
    MT_MODEL,
    MT_PARAMS,
    MT_SYSTEM,
    MT_TEMPLATE,
    Manifest,
    Store,
)
from .util import ApiError, go_json, human_number
from .version import at_least


def _valid_relative_path(path: str) -> bool:
    """io/fs.ValidPath."""
    if path == ".":
        return True
    return bool(path) and not path.startswith("/") and all(p not in ("", ".", "..") for p in path.split("/"))


def create_model(store: Store, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """CreateHandler's work: yields progress dicts, raises ApiError. Validation errors raise before the first yield."""
    files = request.get("files") or {}
    drafts = (request.get("draft_files") or {}) if at_least("0.30.0") else {}
    adapters = request.get("adapters") or {}
    for mapping in (files, drafts, adapters):
        for path, digest in mapping.items():
            if mapping is not adapters and not _valid_relative_path(path):
                raise ApiError("file path must be relative", 400)
            if not digest:
                raise ApiError("invalid digest format", 400)
    name = parse_name(str(request.get("model") or request.get("name") or ""))
    if not name.is_valid():
        raise ApiError("invalid model name", 400)
    name = store.existing_name(name)
    return _create_steps(store, request, name, files, drafts, adapters)


def _create_steps(
    store: Store,
    request: dict[str, Any],
    name: ModelName,
    files: dict[str, str],
    drafts: dict[str, str],
    adapters: dict[str, str],
) -> Iterator[dict[str, Any]]:
    with store.lock:
        try:
            old_manifest: Manifest | None = store.read_manifest(name)
        except (OSError, ValueError):
            old_manifest = None
        config: dict[str, Any] = {
            "model_format": "",
            "model_family": "",
            "model_families": None,
            "model_type": "",
            "file_type": "",
        }
        for key in ("renderer", "parser", "requires"):
            if request.get(key) and (key != "requires" or at_least("0.14.0")):
                config[key] = request[key]
        base: list[BaseLayer] = []
        if request.get("from"):
            base = yield from layers_from_model(store, str(request["from"]), config)
        elif files:
            base = yield from layers_from_files(store, files)
        else:
            raise ApiError("neither 'from' or 'files' was specified", 400)
        if drafts:
            base += yield from layers_from_files(store, drafts, MT_DRAFT)
        if adapters:
            base += yield from layers_from_files(store, adapters, MT_ADAPTER)

        quantize = str(request.get("quantize") or request.get("quantization") or "").upper()
        layers: list[dict[str, Any]] = []
        statuses: list[str] = []
        shard_parameters = sum(
            gguf.parameter_count for layer, _, gguf in base if gguf is not None and layer["mediaType"] == MT_MODEL
        )
        for layer, status, gguf in base:
            if gguf is not None and layer["mediaType"] == MT_MODEL and gguf.kv.get("split.no", 0) == 0:
                if quantize and quantize != gguf.file_type:
                    raise ApiError("this ollama stand-in cannot quantize models")
                split = (gguf.kv.get("split.count") or 1) > 1
                parameters = shard_parameters if split else gguf.parameter_count
                config["model_format"] = config["model_format"] or "gguf"
                config["model_family"] = config["model_family"] or gguf.architecture
                config["model_type"] = config["model_type"] or human_number(parameters)
                config["file_type"] = config["file_type"] or gguf.file_type
                config["model_families"] = (config["model_families"] or []) + [gguf.architecture]
            elif gguf is not None and layer["mediaType"] == MT_DRAFT:
                config["draft"] = {"model_format": "gguf", "architecture": gguf.architecture}
            layers.append(layer)
            statuses.append(status)

        def replace(media_type: str, text: str) -> None:
            for index in reversed(range(len(layers))):
                if layers[index]["mediaType"] == media_type:
                    del layers[index], statuses[index]
            new, status = store.new_layer(text.encode("utf-8"), media_type)
            layers.append(new)
            statuses.append(status)

        if request.get("template"):
            template = str(request["template"])
            if template.count("{{") != template.count("}}"):
                raise ApiError("template error: unbalanced action delimiters", 400)
            replace(MT_TEMPLATE, template)
        if request.get("system"):
            replace(MT_SYSTEM, str(request["system"]))
        license_value = request.get("license")
        for text in [license_value] if isinstance(license_value, str) else list(license_value or []):
            if text:
                new, status = store.new_layer(str(text).encode("utf-8"), MT_LICENSE)
                layers.append(new)
                statuses.append(status)
        params = dict(request.get("parameters") or {})
        for layer in [item for item in layers if item["mediaType"] == MT_PARAMS]:
            for key, value in json.loads(store.blob_path(layer["digest"]).read_bytes()).items():
                params.setdefault(key, value)
        if params:
            replace(MT_PARAMS, go_json(dict(sorted(params.items()))))
        messages = request.get("messages") or []
        if messages:
            body = [{"role": m.get("role", ""), "content": m.get("content", "")} for m in messages]
            replace(MT_MESSAGES, go_json(body))

        config.update({"architecture": "amd64", "os": "linux"})
        config.setdefault("rootfs", {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]})
        config_layer, _ = store.new_layer(go_json(_ordered_config(config)).encode("utf-8"), CONFIG_MEDIA_TYPE)
        for status in statuses:
            yield {"status": status}
        yield {"status": "writing manifest"}
        store.write_manifest(name, config_layer, layers)
        if old_manifest is not None and not env_bool("OLLAMA_NOPRUNE"):
            store.remove_unused_layers(old_manifest)
        yield {"status": "success"}


def _ordered_config(config: dict[str, Any]) -> dict[str, Any]:
    """ConfigV2 field order."""
    order = ["model_format", "model_family", "model_families", "model_type", "file_type", "renderer", "parser",
             "requires", "remote_host", "remote_model", "capabilities", "context_length", "embedding_length",
             "base_name", "draft", "architecture", "os", "rootfs"]  # fmt: skip
    return {key: config[key] for key in order if key in config}


def legacy_create_request(store: Store, request: dict[str, Any]) -> dict[str, Any]:
    """Translate the pre-0.5.5 {"modelfile": ...} body into the JSON form, resolving FROM on the server."""
    try:
        commands = parse_modelfile(str(request["modelfile"]))
    except ModelfileError as err:
        raise ApiError(str(err), 400) from err
    base_dir = Path(request["path"]).parent if request.get("path") else Path.cwd()
    rewritten: list[tuple[str, str]] = []
    files: dict[str, str] = {}
    for name, args in commands:
        if name != "model":
            rewritten.append((name, args))
            continue
        if args.startswith("@"):
            digest = args[1:]
            if not store.blob_path(digest).exists():
                raise ApiError(f"blob {digest!r} not found", 400)
            files[f"{digest.replace(':', '-')}.gguf" if is_gguf(store.blob_path(digest)) else digest] = digest
            continue
        path = expand_path(args, base_dir)
        if path.is_file():
            with path.open("rb") as handle:
                digest, _, _ = store.write_blob(iter(lambda: handle.read(1 << 20), b""))
            files[path.name] = digest
        else:
            rewritten.append((name, args))
    try:
        body, _ = modelfile_create_request(rewritten, base_dir)
    except ModelfileError as err:
        raise ApiError(str(err), 400) from err
    body.pop("files", None)
    if files:
        body["files"] = files
    body["model"] = request.get("model") or request.get("name") or ""
    if "stream" in request:
        body["stream"] = request["stream"]
    return body
