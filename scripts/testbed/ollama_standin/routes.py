"""server/routes.go handlers: version, tags, ps, show, create, blobs, delete, copy, pull, push."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

from .capabilities import capabilities
from .create import create_model, legacy_create_request
from .create_layers import pull_error
from .embed import EmbedHandler
from .model import get_model
from .names import parse_name
from .show import show_response
from .store import MT_MODEL
from .util import ApiError, go_time
from .version import VERSION, at_least


class Handler(EmbedHandler):
    """Every route of GenerateRoutes that the stand-in serves."""

    def _route(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        method = self.command
        blob = re.fullmatch(r"/api/blobs/([^/]+)", path)
        routes: dict[str, dict[str, Callable[[], None]]] = {
            "/": {"GET": self.root, "HEAD": self.root},
            "/api/version": {"GET": self.version, "HEAD": self.version},
            "/api/tags": {"GET": self.tags, "HEAD": self.tags},
            "/api/ps": {"GET": self.ps},
            "/api/show": {"POST": self.show},
            "/api/generate": {"POST": self.generate},
            "/api/chat": {"POST": self.chat},
            "/api/embed": {"POST": self.embed},
            "/api/embeddings": {"POST": self.embeddings},
            "/api/create": {"POST": self.create},
            "/api/delete": {"DELETE": self.delete},
            "/api/copy": {"POST": self.copy},
            "/api/pull": {"POST": self.pull},
            "/api/push": {"POST": self.push},
        }
        if blob:
            methods: dict[str, Callable[[], None]] = {
                "HEAD": lambda: self.head_blob(urllib.parse.unquote(blob.group(1))),
                "POST": lambda: self.create_blob(urllib.parse.unquote(blob.group(1))),
            }
        else:
            methods = routes.get(path, {})
        if not methods:
            self._send(404, b"404 page not found", "text/plain")
        elif method not in methods:
            self._send(405, b"405 method not allowed", "text/plain")
        else:
            methods[method]()

    # -- handlers --------------------------------------------------------------------------------------------

    def root(self) -> None:
        self._send(200, b"Ollama is running", "text/plain; charset=utf-8")

    def version(self) -> None:
        self._json(200, {"version": VERSION})

    def tags(self) -> None:
        store = self.server.store
        models: list[dict[str, Any]] = []
        mtimes: list[float] = []
        for name, manifest in store.manifests().items():
            config = store.read_config(manifest)
            parent = next((x.get("from", "") for x in manifest.layers if x.get("mediaType") == MT_MODEL), "")
            models.append(
                {
                    "name": name.display_shortest(),
                    "model": name.display_shortest(),
                    "modified_at": go_time(manifest.mtime),
                    "size": manifest.size(),
                    "digest": manifest.digest,
                    "details": {
                        "parent_model": parent,
                        "format": config.get("model_format", ""),
                        "family": config.get("model_family", ""),
                        "families": config.get("model_families"),
                        "parameter_size": config.get("model_type", ""),
                        "quantization_level": config.get("file_type", ""),
                    },
                }
            )
            if at_least("0.30.0"):  # the model list cache (server/model_list_cache.go) adds capabilities
                with contextlib.suppress(OSError, ValueError, ApiError):
                    models[-1]["capabilities"] = capabilities(get_model(store, manifest))
            if config.get("remote_host"):  # api.ListModelResponse (v0.12)
                models[-1]["remote_model"] = config.get("remote_model", "")
                models[-1]["remote_host"] = config["remote_host"]
            mtimes.append(manifest.mtime)
        ordered = [model for _, model in sorted(zip(mtimes, models, strict=True), key=lambda p: -p[0])]
        self._json(200, {"models": ordered})

    def ps(self) -> None:
        self._json(200, {"models": self.server.runtime.ps()})

    def show(self) -> None:
        self._json(200, show_response(self.server.store, self._json_body()))

    def create(self) -> None:
        request = self._json_body()
        store = self.server.store
        if request.get("modelfile") and not request.get("files") and not request.get("from"):
            request = legacy_create_request(store, request)
        events = create_model(store, request)
        if request.get("stream", True) is False:
            try:
                self._json(200, self._wait(events))
            except ApiError as err:
                self._error(err.status, err.message)
        else:
            self._stream(events)

    def head_blob(self, digest: str) -> None:
        path = self.server.store.blob_path(digest)
        if not path.exists():
            self._error(404, f'blob "{digest}" not found')
            return
        self._send(200, b"", None)

    def create_blob(self, digest: str) -> None:
        store = self.server.store
        path = store.blob_path(digest)
        if path.exists():
            self.close_connection = True  # the body is not read, as in ollama
            self._send(200, b"", None)
            return
        try:
            store.write_blob(self._body_chunks(), expected=digest)
        except ApiError:
            self.close_connection = True
            raise
        self._send(201, b"", None)

    def delete(self) -> None:
        request = self._json_body()
        text = str(request.get("model") or request.get("name") or "")
        store = self.server.store
        name = parse_name(text)
        if not name.is_valid():
            raise ApiError(f"name {json.dumps(text)} is invalid", 400)
        with store.lock:
            manifest = store.find(text)
            store.remove(manifest)
        self._send(200, b"", None)

    def copy(self) -> None:
        request = self._json_body()
        store = self.server.store
        source, destination = (
            str(request.get("source") or ""),
            parse_name(str(request.get("destination") or "")),
        )
        if not destination.is_valid():
            raise ApiError(f"destination {json.dumps(request.get('destination'))} is invalid", 400)
        try:
            manifest = store.find(source)
        except ApiError:
            raise ApiError(f'model "{source}" not found', 404) from None
        with store.lock:
            target = store.manifest_path(store.existing_name(destination))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(manifest.path, target)
        self._send(200, b"", None)

    def pull(self) -> None:
        request = self._json_body()
        name = parse_name(str(request.get("model") or request.get("name") or ""))
        if not name.is_valid():
            raise ApiError("invalid model name", 400)

        def events() -> Iterator[dict[str, Any]]:
            yield {"status": "pulling manifest"}
            raise ApiError(pull_error(name))

        if request.get("stream", True) is False:
            raise ApiError(pull_error(name))
        self._stream(events())

    def push(self) -> None:
        request = self._json_body()
        name = parse_name(str(request.get("model") or request.get("name") or ""))
        self.server.store.find(str(name))
        raise ApiError(f"this ollama stand-in has no network access (air gap): cannot push {name}")
