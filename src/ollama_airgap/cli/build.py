"""`bundle build SPEC`: resolve, fetch (verified, cached) and pack one archive."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ..builder import Builder
from ..cache import BlobCache, default_cache_dir
from ..delta import load_base
from ..deploy_kit import KitOptions
from ..download import Fetcher, RetryPolicy
from ..errors import SpecError
from ..lock import load_lock
from ..progress import Reporter
from ..ranged import RangedConfig, parse_size
from ..signing import load_private_key
from ..spec import load_spec


def parse_mirrors(values: list[str]) -> dict[str, str]:
    """``HOST=URL`` pairs from --mirror flags and OLLAMA_AIRGAP_MIRRORS (comma-separated)."""
    pairs = [p for p in os.environ.get("OLLAMA_AIRGAP_MIRRORS", "").split(",") if p.strip()] + values
    mirrors = {}
    for pair in pairs:
        host, sep, url = pair.strip().partition("=")
        if not sep or not host or not url:
            raise SpecError(f"--mirror {pair!r}: expected HOST=URL, e.g. registry.ollama.ai=http://127.0.0.1:5000")
        mirrors[host] = url
    return mirrors


def register(sub: Any) -> None:
    from .main import add_common

    parser: argparse.ArgumentParser = sub.add_parser(
        "build",
        help="build a bundle archive from a spec",
        epilog=(
            "Models are asked for with the pinned ollama's User-Agent. Before any model blob is downloaded, a model "
            "is refused (exit 2, one line naming it) when its config requires a newer ollama than ollama.version, "
            "when the registry answers 412 for that ollama, when it is a cloud model, or when a layer has a media "
            "type this bundler does not know. A model no Modelfile can carry (safetensors tensors, split GGUF, "
            "text a Modelfile cannot quote, a command the pinned ollama cannot parse) is bundled restore-only. "
            "Exit codes: 2 spec or model refused, 3 verification failed, 4 upstream failed, 5 not enough disk."
        ),
    )
    parser.add_argument("spec", type=Path, help="bundle spec, e.g. bundles/llama3.yaml")
    parser.add_argument("-o", "--output", type=Path, help="archive to write (default: dist/<name>.tar)")
    parser.add_argument("--cache", type=Path, help="blob cache directory (default: $OLLAMA_AIRGAP_CACHE or ~/.cache)")
    parser.add_argument("--lock", type=Path, help="rebuild exactly what this lock file pins")
    parser.add_argument(
        "--mirror",
        action="append",
        default=[],
        metavar="HOST=URL",
        help="base URL standing in for an upstream host (registry.ollama.ai, github.com, ghcr.io); repeatable",
    )
    parser.add_argument(
        "--base",
        type=Path,
        metavar="OLD",
        help=(
            "build a differential bundle carrying only the files this base lacks: the base's archive, unpacked "
            "directory, bundle.yaml (or the <name>.bundle.yaml written beside its archive) or <name>.lock.yaml "
            "(found beside its bundle.yaml or archive). Hosts assemble the complete bundle from the base they hold"
        ),
    )
    parser.add_argument(
        "--deploy-kit",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("OLLAMA_AIRGAP_DEPLOY_KIT", "1") not in ("0", "false", "no"),
        help=(
            "carry the deploy kit: the `deploy` command, the collection, the control node's wheels, the testinfra "
            "suite (default on; OLLAMA_AIRGAP_DEPLOY_KIT=0 turns the default off; the spec's deploy_kit: false too)"
        ),
    )
    parser.add_argument("--repo", type=Path, help="repository the kit is built from (default: $OLLAMA_AIRGAP_REPO)")
    parser.add_argument(
        "--kit-index-url",
        default=os.environ.get("OLLAMA_AIRGAP_KIT_INDEX_URL"),
        metavar="URL",
        help="package index for the kit's wheels, instead of PyPI (default: $OLLAMA_AIRGAP_KIT_INDEX_URL)",
    )
    parser.add_argument(
        "--kit-find-links", action="append", type=Path, default=[], metavar="DIR", help="a folder of wheels for the kit"
    )
    parser.add_argument("--sign-key", type=Path, help="Ed25519 private key (bundle keygen) to sign bundle.yaml")
    parser.add_argument("--jobs", "-j", type=int, default=4, help="blobs fetched at once (default 4)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds without data before a retry (default 60)")
    parser.add_argument("--retries", type=int, default=6, help="attempts per request before giving up (default 6)")
    parser.add_argument(
        "--parts",
        type=int,
        help="ranged parts fetched at once per big blob, as ollama does (default 16, or $OLLAMA_AIRGAP_PARTS; 1: off)",
    )
    parser.add_argument(
        "--part-threshold",
        metavar="SIZE",
        help="blobs from this size on go in parts (default 64M, or $OLLAMA_AIRGAP_PART_THRESHOLD)",
    )
    add_common(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, reporter: Reporter) -> tuple[dict[str, Any], str, int]:
    spec = load_spec(args.spec, parse_mirrors(args.mirror))
    if args.jobs < 1:
        raise SpecError("--jobs: must be at least 1")
    if args.retries < 1 or args.timeout <= 0:
        raise SpecError("--retries must be at least 1 and --timeout positive")
    threshold = parse_size(args.part_threshold, "--part-threshold") if args.part_threshold else None
    ranged = RangedConfig.from_env(parts=args.parts, threshold=threshold)
    fetcher = Fetcher(RetryPolicy(attempts=args.retries, read_timeout=args.timeout), ranged)
    lock = load_lock(args.lock) if args.lock else None
    output = args.output or Path("dist") / f"{spec.name}.tar"
    cache = BlobCache(args.cache or default_cache_dir())
    sign_key = load_private_key(args.sign_key) if args.sign_key else None
    base = load_base(args.base) if args.base else None
    kit = KitOptions(args.repo, args.kit_index_url, tuple(args.kit_find_links)) if args.deploy_kit else None
    builder = Builder(
        spec, cache, reporter, lock=lock, jobs=args.jobs, fetcher=fetcher, sign_key=sign_key, base=base, deploy_kit=kit
    )
    result = builder.build(output)
    human = (
        f"wrote {result.archive} ({result.size} bytes, {result.files} files, bundle sha256:{result.bundle_digest})\n"
        f"lock: {result.lock_path}; downloaded {result.bytes_downloaded} bytes, "
        f"{result.fetched_blobs} blobs fetched, {result.cached_blobs} from cache"
    )
    if result.delta_of:
        human += (
            f"\ndifferential bundle over base sha256:{result.delta_of}: carries {result.carried_files} of "
            f"{result.files} files ({result.carried_bytes} bytes); the rest comes from the base on each host"
        )
    return {"ok": True, **result.as_dict()}, human, 0
