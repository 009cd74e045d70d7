"""Timing, memory and disk measurement of one command at a time, and the machine description."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GNU_TIME = "/usr/bin/time"


@dataclass
class Run:
    """One finished command: wall seconds, peak RSS of the process tree's largest member, peak extra disk."""

    wall_s: float
    max_rss_bytes: int
    peak_disk_bytes: int
    stdout: str


@dataclass
class Series:
    """Several runs of the same command; the figure uses the median."""

    label: str
    runs: list[Run] = field(default_factory=list)

    def wall(self) -> list[float]:
        return [r.wall_s for r in self.runs]

    @property
    def median_s(self) -> float:
        return statistics.median(self.wall())

    @property
    def median_rss(self) -> int:
        return int(statistics.median(r.max_rss_bytes for r in self.runs))

    @property
    def max_disk(self) -> int:
        return max(r.peak_disk_bytes for r in self.runs)

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "median_s": round(self.median_s, 4),
            "runs_s": [round(w, 4) for w in self.wall()],
            "median_max_rss_bytes": self.median_rss,
            "max_peak_disk_bytes": self.max_disk,
        }


class DiskWatcher:
    """Polls statvfs of one file system while a command runs; ``peak`` is the most space used above the start."""

    def __init__(self, path: Path, interval: float = 0.02) -> None:
        self.path = path
        self.interval = interval
        self.start_used = self._used()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="disk-watcher", daemon=True)

    def _used(self) -> int:
        st = os.statvfs(self.path)
        return (st.f_blocks - st.f_bfree) * st.f_frsize

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._used() - self.start_used)
            self._stop.wait(self.interval)

    def __enter__(self) -> DiskWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._used() - self.start_used)


def run_measured(
    argv: Sequence[str],
    *,
    disk_path: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 1800,
) -> Run:
    """Run ``argv``; wall time from fork to reap, peak RSS as GNU time reports it (%M: the largest process).

    GNU time does the measuring because Linux keeps ru_maxrss across exec: a child forked from this (big)
    Python process would report at least this process's RSS; forked from the small `time`, it starts near zero.
    """
    rss_file = tempfile.NamedTemporaryFile(prefix="bench-rss-", suffix=".txt", delete=False)  # noqa: SIM115
    rss_file.close()
    with DiskWatcher(disk_path) as disk:
        started = time.perf_counter()
        process = subprocess.Popen(
            [GNU_TIME, "-f", "%M", "-o", rss_file.name, *argv],
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        # Drain the pipes in threads so a chatty command never blocks on a full pipe.
        out: list[bytes] = []
        err: list[bytes] = []
        readers = [
            threading.Thread(target=lambda: out.append(process.stdout.read()), daemon=True),  # type: ignore[union-attr]
            threading.Thread(target=lambda: err.append(process.stderr.read()), daemon=True),  # type: ignore[union-attr]
        ]
        for reader in readers:
            reader.start()
        deadline = time.monotonic() + timeout
        while True:
            pid, status, _ = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                process.kill()
                pid, status, _ = os.wait4(process.pid, 0)
                break
            time.sleep(0.002)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        for reader in readers:
            reader.join()
    stdout = (out[0] if out else b"").decode(errors="replace")
    if process.returncode != 0:
        stderr = (err[0] if err else b"").decode(errors="replace")
        raise RuntimeError(f"{' '.join(argv)} exited {process.returncode}:\n{stderr[-2000:]}{stdout[-1000:]}")
    rss_text = Path(rss_file.name).read_text().strip().splitlines()
    os.unlink(rss_file.name)
    return Run(wall_s=wall, max_rss_bytes=int(rss_text[-1]) * 1024, peak_disk_bytes=disk.peak, stdout=stdout)


def series(
    label: str,
    argv: Sequence[str],
    reps: int,
    *,
    disk_path: Path,
    before: Callable[[], None] | None = None,
    after: Callable[[], None] | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Series:
    """``reps`` runs of ``argv``, calling ``before``/``after`` around each (untimed: warm caches, delete outputs)."""
    result = Series(label)
    for _ in range(reps):
        if before:
            before()
        result.runs.append(run_measured(argv, disk_path=disk_path, cwd=cwd, env=env))
        if after:
            after()
    return result


def interleaved(
    pairs: Sequence[tuple[str, Sequence[str]]],
    reps: int,
    *,
    disk_path: Path,
    before: Callable[[str], None] | None = None,
    after: Callable[[str], None] | None = None,
    cwd: Path | None = None,
) -> dict[str, Series]:
    """Run each labelled command once per round, alternating the order every round, so drift on a noisy
    machine (other jobs, writeback) hits baseline and candidate alike."""
    results = {label: Series(label) for label, _ in pairs}
    for round_index in range(reps):
        order = list(pairs) if round_index % 2 == 0 else list(reversed(pairs))
        for label, argv in order:
            if before:
                before(label)
            results[label].runs.append(run_measured(argv, disk_path=disk_path, cwd=cwd))
            if after:
                after(label)
    return results


def warm(*paths: Path) -> None:
    """Read files once so the page cache holds them (both sides of a figure then start warm)."""
    for path in paths:
        with open(path, "rb", buffering=0) as handle:
            buf = bytearray(1 << 22)
            while handle.readinto(buf):
                pass


def settle() -> None:
    """Flush dirty pages of the previous run so its writeback does not slow the next one."""
    os.sync()


def machine_info(disk_path: Path) -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    fs_type = ""
    with contextlib.suppress(OSError):
        fs_type = subprocess.run(
            ["findmnt", "-no", "FSTYPE", "--target", str(disk_path)], capture_output=True, text=True, check=False
        ).stdout.strip()
    free = os.statvfs(disk_path)
    return {
        "nproc": os.cpu_count(),
        "memory_bytes": mem_total,
        "memory_gib": round(mem_total / (1 << 30), 1),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "work_dir_fs": fs_type,
        "work_dir_free_bytes": free.f_bavail * free.f_frsize,
        "rlimit_nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }
