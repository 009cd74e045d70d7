"""Loaded models (the scheduler's view), fake inference, GPU detection."""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .envconfig import FOREVER_SECONDS, env_bool
from .ggufread import GGUFError, read_gguf
from .model import Model
from .store import Store
from .util import ApiError, go_time
from .version import VERSION, at_least, version_key


@dataclass
class Vocabulary:
    pieces: list[tuple[int, str]]  # (token id, decoded text) of normal tokens
    size: int


@dataclass
class LoadedModel:
    model: Model
    size: int
    size_vram: int
    expires_at: float
    context_length: int


def detect_gpu() -> str | None:
    """The name of a present NVIDIA GPU, or None (OLLAMA_STANDIN_FAKE_GPU=1 simulates one; test only)."""
    if env_bool("OLLAMA_STANDIN_FAKE_GPU"):
        return "Stand-in Fake GPU"
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False)
        for line in listing.stdout.splitlines():
            match = re.match(r"GPU \d+: (.+?)(?: \(UUID: .*\))?$", line.strip())
            if match:
                return match.group(1)
    except (OSError, subprocess.SubprocessError):
        pass
    return "NVIDIA GPU" if Path("/dev/nvidia0").exists() else None


def decode_piece(piece: str) -> str:
    return piece.replace("\u2581", " ").replace("\u0120", " ").replace("\u010a", "\n").replace("\u0109", "\t")


def load_vocabulary(path: Path | None) -> Vocabulary:
    if path is None:
        return Vocabulary([], 0)
    info = read_gguf(path)
    tokens = info.kv.get("tokenizer.ggml.tokens") or []
    types = info.kv.get("tokenizer.ggml.token_type") or []
    pieces = []
    for index, token in enumerate(tokens):
        kind = types[index] if index < len(types) else 1
        if kind != 1 or not isinstance(token, str):
            continue
        if not types and re.fullmatch(r"<[^>]*>|\[[^\]]*\]", token):
            continue
        text = decode_piece(token)
        if text.strip():
            pieces.append((index, text))
    return Vocabulary(pieces, len(tokens))


def fake_completion(
    vocab: Vocabulary, seed_text: str, num_predict: int, stop: list[str]
) -> tuple[list[tuple[int, str]], str]:
    """Deterministic token pieces for a prompt and the done_reason ("stop" or "length")."""
    rng = random.Random(hashlib.sha256(seed_text.encode("utf-8")).digest())
    natural = rng.randint(12, 32)
    count, reason = (num_predict, "length") if 0 < num_predict <= natural else (natural, "stop")
    source = vocab.pieces or [(0, " " + word) for word in ("stand", "in", "ollama", "air", "gap", "model")]
    out: list[tuple[int, str]] = []
    text = ""
    for index in range(count):
        token_id, piece = source[rng.randrange(len(source))]
        if index == 0:
            piece = piece.lstrip(" ")
        for word in stop:
            if word and word in text + piece:
                cut = (text + piece).index(word) - len(text)
                if cut > 0:
                    out.append((token_id, piece[:cut]))
                return out, "stop"
        out.append((token_id, piece))
        text += piece
    return out, reason


RUNNER_TERMINATED_V013 = "llama runner process has terminated"
RUNNER_TERMINATED = "llama-server process has terminated"  # v0.30: llm/llama_server.go
MLX_UNAVAILABLE = "mlx runner failed: MLX not available: MLX dynamic library not loaded (exit: exit status 1)"


def runner_terminated() -> str:
    return RUNNER_TERMINATED if at_least("0.30.0") else RUNNER_TERMINATED_V013


