"""HTTP plumbing as gin does it in server/routes.go: CORS, allowed hosts, NDJSON streams, errors."""

from __future__ import annotations

import ipaddress
import json
import socket
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from .envconfig import split_host_port
from .util import ApiError, go_json, log

if TYPE_CHECKING:
    from .serve import StandinHTTPServer

CORS_ALLOW_HEADERS = [
    "Authorization", "Content-Type", "User-Agent", "Accept", "X-Requested-With", "OpenAI-Beta", "x-stainless-arch",
    "x-stainless-async", "x-stainless-custom-poll-interval", "x-stainless-helper-method", "x-stainless-lang",
    "x-stainless-os", "x-stainless-package-version", "x-stainless-poll-helper", "x-stainless-retry-count",
    "x-stainless-runtime", "x-stainless-runtime-version", "x-stainless-timeout",
]  # fmt: skip
CORS_ALLOW_METHODS = "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"
PRIVATE_NETWORKS = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")]


def origin_allowed(origin: str, patterns: list[str]) -> bool:
    """gin-contrib/cors with AllowWildcard: exact, `*` (all), or one `*` as prefix/suffix/infix wildcard."""
    origin = origin.lower()
    for pattern in (p.strip().lower() for p in patterns):
        if pattern == "*" or pattern == origin:
            return True
        if pattern.count("*") == 1:
            prefix, suffix = pattern.split("*")
            if origin.startswith(prefix) and origin.endswith(suffix) and len(origin) >= len(prefix) + len(suffix):
                return True
    return False


def host_header_allowed(host_header: str) -> bool:
    """allowedHostsMiddleware for a server bound to loopback."""
    try:
        host, _ = split_host_port(host_header)
    except ValueError:
        host = host_header
    host = host.strip("[]").lower()
    try:
        address = ipaddress.ip_address(host)
        return (
            address.is_loopback
            or address.is_unspecified
            or any(address in net for net in PRIVATE_NETWORKS if net.version == address.version)
        )
    except ValueError:
        pass
    if host in ("", "localhost") or host == socket.gethostname().lower():
        return True
    return any(host.endswith("." + tld) for tld in ("localhost", "local", "internal"))


class BaseHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StandinHTTPServer
    server_version = "ollama-standin"

    # -- plumbing --------------------------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        pass  # gin-style access lines are written by _access_log

    def _access_log(self, status: int) -> None:
        elapsed = (time.monotonic() - self._started) * 1000
        stamp = time.strftime("%Y/%m/%d - %H:%M:%S")
        sys.stderr.write(
            f"[GIN] {stamp} | {status:3d} | {elapsed:10.3f}ms | {self.client_address[0]:>15} | "
            f'{self.command:<7} "{self.path}"\n'
        )
        sys.stderr.flush()

    def _begin(self, status: int, content_type: str | None, length: int | None) -> None:
        self.send_response_only(status)
        self.send_header("Date", self.date_time_string())
        for key, value in self._extra_headers:
            self.send_header(key, value)
        if content_type:
            self.send_header("Content-Type", content_type)
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self._status = status

    def _send(
        self, status: int, body: bytes = b"", content_type: str | None = "application/json; charset=utf-8"
    ) -> None:
        self._begin(status, content_type if body or content_type else None, len(body))
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, go_json(value).rstrip("\n").encode("utf-8"))

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _stream(self, events: Iterator[dict[str, Any]]) -> None:
        """streamResponse: NDJSON; an error before the first line keeps its status, later it is a line."""
        started = False
        try:
            for event in events:
                if not started:
                    self._begin(200, "application/x-ndjson", None)
                    started = True
                self._chunk(go_json(event).encode("utf-8"))
        except ApiError as err:
            if not started:
                self._error(err.status, err.message)
                return
            self._chunk(go_json({"error": err.message}).encode("utf-8"))
        if not started:
            self._begin(200, "application/x-ndjson", None)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _wait(self, events: Iterator[dict[str, Any]]) -> dict[str, Any]:
        last: dict[str, Any] = {}
        for event in events:
            last = event
        return last

    def _body_chunks(self) -> Iterator[bytes]:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                remaining = size
                while remaining:
                    data = self.rfile.read(min(remaining, 1 << 20))
                    if not data:
                        raise ApiError("unexpected EOF", 400)
                    remaining -= len(data)
                    yield data
                self.rfile.readline(65537)
        else:
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining > 0:
                data = self.rfile.read(min(remaining, 1 << 20))
                if not data:
                    raise ApiError("unexpected EOF", 400)
                remaining -= len(data)
                yield data

    def _json_body(self) -> dict[str, Any]:
        raw = b"".join(self._body_chunks())
        if not raw.strip():
            raise ApiError("missing request body", 400)
        try:
            value = json.loads(raw)
        except ValueError as err:
            raise ApiError(f"invalid character in JSON body: {err}", 400) from err
        if not isinstance(value, dict):
            raise ApiError("json: cannot unmarshal into Go value of type api request", 400)
        return value

    # -- middleware and dispatch -----------------------------------------------------------------------------

    def _handle(self) -> None:
        self._started = time.monotonic()
        self._extra_headers: list[tuple[str, str]] = []
        self._status = 0
        try:
            if self._cors():
                return
            if self.server.bound_loopback and not host_header_allowed(self.headers.get("Host", "")):
                self._send(403, b"", None)
                return
            self._route()
        except ApiError as err:
            if self._status == 0:
                self._error(err.status, err.message)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as err:  # an unexpected failure answers 500 like gin's recovery, the server lives on
            log("ERROR", "request failed", error=f"{type(err).__name__}: {err}")
            self.close_connection = True
            if self._status == 0:
                self._error(500, str(err))
        finally:
            self._access_log(self._status or 500)

    def _cors(self) -> bool:
        """gin-contrib/cors. Returns True when the request was answered (preflight or forbidden)."""
        origin = self.headers.get("Origin")
        if not origin:
            return False
        host = self.headers.get("Host", "")
        if origin in (f"http://{host}", f"https://{host}"):
            return False
        if not origin_allowed(origin, self.server.origins):
            self._send(403, b"", None)
            return True
        allow_all = any(p.strip() == "*" for p in self.server.origins)
        self._extra_headers.append(("Access-Control-Allow-Origin", "*" if allow_all else origin))
        if self.command == "OPTIONS":
            self._extra_headers += [
                ("Access-Control-Allow-Methods", CORS_ALLOW_METHODS),
                ("Access-Control-Allow-Headers", ",".join(CORS_ALLOW_HEADERS)),
                ("Access-Control-Max-Age", "43200"),
                ("Vary", "Origin"),
                ("Vary", "Access-Control-Request-Method"),
                ("Vary", "Access-Control-Request-Headers"),
            ]
            self._send(204, b"", None)
            return True
        self._extra_headers.append(("Vary", "Origin"))
        return False

    def _route(self) -> None:
        raise NotImplementedError

    do_GET = do_HEAD = do_POST = do_DELETE = do_OPTIONS = do_PUT = do_PATCH = _handle
