"""The Open WebUI stand-in that runs INSIDE the test image (copied to /app/webui_standin.py; stdlib only).

It stands in for ghcr.io/open-webui/open-webui on the test bed: the same port (8080), the same env names, the same
data directory (/app/backend/data), GET /health and /ready answering ``{"status": true}``, sign-in of the admin from
WEBUI_ADMIN_EMAIL/PASSWORD and /ollama/api/tags for its token, and at start-up the same ollama API
calls Open WebUI makes (GET {OLLAMA_BASE_URL}/api/version and /api/tags). It records what it saw so a test can prove
that the container reached ollama over OLLAMA_BASE_URL and that the offline settings arrived.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DATA_DIR = os.environ.get("DATA_DIR", "/app/backend/data")
OFFLINE_KEYS = (
    "OFFLINE_MODE",
    "HF_HUB_OFFLINE",
    "ENABLE_OPENAI_API",
    "ENABLE_PERSISTENT_CONFIG",
    "ENABLE_VERSION_UPDATE_CHECK",
    "RAG_EMBEDDING_MODEL_AUTO_UPDATE",
    "RAG_RERANKING_MODEL_AUTO_UPDATE",
    "WHISPER_MODEL_AUTO_UPDATE",
)


def log(message: str) -> None:
    print(f"webui-standin: {message}", flush=True)


def ollama_get(path: str) -> dict[str, object]:
    base = os.environ.get("OLLAMA_BASE_URL", "http://localhost:11434").rstrip("/")
    with urllib.request.urlopen(f"{base}{path}", timeout=5) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def probe_ollama() -> dict[str, object]:
    """What Open WebUI does when it lists models: /api/version, then /api/tags."""
    try:
        version = ollama_get("/api/version").get("version")
        models = [m.get("name") for m in ollama_get("/api/tags").get("models", [])]  # type: ignore[union-attr]
    except (OSError, ValueError) as exc:
        log(f"ollama unreachable at {os.environ.get('OLLAMA_BASE_URL')}: {exc}")
        return {"ok": False, "error": str(exc)}
    log(f"ollama {version} reachable at {os.environ.get('OLLAMA_BASE_URL')}: /api/tags lists {len(models)} models")
    return {"ok": True, "version": version, "models": models}


def record_start() -> list[dict[str, object]]:
    """Append this start to a file in the data directory (proves the volume persists across restarts)."""
    os.makedirs(DATA_DIR, exist_ok=True)
    path = os.path.join(DATA_DIR, "starts.json")
    try:
        with open(path) as handle:
            starts = json.load(handle)
    except (OSError, ValueError):
        starts = []
    starts.append({"time": time.time(), "pid": os.getpid()})
    with open(path + ".tmp", "w") as handle:
        json.dump(starts, handle)
    os.replace(path + ".tmp", path)
    return list(starts)


class Handler(BaseHTTPRequestHandler):
    def _reply(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path in ("/health", "/ready"):  # /ready: Open WebUI's readiness probe (the role waits for it)
            self._reply(200, {"status": True})
        elif self.path == "/ollama/api/tags":  # Open WebUI's ollama proxy: signed-in users only
            if self.headers.get("Authorization") != f"Bearer {admin_token()}":
                self._reply(401, {"detail": "Not authenticated"})
            else:
                self._reply(200, ollama_get("/api/tags"))
        elif self.path == "/api/models":
            self._reply(200, {"data": probe_ollama()})
        elif self.path == "/api/config":
            secret = os.environ.get("WEBUI_SECRET_KEY", "")
            self._reply(
                200,
                {
                    "name": "Open WebUI (test bed stand-in)",
                    "ollama_base_url": os.environ.get("OLLAMA_BASE_URL"),
                    "offline": {key: os.environ.get(key) for key in OFFLINE_KEYS},
                    "secret_key_sha256": hashlib.sha256(secret.encode()).hexdigest() if secret else None,
                    "startup_probe": STARTUP,
                    "starts": len(STARTS),
                },
            )
        else:
            self._reply(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        # POST /api/v1/auths/signin against the admin created from WEBUI_ADMIN_EMAIL/WEBUI_ADMIN_PASSWORD.
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        email, password = os.environ.get("WEBUI_ADMIN_EMAIL"), os.environ.get("WEBUI_ADMIN_PASSWORD")
        if self.path != "/api/v1/auths/signin":
            self._reply(404, {"detail": "Not Found"})
        elif email and password and body.get("email") == email and body.get("password") == password:
            self._reply(200, {"token": admin_token(), "token_type": "Bearer", "role": "admin", "email": email})
        else:
            self._reply(400, {"detail": "The email or password provided is incorrect."})

    def log_message(self, format: str, *args: object) -> None:
        pass


def admin_token() -> str:
    secret = os.environ.get("WEBUI_SECRET_KEY", "") + os.environ.get("WEBUI_ADMIN_EMAIL", "")
    return hashlib.sha256(secret.encode()).hexdigest()


STARTUP: dict[str, object] = {}
STARTS: list[dict[str, object]] = []

if __name__ == "__main__":
    # PID 1 in a container ignores SIGTERM without a handler: stop promptly when podman stops the container.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    STARTS.extend(record_start())
    STARTUP.update(probe_ollama())
    host, port = os.environ.get("HOST", "0.0.0.0"), int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer((host, port), Handler)
    log(f"listening on {host}:{port}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)
