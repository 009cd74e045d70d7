"""Big blobs in up to 16 ranged requests at once, after ollama's own downloader (server/download.go: parts, each a
``Range: bytes=a-b`` GET written at its offset into one file sized up front, the progress of each part kept beside it
so that a restart fetches only what is missing, redirects resolved once to a direct URL).

A CDN caps each connection; parallel requests multiply that cap. What differs from upstream:

- Parts are at most 16 MiB (``part_size``), handed out in order to 16 connections, where upstream cuts 16 parts of
  size/16 bounded to 100 MB..1 GB (``part_size=0`` gives that layout). With upstream's layout the parts advance side
  by side and 15/16 of the blob is hashed only after the last byte (0.8 s per GiB at 1.2 GB/s); in order, no more
  than 16 parts are ever ahead of the hash, so it completes about 0.2 s after the last byte whatever the blob's size.
- Range support is asked with a one-byte ``Range: bytes=0-0`` GET instead of a HEAD: a 206 proves the server honours
  Range and its ``Content-Range`` carries the length; a 200 is the whole blob, streamed at once as the one-stream
  fallback, so a server without Range costs no extra request. Redirects are followed and the final URL is used for
  every part (upstream's "direct URL").
- sha256 is computed while the parts arrive: a reader thread follows the contiguous completed prefix of the file and
  hashes it as it grows, reading back pages written moments before (page cache, not the disk). After a restart the
  prefix already on disk is re-read once: it is the only copy.
- Memory is bounded: each connection holds one 64 KiB read at a time, the hasher one 1 MiB buffer.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import requests
import urllib3

from .errors import DiskSpaceError, FetchError, SpecError, VerifyError
from .hashing import CHUNK

if TYPE_CHECKING:
    from .download import Fetcher

MB = 1000 * 1000  # upstream's format.MegaByte
UPSTREAM_MIN, UPSTREAM_MAX = 100 * MB, 1000 * MB  # minDownloadPartSize, maxDownloadPartSize
PARTS_ENV = "OLLAMA_AIRGAP_PARTS"
THRESHOLD_ENV = "OLLAMA_AIRGAP_PART_THRESHOLD"
PART_SIZE_ENV = "OLLAMA_AIRGAP_PART_SIZE"
STATE_SUFFIX = ".parts"
SAVE_EVERY_S = 0.5
EXPIRED = frozenset({401, 403, 410})  # a direct URL's signature ran out
# The most one connection reads at a time. Small on purpose: 16 threads each allocating 1 MiB reads fragment glibc's
# per-thread arenas (peak RSS 115 MiB for 1 GiB at 16 x 20 MB/s, 38 MiB with 64 KiB reads, flat in the size).
READ_CHUNK = 64 << 10
Progress = Callable[[int], None]


def parse_size(text: str, what: str) -> int:
    """ "64M", "1G", "8MiB" (binary units) or a plain byte count."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        if value and value[-1] in units:
            return int(float(value[:-1]) * units[value[-1]])
        return int(value)
    except ValueError:
        raise SpecError(f"{what}: {text!r} is not a size (e.g. 64M, 1G or a byte count)") from None


