"""Figures 1c-1e (`--only ranged`): the ranged download against a mirror that caps each connection (as a CDN
does), and against a link.

The mirror is the test bed's nginx behind the fault proxy, run in a process of its own so that its rate limiting
does not share this process's interpreter. Three clients fetch the same 1 GiB blob through it, interleaved:

- ``Fetcher.download`` with its defaults (ranged: parts of at most 16 MiB, in order, on 16 connections, sha256
  in-stream);
- the same with ``OLLAMA_AIRGAP_PART_SIZE=0``: upstream ollama's layout, 16 parts of size/16 within 100 MB..1 GB;
- the same with ``OLLAMA_AIRGAP_PARTS=1`` (one stream, the bundler before issue 14);
- ``curl -o`` (one stream, no hashing).

1c/1d: every connection capped at ``--ranged-conn-rate`` (20 MB/s). 1e: no per-connection cap, all connections
together capped at ``--ranged-link-rate`` (a link); the goal is the link's own time (size / rate) + 10 %.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.bed import BigModel, size_label
from benchmarks.bundle_side import Context, _phase_seconds
from benchmarks.measure import Series, interleaved, settle, warm
from benchmarks.report import Figure, Skipped

MB = 1000 * 1000


@dataclass(frozen=True)
class Caps:
    conn_rate: int = 0
    link_rate: int = 0


def _serve(upstream: str, caps: Caps, conn: multiprocessing.connection.Connection) -> None:
    """Child process: the fault proxy in front of ``upstream`` until told to stop; answers with its log's ranges."""
    from testbed.faultproxy import fault_proxy

    with fault_proxy(upstream) as proxy:
        proxy.cap(conn_rate=caps.conn_rate, link_rate=caps.link_rate)
        conn.send(proxy.url)
        while (message := conn.recv()) != "stop":
            if message == "log":
                conn.send([(h.range_header, h.status, h.sent) for h in proxy.log])
            elif message == "clear":
                proxy.clear()
                conn.send(True)


class ProxyProcess:
    def __init__(self, upstream: str, caps: Caps) -> None:
        self.conn, child = multiprocessing.get_context("fork").Pipe()
        self.process = multiprocessing.get_context("fork").Process(
            target=_serve, args=(upstream, caps, child), daemon=True
        )
        self.process.start()
        self.url: str = self.conn.recv()

    def ask(self, message: str) -> Any:
        self.conn.send(message)
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send("stop")
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()


def _clients(ctx: Context, url: str, model: BigModel, out: Path) -> list[tuple[str, list[str]]]:
    download = ctx.worker("download", url, model.hex, model.size, out)
    return [
        ("ranged Fetcher.download", download),
        ("ranged, upstream layout", ["env", "OLLAMA_AIRGAP_PART_SIZE=0", *download]),
        ("one stream (OLLAMA_AIRGAP_PARTS=1)", ["env", "OLLAMA_AIRGAP_PARTS=1", *download]),
        ("curl -o", ["curl", "-sSfL", "-o", str(out), url]),
    ]


def _run(ctx: Context, model: BigModel, caps: Caps, reps: int) -> tuple[dict[str, Series], list[list[Any]]]:
    out = ctx.scratch / "ranged.out"
    proxy = ProxyProcess(model.nginx_url.split("/github-production")[0], caps)
    path = model.nginx_url.removeprefix(model.nginx_url.split("/github-production")[0])
    logs: list[list[Any]] = []

    def before(_: str) -> None:
        ctx.clear(out)
        settle()
        warm(model.registry_file)
        proxy.ask("clear")

    def after(_: str) -> None:
        logs.append(proxy.ask("log"))
        ctx.clear(out)

    try:
        runs = interleaved(
            _clients(ctx, proxy.url + path, model, out), reps, disk_path=ctx.scratch, before=before, after=after
        )
    finally:
        proxy.close()
    return runs, logs


