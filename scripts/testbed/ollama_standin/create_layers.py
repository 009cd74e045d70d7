"""The base layers of a model being created: from uploaded files or from an existing model (server/create.go
convertModelFromFiles, ggufLayersWithMediaType, splitGGUFGroupKey; server/model.go parseFromModel)."""

from __future__ import annotations

import re
import struct
from collections.abc import Generator
from typing import Any

from .ggufread import GGUFError, GGUFInfo, is_gguf, read_gguf
from .names import ModelName, parse_name
from .store import MT_ADAPTER, MT_DRAFT, MT_MODEL, MT_PROJECTOR, Store
from .util import ApiError, log

# A base layer of a model being created: (layer, status line, its GGUF metadata when it is one).
BaseLayer = tuple[dict[str, Any], str, GGUFInfo | None]
GGUF_MEDIA_TYPES = (MT_MODEL, MT_PROJECTOR, MT_ADAPTER, MT_DRAFT)
SPLIT_NAME = re.compile(r"^(.*)-(\d{5})-of-(\d{5})\.gguf$")


def gguf_media_type(gguf: GGUFInfo) -> str:
    """ggufLayersWithMediaType: an adapter by general.type, a projector by general.type projector/mmproj or by
    vision.block_count without block_count (a standalone vision model, i.e. a clip projector)."""
    kind = gguf.kv.get("general.type")
    if kind == "adapter":
        return MT_ADAPTER
    if kind in ("projector", "mmproj"):
        return MT_PROJECTOR
    if not gguf.arch_value("block_count") and (gguf.arch_value("vision.block_count") or 0) > 0:
        return MT_PROJECTOR
    return MT_MODEL


def _split_uint(gguf: GGUFInfo, key: str) -> int | None:
    for name in (key, f"{gguf.architecture}.{key}"):
        value = gguf.kv.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFFFF:
            return value
    return None


def _split_key(file_name: str, media_type: str, gguf: GGUFInfo) -> str | None:
    """splitGGUFGroupKey: None for an unsplit GGUF; errors as ollama words them."""
    count = _split_uint(gguf, "split.count")
    if count is None or count <= 1:
        return None
    match = SPLIT_NAME.match(file_name.rsplit("/", 1)[-1])
    if not match or int(match.group(2)) == 0 or int(match.group(3)) == 0:
        raise ApiError(f'split GGUF "{file_name}" must use llama.cpp split filename pattern')
    prefix, index, name_count = match.group(1), int(match.group(2)) - 1, int(match.group(3))
    if name_count != count:
        raise ApiError(f'split GGUF "{file_name}" filename count {name_count} does not match metadata count {count}')
    number = _split_uint(gguf, "split.no")
    if number is None:
        raise ApiError(f'split GGUF "{file_name}" is missing split.no metadata')
    if number != index:
        raise ApiError(f'split GGUF "{file_name}" filename index {index} does not match metadata index {number}')
    return f"{media_type}:{prefix}:{count}"


def _ordered_shards(group: list[tuple[str, BaseLayer]]) -> list[BaseLayer]:
    """mergeSplitGGUFLayers' checks. ollama (v0.30+) then rewrites the shards into one model layer with
    llama-quantize; the stand-in cannot, and keeps one `model` layer per shard in shard order, as split models
    are served by the registry."""
    first_name, (_, _, first) = group[0]
    assert first is not None
    count = _split_uint(first, "split.count") or 0
    if count != len(group):
        raise ApiError(f'split GGUF "{first_name}" has {len(group)} shards, expected {count}')
    by_index: dict[int, BaseLayer] = {}
    for _name, layer in group:
        assert layer[2] is not None
        index = _split_uint(layer[2], "split.no") or 0
        if index in by_index:
            raise ApiError(f"split GGUF has duplicate shard index {index}")
        by_index[index] = layer
    if 0 not in by_index:
        raise ApiError("split GGUF is missing first shard")
    for index in range(count):
        if index not in by_index:
            raise ApiError(f'split GGUF "{first_name}" is missing shard {index}')
    return [by_index[index] for index in range(count)]


def layers_from_files(
    store: Store, files: dict[str, str], media_type: str = ""
) -> Generator[dict[str, Any], None, list[BaseLayer]]:
    """convertModelFromFilesWithMediaType for GGUF files (sorted by name); `media_type` forces the kind."""
    names = list(files)
    if any(name.endswith(".safetensors") for name in names):
        raise ApiError("this ollama stand-in cannot convert safetensors models (convert.ConvertModel)")
    for file_name, digest in files.items():
        if not file_name.endswith(".gguf") and not is_gguf(store.blob_path(digest)):
            raise ApiError("unknown type", 400)
    if not files:
        raise ApiError("no files provided to convert", 400)
    if len(files) > 1 and media_type == MT_ADAPTER:
        raise ApiError("only one adapter is currently supported", 400)
    layers: list[BaseLayer] = []
    groups: dict[str, list[tuple[str, BaseLayer]]] = {}
    for file_name, digest in sorted(files.items()):
        yield {"status": "parsing GGUF"}
        path = store.blob_path(digest)
        if not path.exists():
            raise ApiError(f"open {path}: no such file or directory")
        if not is_gguf(path):
            log("ERROR", "unsupported content type: application/octet-stream", source="create.go")
            raise ApiError("supplied file was not in GGUF format", 400)
        try:
            gguf = read_gguf(path, keep_arrays=())
        except (GGUFError, OSError, struct.error) as err:
            raise ApiError(str(err)) from err
        kind = media_type or gguf_media_type(gguf)
        layer, status = store.layer_from_blob(digest, kind)
        key = _split_key(file_name, kind, gguf)
        if key is None:
            layers.append((layer, status, gguf))
        else:
            groups.setdefault(key, []).append((file_name, (layer, status, gguf)))
    for group in groups.values():
        layers += _ordered_shards(group)
    return layers


def pull_error(name: ModelName) -> str:
    return (
        f'pull model manifest: Get "https://{name.host}/v2/{name.namespace}/{name.model}/manifests/{name.tag}": '
        f"this ollama stand-in has no network access (air gap)"
    )


def layers_from_model(
    store: Store, source: str, config: dict[str, Any]
) -> Generator[dict[str, Any], None, list[BaseLayer]]:
    """parseFromModel: reuse an existing local model's layers (a missing one would be pulled: air gap). The base
    config's renderer, parser, requires, model_format and capabilities carry over (CreateHandler)."""
    name = parse_name(source)
    if not name.is_valid():
        raise ApiError("invalid model name", 400)
    try:
        manifest = store.read_manifest(store.existing_name(name))
    except (OSError, ValueError):
        yield {"status": "pulling manifest"}
        raise ApiError(pull_error(name)) from None
    base_config = store.read_config(manifest)
    for key in ("renderer", "parser", "requires", "model_format", "capabilities"):
        if base_config.get(key) and not config.get(key):
            config[key] = base_config[key]
    layers: list[BaseLayer] = []
    for item in manifest.layers:
        layer, status = store.layer_from_blob(item["digest"], item["mediaType"], name.display_shortest())
        if item.get("name"):
            layer["name"] = item["name"]
        gguf = None
        if item["mediaType"] in GGUF_MEDIA_TYPES:
            try:
                gguf = read_gguf(store.blob_path(item["digest"]), keep_arrays=())
            except (GGUFError, OSError, struct.error) as err:
                raise ApiError(str(err)) from err
        layers.append((layer, status, gguf))
    return layers