def check_loadable(model: Model) -> None:
    """What the runner start (server/sched.go) says for models this binary cannot run.

    - Tensor-layer (safetensors) models: v0.14+ starts the MLX runner (x/mlxrunner), whose MLX library is absent
      on a Linux host without the -mlx overlay and a GPU: 500 "mlx runner failed: MLX not available: ...". Older
      ollama has no model file to load: 404 "model %q not found, try pulling it first" (handleScheduleError).
    - A config `requires` newer than this version: ollama does not read `requires` itself (the registry refuses
      the pull with 412); such a model, copied in by hand, fails in the runner like an architecture the bundled
      llama.cpp does not know: 500 "<runner> process has terminated: exit status 1: error loading model
      architecture: unknown model architecture: '<arch>'".
    """
    if model.is_mlx or (model.model_path is None and model.tensor_layers):
        if at_least("0.14.0"):
            raise ApiError(MLX_UNAVAILABLE)
        raise ApiError(f"model {json.dumps(model.name.display_shortest())} not found, try pulling it first", 404)
    requires = str(model.config.get("requires") or "")
    if requires and version_key(requires) > version_key(VERSION) and version_key(VERSION) != (0, 0, 0):
        arch = model.config.get("model_family") or "unknown"
        raise ApiError(
            f"{runner_terminated()}: exit status 1: error loading model architecture: "
            f"unknown model architecture: '{arch}'"
        )


def embedding_length(model: Model) -> int:
    info = model.gguf()
    value = info.arch_value("embedding_length") if info is not None else None
    return int(value) if isinstance(value, int) and value > 0 else 16


def raw_embedding(model: Model, text: str) -> list[float]:
    """A deterministic, unnormalised vector of the GGUF's `<arch>.embedding_length` for a text (seeded by the
    model's digest and the text): what the runner's /embedding answers."""
    rng = random.Random(hashlib.sha256(f"{model.manifest.digest}\0{text}".encode()).digest())
    return [rng.uniform(-2.0, 2.0) for _ in range(embedding_length(model))]


def normalize(vector: list[float]) -> list[float]:
    """server/routes.go normalize: scale to unit length (norm floored at 1e-12)."""
    norm = 1.0 / max(math.sqrt(sum(value * value for value in vector)), 1e-12)
    return [value * norm for value in vector]


def count_prompt_tokens(*texts: str) -> int:
    return 1 + sum(len(re.findall(r"\w+|[^\w\s]", text)) for text in texts)


class Runtime:
    """Loaded models (the scheduler's view) and the fake-inference engine."""

    def __init__(self, store: Store, gpu: str | None) -> None:
        self.store = store
        self.gpu = gpu
        self.lock = threading.Lock()
        self.loaded: dict[str, LoadedModel] = {}
        self.vocabularies: dict[str, Vocabulary] = {}

    def expire(self) -> None:
        now = time.time()
        with self.lock:
            for key in [key for key, item in self.loaded.items() if item.expires_at <= now]:
                del self.loaded[key]

    def load(self, model: Model, keep_alive: float, num_ctx: int) -> tuple[Vocabulary, float]:
        """Load (or refresh) a model; returns its vocabulary and the load time in seconds."""
        started = time.monotonic()
        check_loadable(model)
        digest = model.manifest.digest
        with self.lock:
            vocab = self.vocabularies.get(digest)
        if vocab is None:
            try:
                vocab = load_vocabulary(model.model_path)
            except (GGUFError, OSError, struct.error) as err:
                raise ApiError(f"llama runner process has terminated: {err}") from err
            with self.lock:
                self.vocabularies[digest] = vocab
        size = model.manifest.size()
        with self.lock:
            self.loaded[str(model.name)] = LoadedModel(
                model=model,
                size=size,
                size_vram=size if self.gpu else 0,
                expires_at=time.time() + min(keep_alive, FOREVER_SECONDS),
                context_length=num_ctx,
            )
        return vocab, time.monotonic() - started

    def unload(self, model: Model) -> None:
        with self.lock:
            self.loaded.pop(str(model.name), None)

    def ps(self) -> list[dict[str, Any]]:
        self.expire()
        with self.lock:
            items = sorted(self.loaded.values(), key=lambda item: item.expires_at, reverse=True)
        return [
            {
                "name": item.model.name.display_shortest(),
                "model": item.model.name.display_shortest(),
                "size": item.size,
                "digest": item.model.manifest.digest,
                "details": item.model.details(),
                "expires_at": go_time(min(item.expires_at, 253402300799.0)),
                "size_vram": item.size_vram,
                "context_length": item.context_length,
            }
            for item in items
        ]
