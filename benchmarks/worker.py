"""The bundler's own phases, each run alone in a fresh process so it is timed like the command-line baseline.

    python -m benchmarks.worker fetch SPEC CACHE HOST=URL...   # `bundle build` up to a verified cache
    python -m benchmarks.worker download URL SHA256 SIZE OUT    # Fetcher.download: one blob, sha256 in-stream
    python -m benchmarks.worker pack DIR OUT                    # bundle.pack of an unpacked bundle's files

Each prints one JSON line with the phase's own seconds (without interpreter start-up) for the report.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

# Each phase imports only what it uses, so a process's start-up is not charged for modules the phase never runs.


def fetch(spec_path: str, cache_dir: str, *mirrors: str) -> dict[str, object]:
    from ollama_airgap.builder import Builder
    from ollama_airgap.cache import BlobCache
    from ollama_airgap.progress import Reporter
    from ollama_airgap.spec import load_spec

    spec = load_spec(Path(spec_path), dict(pair.split("=", 1) for pair in mirrors))
    started = time.perf_counter()
    builder = Builder(spec, BlobCache(Path(cache_dir)), Reporter(enabled=False))
    _, releases = builder.resolve_release()
    models = builder.resolve_models()
    cached, fetched = builder.fetch_all(releases, models)
    return {
        "phase_s": time.perf_counter() - started,
        "bytes": builder.fetcher.stats.bytes_downloaded,
        "fetched": fetched,
        "cached": cached,
    }


def download(url: str, sha256: str, size: str, out: str) -> dict[str, object]:
    from ollama_airgap.download import Fetcher

    fetcher = Fetcher()
    started = time.perf_counter()
    fetcher.download(url, Path(out), sha256=sha256, size=int(size), what="benchmark blob")
    return {"phase_s": time.perf_counter() - started, "bytes": fetcher.stats.bytes_downloaded}


def pack_dir(root: str, out: str) -> dict[str, object]:
    import yaml

    from ollama_airgap.bundle import MANIFEST_NAME, SUMS_NAME, Entry, pack
    from ollama_airgap.progress import Reporter

    base = Path(root)
    manifest = (base / MANIFEST_NAME).read_bytes()
    sums = (base / SUMS_NAME).read_bytes()
    started = time.perf_counter()
    document = yaml.safe_load(manifest)
    entries = [Entry(f["path"], f["size"], f["sha256"], base / f["path"]) for f in document["files"]]
    size = pack(Path(out), manifest, sums, entries, int(document.get("created", 0)), Reporter(enabled=False))
    return {"phase_s": time.perf_counter() - started, "bytes": size}


PHASES: dict[str, Callable[..., dict[str, object]]] = {"fetch": fetch, "download": download, "pack": pack_dir}


def main(argv: list[str]) -> int:
    result = PHASES[argv[0]](*argv[1:])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
