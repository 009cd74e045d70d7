"""server/routes.go GenerateHandler and ChatHandler (fake completions)."""

from __future__ import annotations

import json
import time
from typing import Any

from .envconfig import default_keep_alive, request_keep_alive
from .http_base import BaseHandler
from .model import Model, get_model
from .runtime import count_prompt_tokens, fake_completion
from .util import ApiError, go_time


class InferenceHandler(BaseHandler):
    """Generate and chat."""

    def _prepare(self, request: dict[str, Any]) -> tuple[Model, dict[str, Any], float]:
        text = str(request.get("model") or "")
        if not text:
            raise ApiError("model is required", 400)
        store = self.server.store
        model = get_model(store, store.find(text))
        options = dict(model.options)
        options.update(request.get("options") or {})
        keep_alive = request_keep_alive(request.get("keep_alive"))
        return model, options, default_keep_alive() if keep_alive is None else keep_alive

    def _inference(self, request: dict[str, Any], chat: bool) -> None:
        model, options, keep_alive = self._prepare(request)
        runtime = self.server.runtime
        stream = request.get("stream", True) is not False
        messages = list(request.get("messages") or [])
        prompt = str(request.get("prompt") or "")
        empty = not messages if chat else (not prompt and not request.get("images"))
        if empty:
            if keep_alive == 0:
                runtime.unload(model)
                reason = "unload"
            else:
                runtime.load(model, keep_alive, int(options.get("num_ctx") or 4096))
                reason = "load"
            final: dict[str, Any] = {"model": text_model(request), "created_at": go_time(time.time(), utc=True)}
            if chat:
                final["message"] = {"role": "assistant", "content": ""}
            else:
                final["response"] = ""
            final.update({"done": True, "done_reason": reason})
            self._json(200, final)
            return
        started = time.monotonic()
        vocab, load_seconds = runtime.load(model, keep_alive, int(options.get("num_ctx") or 4096))
        system = str(request.get("system") or model.system)
        if chat:
            seed_source = json.dumps([model.system, messages], sort_keys=True, ensure_ascii=False)
            prompt_tokens = count_prompt_tokens(model.system, *(str(m.get("content", "")) for m in messages))
        else:
            seed_source = json.dumps([system, prompt], ensure_ascii=False)
            prompt_tokens = count_prompt_tokens(system, prompt)
        stop = options.get("stop") or []
        stop = [stop] if isinstance(stop, str) else [str(s) for s in stop]
        pieces, reason = fake_completion(
            vocab, model.manifest.digest + seed_source, int(options.get("num_predict") or -1), stop
        )

        def chunk(piece: str, done: bool) -> dict[str, Any]:
            body: dict[str, Any] = {"model": text_model(request), "created_at": go_time(time.time(), utc=True)}
            if chat:
                body["message"] = {"role": "assistant", "content": piece}
            else:
                body["response"] = piece
            body["done"] = done
            return body

        def finish(body: dict[str, Any]) -> dict[str, Any]:
            prompt_eval = prompt_tokens * 2_000_000
            evaluation = len(pieces) * 5_000_000
            load = int(load_seconds * 1e9) + 1_000_000
            body["done_reason"] = reason
            if not chat:
                body["context"] = list(range(1, prompt_tokens + 1)) + [token for token, _ in pieces]
            body.update(
                {
                    "total_duration": int((time.monotonic() - started) * 1e9) + load + prompt_eval + evaluation,
                    "load_duration": load,
                    "prompt_eval_count": prompt_tokens,
                    "prompt_eval_duration": prompt_eval,
                    "eval_count": len(pieces),
                    "eval_duration": evaluation,
                }
            )
            return body

        if keep_alive == 0:
            runtime.unload(model)
        if stream:
            events = [chunk(piece, False) for _, piece in pieces] + [finish(chunk("", True))]
            self._stream(iter(events))
        else:
            self._json(200, finish(chunk("".join(piece for _, piece in pieces), True)))

    def generate(self) -> None:
        self._inference(self._json_body(), chat=False)

    def chat(self) -> None:
        self._inference(self._json_body(), chat=True)


def text_model(request: dict[str, Any]) -> str:
    return str(request.get("model") or "")