@dataclass(frozen=True)
class RangedConfig:
    """``parts``: connections per blob (1 turns ranged downloads off); blobs under ``threshold`` keep one stream;
    ``part_size``: the most one request asks for (0: upstream's 16 parts of 100 MB..1 GB)."""

    parts: int = 16
    threshold: int = 64 << 20
    part_size: int = 16 << 20

    @classmethod
    def from_env(cls, parts: int | None = None, threshold: int | None = None) -> RangedConfig:
        """Arguments win over OLLAMA_AIRGAP_PARTS / OLLAMA_AIRGAP_PART_THRESHOLD; OLLAMA_AIRGAP_PART_SIZE too."""
        env = os.environ
        if parts is None and env.get(PARTS_ENV):
            parts = parse_size(env[PARTS_ENV], PARTS_ENV)
        if threshold is None and env.get(THRESHOLD_ENV):
            threshold = parse_size(env[THRESHOLD_ENV], THRESHOLD_ENV)
        part_size = parse_size(env[PART_SIZE_ENV], PART_SIZE_ENV) if env.get(PART_SIZE_ENV) else cls.part_size
        config = cls(
            parts=cls.parts if parts is None else parts,
            threshold=cls.threshold if threshold is None else threshold,
            part_size=part_size,
        )
        if config.parts < 1 or config.parts > 64:
            raise SpecError(f"--parts: {config.parts} is not between 1 and 64")
        if config.threshold < 0 or config.part_size < 0:
            raise SpecError("--part-threshold and the part size must not be negative")
        return config

    def plan(self, size: int) -> list[Part]:
        """Parts of ``part_size`` (fewer bytes when that leaves connections idle); the last one takes the rest."""
        share = -(-size // self.parts)
        step = min(self.part_size, share) if self.part_size else min(max(share, UPSTREAM_MIN), UPSTREAM_MAX)
        step = max(step, 1)
        return [Part(offset, min(step, size - offset)) for offset in range(0, size, step)]

    def splits(self, size: int | None) -> bool:
        return size is not None and self.parts > 1 and size >= self.threshold and size > 1


@dataclass
class Part:
    offset: int
    size: int
    done: int = 0  # bytes written from offset on

    @property
    def complete(self) -> bool:
        return self.done >= self.size


class NoRanges(Exception):
    """The server answered a part's Range request with something other than that range."""


class TransientError(Exception):
    """A transfer broke off; what was written before the break is kept and the rest asked for again."""

    def __init__(self, message: str, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def state_path(partial: Path) -> Path:
    return partial.with_name(partial.name + STATE_SUFFIX)


def prefix_of(parts: list[Part]) -> int:
    """Bytes from 0 that are all written."""
    end = 0
    for part in parts:
        end = part.offset + part.done
        if not part.complete:
            break
    return end


def load_state(partial: Path, size: int) -> list[Part] | None:
    """The parts recorded for ``partial``, or None when there is no usable record."""
    try:
        document = json.loads(state_path(partial).read_text())
        parts = [Part(int(o), int(s), int(d)) for o, s, d in document["parts"]]
        ok = document["size"] == size and partial.stat().st_size == size
    except (OSError, ValueError, KeyError, TypeError):
        return None
    offsets = [p.offset for p in parts]
    ends = [p.offset + p.size for p in parts]
    if not ok or not parts or offsets[0] != 0 or ends[-1] != size or offsets[1:] != ends[:-1]:
        return None
    if any(not 0 <= p.done <= p.size for p in parts):
        return None
    return parts


def to_prefix(partial: Path) -> None:
    """A ranged partial left by an earlier run becomes its contiguous prefix, which one stream can resume."""
    state = state_path(partial)
    if not state.exists():
        return
    try:
        document = json.loads(state.read_text())
        parts = [Part(int(o), int(s), int(d)) for o, s, d in document["parts"]]
        keep = prefix_of(parts)
    except (OSError, ValueError, KeyError, TypeError):
        keep = 0
    if partial.exists():
        os.truncate(partial, min(keep, partial.stat().st_size))
    state.unlink(missing_ok=True)


def discard(partial: Path) -> None:
    partial.unlink(missing_ok=True)
    state_path(partial).unlink(missing_ok=True)


def probe(
    fetcher: Fetcher,
    url: str,
    headers: Mapping[str, str],
    what: str,
    size: int,
    opened: requests.Response | None,
) -> tuple[str | None, requests.Response | None]:
    """(direct URL, None) when the server honours Range; (None, the 200 response streaming the whole blob, or None)
    when it does not. ``opened`` is an answer to ``Range: bytes=0-0`` the caller already holds."""
    resp = opened or fetcher.request(
        "GET", url, headers={**headers, "Range": "bytes=0-0"}, what=what, stream=True, ok=frozenset({200, 206})
    )
    if resp.status_code == 200:
        return None, resp
    resp.close()
    if resp.status_code != 206:
        return None, None
    total = resp.headers.get("Content-Range", "").rpartition("/")[2]
    if total.isdigit() and int(total) != size:
        raise VerifyError(f"{what}: {url} serves {total} bytes, expected {size}")
    return resp.url or url, None


class RangedDownload:
    """One blob fetched in parts into ``partial`` (pre-allocated to ``size``), hashed in order as the prefix grows."""

    def __init__(
        self,
        fetcher: Fetcher,
        url: str,
        partial: Path,
        origin: str | None = None,
        *,
        sha256: str,
        size: int,
        what: str,
        headers: Mapping[str, str] | None,
    ) -> None:
        self.fetcher = fetcher
        self.url = url  # the direct URL the probe was redirected to
        self.origin = origin or url  # the URL asked for, which redirects there
        self.partial = partial
        self.sha256 = sha256
        self.size = size
        self.what = what
        self.headers = dict(headers or {})
        self.progress: Progress | None = None
        self.config = fetcher.ranged
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.saved_at = 0.0
        self.parts: list[Part] = []
        self.hashed = 0
        self._first_open = 0  # index of the first part not yet complete (only grows)

    # --- state -------------------------------------------------------------------------------------------------

    def _prepare(self) -> int:
        """Open (and size) the file; returns its descriptor. A record of parts resumes; a one-stream partial counts
        as written up to its length."""
        parts = load_state(self.partial, self.size)
        if parts is None:
            state_path(self.partial).unlink(missing_ok=True)
            have = self.partial.stat().st_size if self.partial.exists() else 0
            if have > self.size:
                self.partial.unlink()
                have = 0
            parts = self.config.plan(self.size)
            for part in parts:
                part.done = max(0, min(part.size, have - part.offset))
        self.parts = parts
        fd = os.open(self.partial, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                os.posix_fallocate(fd, 0, self.size)
            except OSError as exc:
                if exc.errno == 28:
                    raise DiskSpaceError(f"no space left on the device holding {self.partial}") from None
                os.ftruncate(fd, self.size)  # no fallocate on this file system: a sparse file
        except BaseException:
            os.close(fd)
            raise
        self._save(force=True)
        return fd

    def _save(self, force: bool = False) -> None:
        """Record progress (caller holds the lock, or no worker runs). Data is written before it is recorded."""
        now = time.monotonic()
        if not force and now - self.saved_at < SAVE_EVERY_S:
            return
        self.saved_at = now
        state = state_path(self.partial)
        tmp = state.with_name(state.name + ".tmp")
        document = {"size": self.size, "sha256": self.sha256, "parts": [[p.offset, p.size, p.done] for p in self.parts]}
        tmp.write_text(json.dumps(document))
        os.replace(tmp, state)

    # --- run -----------------------------------------------------------------------------------------------------

    def run(self, progress: Progress | None = None) -> Path:
        self.progress = progress
        fd = self._prepare()
        stats = self.fetcher.stats
        try:
            resumed = sum(p.done for p in self.parts)
            stats.resumed_bytes += resumed
            if self.progress and resumed:
                self.progress(resumed)
            hasher = hashlib.sha256()
            hash_thread = threading.Thread(target=self._hash, args=(fd, hasher), name="sha256-prefix", daemon=True)
            hash_thread.start()
            pending = [p for p in self.parts if not p.complete]
            try:
                if pending:
                    with ThreadPoolExecutor(min(self.config.parts, len(pending)), "part") as pool:
                        futures = [pool.submit(self._fetch_part, fd, part) for part in pending]
                        try:
                            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                        except BaseException:  # Ctrl-C: the workers stop after their current chunk
                            self.stop.set()
                            raise
                        failed = [exc for f in done if (exc := f.exception()) is not None]
                        if failed:
                            self.stop.set()
                            for future in futures:
                                future.cancel()
                            raise failed[0]
            finally:
                with self.cond:
                    if any(not p.complete for p in self.parts):
                        self.stop.set()
                    self._save(force=True)
                    self.cond.notify_all()
                hash_thread.join()
        except BaseException:
            self.stop.set()
            raise
        finally:
            os.close(fd)
        got = hasher.hexdigest()
        if got != self.sha256 or self.hashed != self.size:
            discard(self.partial)
            raise VerifyError(
                f"{self.what}: digest mismatch from {self.url}: expected sha256:{self.sha256}, got sha256:{got}"
            )
        state_path(self.partial).unlink(missing_ok=True)
        return self.partial

    def _prefix(self) -> int:
        """prefix_of(self.parts) in amortised O(1) (caller holds the lock)."""
        parts = self.parts
        while self._first_open < len(parts) and parts[self._first_open].complete:
            self._first_open += 1
        if self._first_open == len(parts):
            return self.size
        part = parts[self._first_open]
        return part.offset + part.done

    def _hash(self, fd: int, hasher: hashlib._Hash) -> None:
        """Hash the contiguous written prefix as it grows, from the page cache, in one reused buffer."""
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        pos = 0
        while pos < self.size:
            with self.cond:
                while (end := self._prefix()) <= pos and not self.stop.is_set():
                    self.cond.wait(1.0)
            if end <= pos:
                break
            while pos < end:
                n = os.preadv(fd, [view[: min(CHUNK, end - pos)]], pos)
                if n <= 0:
                    break
                hasher.update(view[:n])
                pos += n
        self.hashed = pos

    def _fetch_part(self, fd: int, part: Part) -> None:
        policy = self.fetcher.policy
        failures = 0
        while not part.complete and not self.stop.is_set():
            start, end = part.offset + part.done, part.offset + part.size - 1
            url = self.url
            try:
                resp = self.fetcher.request(
                    "GET",
                    url,
                    headers={**self.headers, "Range": f"bytes={start}-{end}"},
                    what=self.what,
                    stream=True,
                    ok=frozenset({200, 206} | (EXPIRED if url != self.origin else set())),
                )
                if resp.status_code in EXPIRED:
                    # A signed direct URL (GitHub's asset host, a CDN) expired during a long download: from now on
                    # every part asks the original URL again and follows its redirect to a fresh one.
                    resp.close()
                    self.url = self.origin
                    failures += 1
                    continue
                with resp:
                    if resp.status_code != 206 or not resp.headers.get("Content-Range", "").startswith(
                        f"bytes {start}-"
                    ):
                        raise NoRanges(f"HTTP {resp.status_code} to Range bytes={start}-{end}")
                    self._stream(fd, part, resp)
                if not part.complete and not self.stop.is_set():
                    raise TransientError(f"part at {part.offset} ended {part.size - part.done} bytes early")
            except TransientError as exc:
                failures += 1
                if failures >= policy.attempts:
                    raise FetchError(f"{self.what}: transfer kept breaking off ({exc}) at {self.url}") from None
                self.fetcher.stats.retries += 1
                policy.sleep(policy.delay(failures - 1, None))

    def _stream(self, fd: int, part: Part, resp: requests.Response) -> None:
        stats = self.fetcher.stats
        while not part.complete and not self.stop.is_set():
            try:
                data = resp.raw.read1(min(READ_CHUNK, part.size - part.done))
            except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
                raise TransientError(f"{type(exc).__name__}: {short(exc)}") from None
            if not data:
                return
            n = len(data)
            try:
                written = 0
                while written < n:
                    written += os.pwrite(fd, memoryview(data)[written:], part.offset + part.done + written)
            except OSError as exc:
                if exc.errno == 28:
                    raise DiskSpaceError(f"no space left on the device holding {self.partial}") from None
                raise
            with self.cond:
                part.done += n
                stats.bytes_downloaded += n
                self._save(force=part.complete)
                self.cond.notify_all()
            if self.progress:
                self.progress(n)
