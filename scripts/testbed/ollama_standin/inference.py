"""server/routes.go GenerateHandler and ChatHandler: capability checks and refusals, fake completions."""

from __future__ import annotations

import json
import time
from typing import Any

from .capabilities import (
    COMPLETION,
    INSERT,
    THINKING,
    TOOLS,
    VISION,
    CapabilityError,
    capabilities,
    check_capabilities,
)
from .cloud import ModelRef, parse_model_ref, proxy_to_cloud, remote_refusal
from .envconfig import default_keep_alive, request_keep_alive
from .http_base import BaseHandler
from .model import Model, get_model
from .runtime import count_prompt_tokens, fake_completion
from .util import ApiError, go_time
from .version import at_least

# llama.cpp's server (tools/server) for media without --mmproj, passed on by llm/llama_server.go (v0.30).
IMAGES_UNSUPPORTED = "image input is not supported - hint: if this is unexpected, you may need to provide the mmproj"


class InferenceHandler(BaseHandler):
    """Generate and chat."""

    def _find(self, request: dict[str, Any], path: str) -> tuple[Model, ModelRef]:
        """The model a request names; `:cloud` names go to the cloud proxy (refused: air gap or NO_CLOUD)."""
        text = str(request.get("model") or "")
        if not text:
            raise ApiError("model is required", 400)
        ref = parse_model_ref(text)
        if ref.source == "cloud":
            raise proxy_to_cloud(path)
        store = self.server.store
        try:
            manifest = store.find(ref.base)
        except ApiError:
            raise ApiError(f"model '{text}' not found", 404) from None
        return get_model(store, manifest), ref

    def _options(self, model: Model, request: dict[str, Any]) -> tuple[dict[str, Any], float]:
        options = dict(model.options)
        options.update(request.get("options") or {})
        keep_alive = request_keep_alive(request.get("keep_alive"))
        return options, default_keep_alive() if keep_alive is None else keep_alive

    def _check(self, model: Model, request: dict[str, Any], chat: bool) -> None:
        """The capability checks of GenerateHandler/ChatHandler and scheduleRunner (server/routes.go)."""
        name = text_model(request)
        wanted = [COMPLETION]
        if not chat and request.get("suffix"):
            wanted.append(INSERT)
        if chat and request.get("tools"):
            wanted.append(TOOLS)
        think = request.get("think")
        if THINKING in capabilities(model):
            wanted.append(THINKING)
        elif think not in (None, False, ""):
            raise ApiError(f"{json.dumps(name)} does not support thinking", 400)
        if "mllama" in (model.config.get("model_families") or []) and model.projectors:
            raise ApiError(
                "'llama3.2-vision' is no longer compatible with your version of Ollama and has been replaced by a "
                "newer version. To re-download, run 'ollama pull llama3.2-vision'"
            )
        try:
            check_capabilities(model, *wanted)
        except CapabilityError as err:
            if COMPLETION in err.missing:
                raise ApiError(f"{json.dumps(name)} does not support {'chat' if chat else 'generate'}", 400) from None
            raise ApiError(f"{model.name} {err}", 400) from None

    def _images(self, model: Model, request: dict[str, Any], chat: bool) -> list[str]:
        """Images go to the runner: v0.30's llama-server refuses them without a projector (400, llama.cpp's
        message); the older runners ignore them for a text-only model."""
        if chat:
            images = [str(i) for m in request.get("messages") or [] for i in (m.get("images") or [])]
        else:
            images = [str(i) for i in request.get("images") or []]
        if images and VISION not in capabilities(model):
            if at_least("0.30.0"):
                raise ApiError(IMAGES_UNSUPPORTED, 400)
            return []
        return images

    def _inference(self, request: dict[str, Any], chat: bool) -> None:
        path = "/api/chat" if chat else "/api/generate"
        model, ref = self._find(request, path)
        if model.is_remote:
            raise remote_refusal(model, ref, path)
        options, keep_alive = self._options(model, request)
        runtime = self.server.runtime
        stream = request.get("stream", True) is not False
        messages = list(request.get("messages") or [])
        prompt = str(request.get("prompt") or "")
        empty = not messages if chat else (not prompt and not request.get("images"))
        if empty and keep_alive == 0:
            runtime.unload(model)
            self._done(request, chat, "unload")
            return
        self._check(model, request, chat)
        num_ctx = int(options.get("num_ctx") or 4096)
        if empty:
            runtime.load(model, keep_alive, num_ctx)
            self._done(request, chat, "load")
            return
        images = self._images(model, request, chat)
        started = time.monotonic()
        vocab, load_seconds = runtime.load(model, keep_alive, num_ctx)
        system = str(request.get("system") or model.system)
        if chat:
            seed_source = json.dumps([model.system, messages], sort_keys=True, ensure_ascii=False)
            prompt_tokens = count_prompt_tokens(model.system, *(str(m.get("content", "")) for m in messages))
        else:
            seed_source = json.dumps([system, prompt, images] if images else [system, prompt], ensure_ascii=False)
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

    def _done(self, request: dict[str, Any], chat: bool, reason: str) -> None:
        final: dict[str, Any] = {"model": text_model(request), "created_at": go_time(time.time(), utc=True)}
        if chat:
            final["message"] = {"role": "assistant", "content": ""}
        else:
            final["response"] = ""
        final.update({"done": True, "done_reason": reason})
        self._json(200, final)

    def generate(self) -> None:
        self._inference(self._json_body(), chat=False)

    def chat(self) -> None:
        self._inference(self._json_body(), chat=True)


def text_model(request: dict[str, Any]) -> str:
    return str(request.get("model") or "")
