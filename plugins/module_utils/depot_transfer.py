# Shared by the depot modules (Python 3 standard library only: it runs on the hosts).
"""Fetch blobs by sha256 from a Distribution registry: ranged parts over parallel connections, resumable partial
files, the sha256 computed while the parts arrive.

The shape follows ollama's downloader (server/download.go upstream: HEAD for the size, up to 16 ranged parts,
``-partial`` files with their progress beside them, redirects followed); hashing as the contiguous prefix grows is
ours, so no second read pass is needed at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

CHUNK = 1 << 20
SAVE_EVERY = 8 << 20  # progress of a part is written down at least this often
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
USER_AGENT = "ollama-airgap-depot-fetch/1"


class FetchError(Exception):
    """One line: what failed, for which file, and what was kept."""


class Corrupt(Exception):
    """A blob arrived whole but its sha256 differs."""


@dataclass(frozen=True)
class Wanted:
    path: str
    size: int  # -1: unknown (asked with HEAD)
    sha256: str


@dataclass
class Part:
    start: int
    end: int  # exclusive
    written: int = 0

    @property
    def done(self) -> bool:
        return self.start + self.written >= self.end


@dataclass
class Blob:
    """One file being fetched: its parts, and the hash following the contiguous prefix."""

    path: str
    target: str
    size: int
    sha256: str
    parts: list[Part] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256)
    hashed: int = 0
    hashing: bool = False
    dirty: int = 0

    @property
    def partial(self) -> str:
        return self.target + ".partial"

    @property
    def progress(self) -> str:
        return self.partial + ".json"

    def save(self) -> None:
        document = {
            "sha256": self.sha256,
            "size": self.size,
            "parts": [[p.start, p.end, p.written] for p in self.parts],
        }
        with open(self.progress + ".tmp", "w") as handle:
            json.dump(document, handle)
        os.replace(self.progress + ".tmp", self.progress)

    def watermark(self) -> int:
        for part in self.parts:
            if not part.done:
                return part.start + part.written
        return self.size

    def advance(self, fd: int) -> None:
        """Hash what is contiguous on disk; one thread at a time, the others carry on downloading."""
        with self.lock:
            if self.hashing:
                return
            self.hashing = True
        try:
            while True:
                with self.lock:
                    limit = self.watermark()
                    if self.hashed >= limit:
                        self.hashing = False
                        return
                while self.hashed < limit:
                    data = os.pread(fd, min(CHUNK, limit - self.hashed), self.hashed)
                    if not data:
                        raise OSError(f"{self.partial}: shorter than written")
                    self.hasher.update(data)
                    self.hashed += len(data)
        except BaseException:
            with self.lock:
                self.hashing = False
            raise


class Transfer:
    def __init__(
        self,
        *,
        base_url: str,
        repository: str,
        dest: str,
        connections: int,
        max_parts: int,
        part_size: int,
        retries: int,
        timeout: float,
        on_verified: object = None,
    ) -> None:
        self.base_url, self.repository, self.dest = base_url, repository, dest
        self.connections, self.max_parts, self.part_size = connections, max_parts, part_size
        self.retries, self.timeout = retries, timeout
        self.on_verified = on_verified
        self.stop = threading.Event()
        self.counter_lock = threading.Lock()
        self.fetched_bytes = self.resumed_bytes = self.fetched_files = 0
        self.refetched: list[str] = []

    def stats(self) -> dict[str, object]:
        return {
            "fetched_bytes": self.fetched_bytes,
            "resumed_bytes": self.resumed_bytes,
            "fetched_files": self.fetched_files,
            "refetched": sorted(set(self.refetched)),
        }

    def url(self, digest: str) -> str:
        return f"{self.base_url}/v2/{self.repository}/blobs/sha256:{digest}"

    # --- HTTP ------------------------------------------------------------------------------------------------

    def _open(self, digest: str, method: str = "GET", first: int | None = None, last: int | None = None):
        request = urllib.request.Request(self.url(digest), method=method, headers={"User-Agent": USER_AGENT})
        if first is not None:
            request.add_header("Range", f"bytes={first}-{last}")
        return urllib.request.urlopen(request, timeout=self.timeout)

    def _retrying(self, what: str, action):
        delay = 0.5
        for attempt in range(1, self.retries + 1):
            if self.stop.is_set():
                raise FetchError("stopped")
            try:
                return action()
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    raise FetchError(f"{what}: not in the depot (404); load the bundle into the depot first") from None
                if (exc.code < 500 and exc.code != 429) or attempt == self.retries:
                    raise FetchError(f"{what}: HTTP {exc.code} {exc.reason}") from None
            except (urllib.error.URLError, OSError) as exc:
                if attempt == self.retries:
                    reason = getattr(exc, "reason", None) or exc
                    raise FetchError(f"{what}: {reason} (after {self.retries} tries)") from None
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def size_of(self, item: Wanted) -> int:
        def head() -> int:
            with self._open(item.sha256, "HEAD") as response:
                length = response.headers.get("Content-Length")
                if length is None:
                    raise FetchError(f"{item.path}: the depot gave no Content-Length")
                return int(length)

        return int(self._retrying(item.path, head))

    # --- one blob --------------------------------------------------------------------------------------------

    def plan(self, item: Wanted) -> Blob:
        size = item.size if item.size >= 0 else self.size_of(item)
        blob = Blob(item.path, os.path.join(self.dest, item.path), size, item.sha256)
        os.makedirs(os.path.dirname(blob.target), mode=0o700, exist_ok=True)
        try:
            with open(blob.progress) as handle:
                kept = json.load(handle)
            if kept.get("sha256") == item.sha256 and kept.get("size") == size and os.path.exists(blob.partial):
                blob.parts = [Part(s, e, w) for s, e, w in kept["parts"]]
        except (OSError, ValueError, TypeError):
            blob.parts = []
        if not blob.parts:
            count = max(1, min(self.max_parts, -(-size // self.part_size)))
            step = -(-size // count) if size else 0
            blob.parts = [Part(i * step, min(size, (i + 1) * step)) for i in range(count)] if size else []
            with open(blob.partial, "wb") as handle:
                handle.truncate(size)
            blob.save()
        else:
            with self.counter_lock:
                self.resumed_bytes += sum(p.written for p in blob.parts)
        return blob

    def fetch_part(self, blob: Blob, part: Part, fd: int) -> None:
        def attempt() -> None:
            first = part.start + part.written
            ranged = not (first == 0 and part.end == blob.size)
            with self._open(blob.sha256, first=first if ranged else None, last=part.end - 1) as response:
                if ranged and response.status != 206:
                    raise FetchError(f"{blob.path}: the depot ignored Range (HTTP {response.status})")
                since_save = 0
                while part.start + part.written < part.end:
                    if self.stop.is_set():
                        raise FetchError("stopped")
                    want = min(CHUNK, part.end - part.start - part.written)
                    data = response.read(want)
                    if not data:
                        raise OSError(f"connection closed after {part.written} bytes of a part of {blob.path}")
                    os.pwrite(fd, data, part.start + part.written)
                    with blob.lock:
                        part.written += len(data)
                    with self.counter_lock:
                        self.fetched_bytes += len(data)
                    since_save += len(data)
                    if since_save >= SAVE_EVERY:
                        since_save = 0
                        with blob.lock:
                            blob.save()
                    blob.advance(fd)

        self._retrying(blob.path, attempt)

    def fetch_blob(self, pool: ThreadPoolExecutor, item: Wanted) -> None:
        for round_ in range(1, self.retries + 1):
            blob = self.plan(item)
            with self.counter_lock:
                self.fetched_files += 1
            fd = os.open(blob.partial, os.O_RDWR)
            try:
                pending = [p for p in blob.parts if not p.done]
                futures = [pool.submit(self.fetch_part, blob, p, fd) for p in pending]
                errors = [f.exception() for f in futures]
                blob.save()
                failed = next((e for e in errors if e is not None), None)
                if failed is not None:
                    raise failed
                blob.advance(fd)
                os.fdatasync(fd)  # on disk before it counts as verified (and before a swap makes it the bundle)
            finally:
                os.close(fd)
            got = blob.hasher.hexdigest()
            if got == blob.sha256 and blob.hashed == blob.size:
                os.replace(blob.partial, blob.target)
                os.unlink(blob.progress)
                if callable(self.on_verified):
                    self.on_verified(blob.path)
                return
            # A piece was corrupt on the way (or on disk): drop it all and fetch the blob again.
            for leftover in (blob.partial, blob.progress):
                if os.path.exists(leftover):
                    os.unlink(leftover)
            self.refetched.append(blob.path)
            if round_ == self.retries:
                raise FetchError(f"{blob.path}: sha256 {got} instead of {blob.sha256} after {self.retries} fetches")

    def run(self, todo: list[Wanted]) -> None:
        """Fetch every item; blobs go in biggest first so parts of small files fill the gaps."""
        queue = deque(sorted(todo, key=lambda item: -item.size))
        for item in list(queue):
            if item.size == 0:
                queue.remove(item)
                if item.sha256 != EMPTY_SHA256:
                    raise FetchError(f"{item.path}: size 0 but sha256 {item.sha256}")
                target = os.path.join(self.dest, item.path)
                os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
                open(target, "wb").close()
                if callable(self.on_verified):
                    self.on_verified(item.path)
        # Parts run on `connections` threads; blobs are driven from a few more so several files move at once.
        with ThreadPoolExecutor(self.connections) as parts, ThreadPoolExecutor(self.connections) as blobs:
            futures = [blobs.submit(self.fetch_blob, parts, item) for item in queue]
            wait(futures, return_when=FIRST_EXCEPTION)
            if any(f.done() and f.exception() for f in futures):
                self.stop.set()  # the others end at their next chunk, their progress written down
                for future in futures:
                    future.cancel()
            wait(futures)
        errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
        first = next((e for e in errors if str(e) != "stopped"), errors[0] if errors else None)
        if first is not None:
            raise first