def ranged_figures(
    ctx: Context, model: BigModel, conn_rate: int, link_rates: list[int], reps: int
) -> list[Figure | Skipped]:
    label = size_label(model.size)
    figures: list[Figure | Skipped] = []
    runs, logs = _run(ctx, model, Caps(conn_rate=conn_rate), reps)
    ranged, upstream, one, curl = (runs[name] for name, _ in _clients(ctx, "", model, Path()))
    parts = max(sum(1 for r, status, _ in log if status == 206 and r != "bytes=0-0") for log in logs)
    stream_s = model.size / conn_rate
    cap_note = (
        f"nginx behind the fault proxy (own process), each connection capped at {conn_rate / MB:.0f} MB/s "
        f"(token bucket per connection): one stream needs {stream_s:.1f} s for {label}; the ranged download "
        f"used {parts} Range requests of at most 16 MiB on 16 connections (+1 probe of bytes=0-0)"
    )
    figures.append(
        Figure(
            "1c",
            f"Ranged download of {label}, {conn_rate / MB:.0f} MB/s per connection, vs one stream",
            ranged,
            one,
            ">= 8x one stream (<= 0.125x)",
            max_ratio=0.125,
            notes=[
                cap_note,
                f"speed-up {one.median_s / ranged.median_s:.1f}x; in-process phase seconds (no interpreter start): "
                f"ranged {_phase_seconds(ranged)}, one stream {_phase_seconds(one)}",
                f"upstream ollama's layout (OLLAMA_AIRGAP_PART_SIZE=0: parts of max(size/16, 100 MB)) "
                f"{upstream.median_s:.2f} s, {one.median_s / upstream.median_s:.1f}x one stream: its parts advance "
                f"side by side, so most of the blob is hashed after the last byte; phase seconds "
                f"{_phase_seconds(upstream)}",
            ],
            extra={"bytes": model.size, "conn_rate": conn_rate, "parts": parts},
        )
    )
    figures.append(
        Figure(
            "1d",
            f"Ranged download of {label}, {conn_rate / MB:.0f} MB/s per connection, vs curl",
            ranged,
            curl,
            ">= 8x one stream (<= 0.125x)",
            max_ratio=0.125,
            notes=[f"speed-up {curl.median_s / ranged.median_s:.1f}x over curl -o through the same proxy"],
            extra={"bytes": model.size, "conn_rate": conn_rate, "parts": parts},
        )
    )
    for link_rate in link_rates:
        figures.append(link_figure(ctx, model, link_rate, reps))
    return figures


def link_figure(ctx: Context, model: BigModel, link_rate: int, reps: int) -> Figure:
    label = size_label(model.size)
    runs, _ = _run(ctx, model, Caps(link_rate=link_rate), reps)
    ranged, upstream, one, curl = (runs[name] for name, _ in _clients(ctx, "", model, Path()))
    link_s = model.size / link_rate
    return Figure(
        f"1e ({link_rate / MB:.0f} MB/s)",
        f"Ranged download of {label} over a {link_rate / MB:.0f} MB/s link, vs curl",
        ranged,
        curl,
        f"within 10 % of the link: <= {1.1 * link_s:.2f} s",
        max_candidate=1.1 * link_s,
        notes=[
            f"no per-connection cap; one token bucket of {link_rate / MB:.0f} MB/s shared by all connections "
            f"(the link): {label} needs {link_s:.2f} s at the link's rate. Ranged {ranged.median_s:.2f} s = "
            f"{ranged.median_s / link_s:.3f}x the link; curl -o {curl.median_s:.2f} s = "
            f"{curl.median_s / link_s:.3f}x; one stream of ours {one.median_s:.2f} s = "
            f"{one.median_s / link_s:.3f}x; upstream layout {upstream.median_s:.2f} s = "
            f"{upstream.median_s / link_s:.3f}x",
            f"in-process phase seconds (no interpreter start): ranged {_phase_seconds(ranged)}, "
            f"one stream {_phase_seconds(one)}, upstream layout {_phase_seconds(upstream)}",
        ],
        extra={"bytes": model.size, "link_rate": link_rate, "link_s": round(link_s, 3)},
    )
