"""HTTP downloads that survive flaky upstreams: bounded retries with backoff (honouring Retry-After), timeouts,
resume with Range, and sha256 checked in-stream while the bytes are written."""

from __future__ import annotations

import email.utils
import hashlib
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests
import urllib3
from requests.adapters import HTTPAdapter

from . import __version__
from .errors import DiskSpaceError, FetchError, NotFoundError, VerifyError
from .hashing import CHUNK, sha256_file
from .ranged import NoRanges, RangedConfig, RangedDownload, TransientError, probe, to_prefix
from .ranged import short as _short

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = f"ollama-airgap/{__version__}"
Progress = Callable[[int], None]


@dataclass
class RetryPolicy:
    attempts: int = 6
    backoff: float = 0.5
    max_backoff: float = 30.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            seconds = _parse_retry_after(retry_after)
            if seconds is not None:
                return min(seconds, self.max_backoff * 4)
        backoff: float = min(self.max_backoff, self.backoff * (2**attempt))
        return backoff * (0.75 + random.random() / 2)


def _parse_retry_after(value: str) -> float | None:
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass
class Stats:
    """What crossed the wire, for `--json` output and the tests' zero-download checks."""

    bytes_downloaded: int = 0
    requests: int = 0
    retries: int = 0
    resumed_bytes: int = 0


class BackgroundHash:
    """sha256 on a second thread (hashlib releases the GIL), so hashing overlaps receiving and writing."""

    def __init__(self, hasher: hashlib._Hash) -> None:
        self.hasher = hasher
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        self.thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (data := self.queue.get()) is not None:
            self.hasher.update(data)

    def update(self, data: bytes) -> None:
        self.queue.put(data)

    def close(self) -> None:
        """Wait until every chunk handed over is hashed."""
        self.queue.put(None)
        self.thread.join()


class Fetcher:
    """One requests session with the project's retry, timeout and resume rules."""

    def __init__(self, policy: RetryPolicy | None = None, ranged: RangedConfig | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self.ranged = ranged or RangedConfig.from_env()
        self.session = requests.Session()
        # Room for every part of several blobs at once, so no connection is dropped (and no warning logged).
        adapter = HTTPAdapter(pool_connections=8, pool_maxsize=max(16, 4 * self.ranged.parts))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = USER_AGENT
        self.stats = Stats()

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.policy.connect_timeout, self.policy.read_timeout)

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        what: str,
        allow_redirects: bool = True,
        stream: bool = False,
        ok: frozenset[int] = frozenset({200}),
        params: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """A request retried on connection errors, timeouts and retryable statuses; other failures raise."""
        last = ""
        for attempt in range(self.policy.attempts):
            retry_after = None
            try:
                self.stats.requests += 1
                resp = self.session.request(
                    method,
                    url,
                    headers=dict(headers or {}),
                    params=params,
                    timeout=self.timeout,
                    allow_redirects=allow_redirects,
                    stream=stream,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = f"{type(exc).__name__}: {_short(exc)}"
            else:
                if resp.status_code in ok:
                    return resp
                resp.close()
                if resp.status_code == 404:
                    raise NotFoundError(f"{what}: not found (404 from {url})")
                if resp.status_code not in RETRY_STATUSES:
                    raise FetchError(f"{what}: HTTP {resp.status_code} from {url}")
                last = f"HTTP {resp.status_code}"
                retry_after = resp.headers.get("Retry-After")
            if attempt + 1 < self.policy.attempts:
                self.stats.retries += 1
                self.policy.sleep(self.policy.delay(attempt, retry_after))
        raise FetchError(f"{what}: gave up after {self.policy.attempts} attempts ({last}) at {url}")

    def get_bytes(
        self, url: str, *, what: str, headers: Mapping[str, str] | None = None, limit: int = 64 << 20
    ) -> bytes:
        resp = self.request("GET", url, headers=headers, what=what, stream=True)
        with resp:
            data = resp.raw.read(limit + 1, decode_content=True)
        if len(data) > limit:
            raise FetchError(f"{what}: response from {url} is larger than {limit} bytes")
        self.stats.bytes_downloaded += len(data)
        return data

    def download(
        self,
        url: str,
        partial: Path,
        *,
        sha256: str,
        size: int | None,
        what: str,
        headers: Mapping[str, str] | None = None,
        progress: Progress | None = None,
        opened: Callable[[int], requests.Response | None] | None = None,
        probed: requests.Response | None = None,
    ) -> Path:
        """Download into ``partial`` (resuming what is there), checking sha256 in-stream. Returns ``partial``
        once its digest matched; on a mismatch the file is deleted and VerifyError names the source.

        A blob of at least ``ranged.threshold`` bytes is fetched in parallel ranged parts (ranged.py) when the server
        honours Range, else in one stream. ``probed`` may hand over the server's answer to ``Range: bytes=0-0``.
        ``opened(offset)`` may hand over a response already streaming from ``offset`` (asked with Range when the
        offset is not 0), so the request that resolved the URL is not thrown away."""
        partial.parent.mkdir(parents=True, exist_ok=True)
        if size is not None and self.ranged.splits(size):
            direct, whole = probe(self, url, headers or {}, what, size, probed)
            if direct is not None:
                try:
                    ranged = RangedDownload(
                        self, direct, partial, url, sha256=sha256, size=size, what=what, headers=headers
                    )
                    return ranged.run(progress)
                except NoRanges:
                    pass  # a part was answered without its range: the rest goes in one stream
            opened = lambda at: whole if at == 0 else _close(whole)  # noqa: E731
            to_prefix(partial)
            if whole is not None:
                partial.unlink(missing_ok=True)  # the server sends the whole blob: start from 0
        else:
            if probed is not None:
                probed.close()
            to_prefix(partial)  # parts left by an earlier ranged run: keep their contiguous prefix
        hasher = hashlib.sha256()
        offset = 0
        if partial.exists():
            if size is not None and partial.stat().st_size > size:
                partial.unlink()
            else:
                sha256_file(partial, hasher=hasher)
                offset = partial.stat().st_size
                self.stats.resumed_bytes += offset
                if progress and offset:
                    progress(offset)
        failures = 0
        while size is None or offset < size:
            req_headers = dict(headers or {})
            if offset:
                req_headers["Range"] = f"bytes={offset}-"
            try:
                first = opened(offset) if opened else None
                opened = None
                resp = first or self.request(
                    "GET", url, headers=req_headers, what=what, stream=True, ok=frozenset({200, 206, 416})
                )
                if resp.status_code == 416:
                    resp.close()
                    break
                if resp.status_code == 200 and offset:
                    # The server ignored Range: start over.
                    hasher = hashlib.sha256()
                    offset = 0
                offset = self._stream_into(resp, partial, offset, hasher, progress)
                if size is None:
                    break
            except TransientError as exc:
                # Bytes before the break are written and hashed; carry on from there.
                offset = partial.stat().st_size if partial.exists() else 0
                failures += 1
                if failures >= self.policy.attempts:
                    raise FetchError(f"{what}: transfer kept breaking off ({exc}) at {url}") from None
                self.stats.retries += 1
                self.policy.sleep(self.policy.delay(failures - 1, None))
        got = hasher.hexdigest()
        if got != sha256 or (size is not None and offset != size):
            partial.unlink(missing_ok=True)
            raise VerifyError(f"{what}: digest mismatch from {url}: expected sha256:{sha256}, got sha256:{got}")
        return partial

    def _stream_into(
        self,
        resp: requests.Response,
        partial: Path,
        offset: int,
        hasher: hashlib._Hash,
        progress: Progress | None,
    ) -> int:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if offset else os.O_TRUNC)
        fd = os.open(partial, flags, 0o644)
        background = BackgroundHash(hasher)
        try:
            with resp:
                while True:
                    try:
                        # read1: whatever has arrived (up to CHUNK), so the partial file keeps up with the wire.
                        data = resp.raw.read1(CHUNK)
                    except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
                        raise TransientError(f"{type(exc).__name__}: {_short(exc)}") from None
                    if not data:
                        break
                    n = len(data)
                    chunk = memoryview(data)
                    try:
                        written = 0
                        while written < n:
                            written += os.write(fd, chunk[written:])
                    except OSError as exc:
                        if exc.errno == 28:
                            raise DiskSpaceError(f"no space left on the device holding {partial}") from None
                        raise
                    background.update(data)
                    offset += n
                    self.stats.bytes_downloaded += n
                    if progress:
                        progress(n)
        finally:
            background.close()  # the hash covers exactly the bytes written, also when the transfer broke off
            os.close(fd)
        return offset


def _close(response: requests.Response | None) -> None:
    if response is not None:
        response.close()
