"""server/routes.go EmbedHandler (/api/embed) and EmbeddingsHandler (/api/embeddings, legacy).

Both schedule the model without wanting a capability, so any model loads. The runner then embeds: llama-server
(v0.30) is started with --embedding only for a GGUF with `<arch>.pooling_type`, and answers 501 "This server
does not support embeddings. Start it with `--embeddings`" otherwise (EmbedHandler passes the status on,
EmbeddingsHandler answers 500). Older runners embed with any model. Vectors are deterministic (model digest +
text) with the GGUF's `<arch>.embedding_length`; /api/embed normalises them (and `dimensions` truncates, then
normalises again), /api/embeddings returns them as the runner gives them.
"""

from __future__ import annotations

import json
import time
from typing import Any

from .capabilities import EMBEDDING, capabilities
from .inference import InferenceHandler
from .model import Model
from .runtime import count_prompt_tokens, normalize, raw_embedding
from .util import ApiError
from .version import at_least

EMBEDDINGS_UNSUPPORTED = "This server does not support embeddings. Start it with `--embeddings`"


class EmbedHandler(InferenceHandler):
    """/api/embed and /api/embeddings."""

    def _embedding_model(self, request: dict[str, Any], path: str) -> tuple[Model, float, float]:
        name = str(request.get("model") or "")
        missing = ApiError(f"model {json.dumps(name)} not found, try pulling it first", 404)  # handleScheduleError
        try:
            model, _ref = self._find(request, path)
        except ApiError as err:
            raise (missing if err.status == 404 else err) from None
        if model.is_remote or (model.model_path is None and not model.tensor_layers):
            raise missing
        options, keep_alive = self._options(model, request)
        started = time.monotonic()
        self.server.runtime.load(model, keep_alive, int(options.get("num_ctx") or 4096))
        return model, started, time.monotonic() - started

    def _runner_embedding(self, model: Model, text: str, status: int) -> list[float]:
        if at_least("0.30.0") and EMBEDDING not in capabilities(model):
            raise ApiError(EMBEDDINGS_UNSUPPORTED, status)
        return raw_embedding(model, text)

    def embed(self) -> None:
        request = self._json_body()
        value = request.get("input")
        if isinstance(value, str):
            inputs = [value] if value else []
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            inputs = list(value)
        elif value is None:
            inputs = []
        else:
            raise ApiError("invalid input type", 400)
        model, started, load_seconds = self._embedding_model(request, "/api/embed")
        name = str(request.get("model") or "")
        if not inputs:
            self._json(200, {"model": name, "embeddings": []})
            return
        info = model.gguf()
        context = int(info.arch_value("context_length") or 0) if info is not None else 0
        num_ctx = int((request.get("options") or {}).get("num_ctx") or model.options.get("num_ctx") or 0)
        limit = min(num_ctx, context) if num_ctx > 0 and context else context
        dimensions = int(request.get("dimensions") or 0)
        embeddings: list[list[float]] = []
        tokens = 0
        for text in inputs:
            count = count_prompt_tokens(text)
            if request.get("truncate") is False and limit and count > limit:
                raise ApiError("the input length exceeds the context length", 400)
            vector = normalize(self._runner_embedding(model, text, 501))
            if 0 < dimensions < len(vector):
                vector = normalize(vector[:dimensions])
            embeddings.append(vector)
            tokens += min(count, limit) if limit else count
        self._json(
            200,
            {
                "model": name,
                "embeddings": embeddings,
                "total_duration": int((time.monotonic() - started) * 1e9) + 1_000_000,
                "load_duration": int(load_seconds * 1e9) + 1_000_000,
                "prompt_eval_count": tokens,
            },
        )

    def embeddings(self) -> None:
        request = self._json_body()
        if not str(request.get("model") or "").strip():
            raise ApiError("model is required", 400)
        model, _, _ = self._embedding_model(request, "/api/embeddings")
        prompt = str(request.get("prompt") or "")
        if not prompt:
            self._json(200, {"embedding": []})
            return
        self._json(200, {"embedding": self._runner_embedding(model, prompt, 500)})
