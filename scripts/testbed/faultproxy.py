"""A fault source in front of a real upstream (the test bed's docker-registry or nginx).

It forwards every request to the upstream unchanged and, for requests whose path matches a rule, misbehaves on
command: answers a status (500, 502, 429 with Retry-After...), cuts the body short, stalls, flips a byte, throttles,
or hides Range support (``ignore_range``: the Range header is not forwarded, so the upstream answers 200 with the
whole body, and Accept-Ranges is dropped). Only the faults are made up; every byte served comes from the real
upstream.

Like a CDN, it can also cap the rate of each connection (``conn_rate``, a token bucket per connection) and of all of
them together (``link_rate``, one shared bucket: a link), for every request, fault or not.
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
    kind: str  # status | truncate | stall | corrupt | throttle | ignore_range
    times: int = 1
    status: int = 500
    retry_after: str | None = None
    after_bytes: int = 0  # truncate/corrupt: where in the body
    seconds: float = 0.0  # stall: how long before the body
    rate: int = 0  # throttle: bytes per second
    method: str = "GET"
    hits: int = 0
    body: bytes | None = None  # status: the body to answer (default "fault injected: <status>")
    range_prefix: str | None = None  # only requests whose Range header starts with this ("bytes=1048576-")


@dataclass
class Hit:
    method: str
    path: str
    at: float
    fault: str | None
    range_header: str | None
    user_agent: str | None = None
    status: int = 0  # what the client was answered
    sent: int = 0  # body bytes sent to the client


class TokenBucket:
    """``rate`` bytes per second with a burst of 64 KiB (a new connection gets no head start worth measuring);
    callers sleep off what they take beyond it, so threads sharing one bucket share its rate."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.burst = 64 * 1024
        self.tokens = float(self.burst)
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def take(self, count: int) -> None:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate) - count
            self.stamp = now
            debt = -self.tokens
        if debt > 0:
            time.sleep(debt / self.rate)


@dataclass
class FaultProxy:
    upstream: str
    faults: list[Fault] = field(default_factory=list)
    log: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    bytes_served: int = 0
    conn_rate: int = 0  # bytes/s per connection (0: no cap)
    link_rate: int = 0  # bytes/s over all connections together (0: no cap)
    _link: TokenBucket | None = None

    def cap(self, conn_rate: int = 0, link_rate: int = 0) -> None:
        """Cap each connection at ``conn_rate`` and all of them at ``link_rate`` bytes/s (0: no cap)."""
        with self.lock:
            self.conn_rate = conn_rate
            self.link_rate = link_rate
            self._link = TokenBucket(link_rate) if link_rate else None

    def buckets(self) -> list[TokenBucket]:
        """The buckets a new connection draws from: its own, and the link's."""
        with self.lock:
            own = [TokenBucket(self.conn_rate)] if self.conn_rate else []
            return own + ([self._link] if self._link else [])

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

    def take(self, method: str, path: str, range_header: str | None = None) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.range_prefix is not None and not (range_header or "").startswith(fault.range_prefix):
                    continue
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
            fault = proxy.take(self.command, self.path, self.headers.get("Range"))
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
                hit.status = fault.status
                if fault.retry_after is not None:
                    self.send_header("Retry-After", fault.retry_after)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            dropped = HOP_BY_HOP | {"host"} | ({"range"} if fault and fault.kind == "ignore_range" else set())
            headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
            headers["Host"] = target.netloc
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                self.send_response(resp.status)
                hit.status = resp.status
                hidden = HOP_BY_HOP | ({"accept-ranges"} if fault and fault.kind == "ignore_range" else set())
                for key, value in resp.getheaders():
                    if key.lower() in hidden:
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
                buckets = proxy.buckets()
                while chunk := resp.read(64 * 1024):
                    for bucket in buckets:
                        bucket.take(len(chunk))
                    if fault and fault.kind == "truncate" and served + len(chunk) > fault.after_bytes:
                        chunk = chunk[: fault.after_bytes - served]
                        self.wfile.write(chunk)
                        proxy.served(len(chunk))
                        hit.sent += len(chunk)
                        break
                    if fault and fault.kind == "corrupt" and served <= fault.after_bytes < served + len(chunk):
                        at = fault.after_bytes - served
                        chunk = chunk[:at] + bytes([chunk[at] ^ 0xFF]) + chunk[at + 1 :]
                    if fault and fault.kind == "throttle" and fault.rate:
                        time.sleep(len(chunk) / fault.rate)
                    self.wfile.write(chunk)
                    served += len(chunk)
                    hit.sent += len(chunk)
                    proxy.served(len(chunk))
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                conn.close()

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    return Handler


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # 16 parts connecting at once must not overflow the listen backlog
    daemon_threads = True


@contextmanager
def fault_proxy(upstream: str, host: str = "127.0.0.1") -> Iterator[FaultProxy]:
    """Serve a FaultProxy on a free loopback port for the duration of the block."""
    proxy = FaultProxy(upstream=upstream.rstrip("/"))
    server = _Server((host, 0), _handler(proxy))
    proxy.server = server
    thread = threading.Thread(target=server.serve_forever, name="faultproxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
