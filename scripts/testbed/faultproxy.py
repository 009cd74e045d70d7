"""A fault source in front of a real upstream (the test bed's docker-registry or nginx).

It forwards every request to the upstream unchanged and, for requests whose path matches a rule, misbehaves on
command: answers a status (500, 502, 429 with Retry-After...), cuts the body short, stalls, flips a byte, or
throttles. Only the faults are made up; every byte that is served comes from the real upstream.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization"}


@dataclass
class Fault:
    """What to do to matching requests. ``times`` requests are affected, then the rule is spent."""

    path_contains: str
    kind: str  # status | truncate | stall | corrupt | throttle
    times: int = 1
    status: int = 500
    retry_after: str | None = None
    after_bytes: int = 0  # truncate/corrupt: where in the body
    seconds: float = 0.0  # stall: how long before the body
    rate: int = 0  # throttle: bytes per second
    method: str = "GET"
    hits: int = 0
    body: bytes | None = None  # status: the body to answer (default "fault injected: <status>")


@dataclass
class Hit:
    method: str
    path: str
    at: float
    fault: str | None
    range_header: str | None
    user_agent: str | None = None


@dataclass
class FaultProxy:
    upstream: str
    faults: list[Fault] = field(default_factory=list)
    log: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    bytes_served: int = 0

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, fault: Fault) -> Fault:
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()
            self.log.clear()
            self.bytes_served = 0

    def take(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method == method and fault.path_contains in path and fault.hits < fault.times:
                    fault.hits += 1
                    return fault
        return None

    def record(self, hit: Hit) -> None:
        with self.lock:
            self.log.append(hit)

    def served(self, count: int) -> None:
        with self.lock:
            self.bytes_served += count


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    target = urlsplit(proxy.upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return None

        def _forward(self) -> None:
            fault = proxy.take(self.command, self.path)
            hit = Hit(
                self.command,
                self.path,
                time.monotonic(),
                fault.kind if fault else None,
                self.headers.get("Range"),
                self.headers.get("User-Agent"),
            )
            proxy.record(hit)
            if fault and fault.kind == "status":
                body = fault.body if fault.body is not None else f"fault injected: {fault.status}\n".encode()
                self.send_response(fault.status)
                if fault.retry_after is not None:
                    self.send_header("Retry-After", fault.retry_after)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "host"}
            headers["Host"] = target.netloc
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() in HOP_BY_HOP:
                        continue
                    if key.lower() == "location":
                        value = value.replace(f"{target.scheme}://{target.netloc}", proxy.url)
                    self.send_header(key, value)
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                if self.command == "HEAD":
                    return
                if fault and fault.kind == "stall":
                    time.sleep(fault.seconds)
                served = 0
                while chunk := resp.read(64 * 1024):
                    if fault and fault.kind == "truncate" and served + len(chunk) > fault.after_bytes:
                        chunk = chunk[: fault.after_bytes - served]
                        self.wfile.write(chunk)
                        proxy.served(len(chunk))
                        break
                    if fault and fault.kind == "corrupt" and served <= fault.after_bytes < served + len(chunk):
                        at = fault.after_bytes - served
                        chunk = chunk[:at] + bytes([chunk[at] ^ 0xFF]) + chunk[at + 1 :]
                    if fault and fault.kind == "throttle" and fault.rate:
                        time.sleep(len(chunk) / fault.rate)
                    self.wfile.write(chunk)
                    served += len(chunk)
                    proxy.served(len(chunk))
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                conn.close()

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    return Handler


@contextmanager
def fault_proxy(upstream: str, host: str = "127.0.0.1") -> Iterator[FaultProxy]:
    """Serve a FaultProxy on a free loopback port for the duration of the block."""
    proxy = FaultProxy(upstream=upstream.rstrip("/"))
    server = ThreadingHTTPServer((host, 0), _handler(proxy))
    server.daemon_threads = True
    proxy.server = server
    thread = threading.Thread(target=server.serve_forever, name="faultproxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
