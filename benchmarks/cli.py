"""`python -m benchmarks`: run the figures, print the Markdown table, write benchmarks/results/<date>.{json,md}."""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks import bundle_side, deploy_side, ranged_side
from benchmarks.bed import Bed, parse_size, size_label
from benchmarks.measure import machine_info
from benchmarks.report import Figure, Skipped, markdown, write

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
BUNDLE_FIGURES = ("1", "2", "3", "4")
DEPLOY_FIGURES = ("5", "6", "7", "8")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure ollama-airgap against curl, tar, sha256sum and rsync, side by side, on the test bed.",
    )
    parser.add_argument("--reps", type=int, default=3, help="runs per side of each figure; medians reported (3)")
    parser.add_argument("--size", default="2G", help="blob size for figures 1-3 (2G)")
    parser.add_argument(
        "--memory-sizes", default="100M,1G,4G", help="blob sizes for figure 4, comma-separated (100M,1G,4G)"
    )
    parser.add_argument("--memory-reps", type=int, default=1, help="runs per size in figure 4 (1: RSS is steady)")
    parser.add_argument(
        "--only", default="", help="comma-separated figure numbers to run (default: 1-4, and 5-8 with --deploy)"
    )
    parser.add_argument(
        "--deploy", action="store_true", help="also run figures 5-8 on the test bed hosts (root; skipped when busy)"
    )
    parser.add_argument(
        "--deploy-size", default="1G", help="model size of the deploy figures; figure 5 runs each of a comma list (1G)"
    )
    parser.add_argument("--fleet", type=int, default=4, help="hosts in the fleet figure (4)")
    parser.add_argument(
        "--ranged-size", default="1G", help="blob size of the ranged-download figures 1c-1e, run with --only ranged"
    )
    parser.add_argument(
        "--ranged-conn-rate", default="20", type=float, help="MB/s per connection for figures 1c/1d (20)"
    )
    parser.add_argument(
        "--ranged-link-rate", default="125", help="MB/s of the link in figure 1e, comma-separated for several (125)"
    )
    parser.add_argument("--work-dir", type=Path, default=Path("/var/tmp"), help="where scratch files go (on disk)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where results are written")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args(argv)
    if args.reps < 1 or args.memory_reps < 1:
        parser.error("--reps and --memory-reps must be at least 1")
    return args


def disk_needed(main: int, memory_sizes: list[int], figures: set[str]) -> int:
    """A generous estimate of the scratch space at its peak (registry copies stay until the end)."""
    registry = (main if figures & {"1", "2", "3"} else 0) + (sum(memory_sizes) if "4" in figures else 0)
    working = max(4 * main if figures & {"2", "3"} else 2 * main, 3 * max(memory_sizes, default=0))
    return registry + working + (1 << 30)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Workers run as `python -m benchmarks.worker`: make the repository importable for them from anywhere.
    os.chdir(REPO_ROOT)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p
        for p in (str(REPO_ROOT), str(REPO_ROOT / "scripts"), str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH"))
        if p
    )
    wanted = set(args.only.split(",")) - {""} or set(BUNDLE_FIGURES) | (set(DEPLOY_FIGURES) if args.deploy else set())
    main_size = parse_size(args.size)
    memory_sizes = [parse_size(s) for s in args.memory_sizes.split(",") if s.strip()]
    args.work_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(args.work_dir).free
    dropped = []
    while memory_sizes and disk_needed(main_size, memory_sizes, wanted) > free:
        dropped.append(memory_sizes.pop())  # the largest goes first
    if disk_needed(main_size, memory_sizes, wanted) > free:
        print(f"benchmarks: {free / (1 << 30):.1f} GiB free in {args.work_dir} is not enough", file=sys.stderr)
        return 2

    started = datetime.datetime.now(datetime.UTC)
    scratch = Path(tempfile.mkdtemp(prefix="ollama-airgap-bench-", dir=args.work_dir))
    figures: list[Figure | Skipped] = []
    bed = Bed(scratch / "bed")
    try:
        ctx = bundle_side.Context(bed=bed, scratch=scratch / "runs", reps=args.reps)
        ctx.scratch.mkdir()
        if "1" in wanted:
            figures += bundle_side.download_figures(ctx, bed.model(main_size))
        if wanted & {"2", "3"}:
            archive, unpacked = bundle_side.build_bundle(ctx, bed.model(main_size), "main")
            if "2" in wanted:
                figures += bundle_side.pack_figures(ctx, unpacked, archive.stat().st_size)
            if "3" in wanted:
                figures += bundle_side.verify_figures(ctx, archive, unpacked)
            ctx.clear(archive, unpacked)
        if "4" in wanted:
            figures += bundle_side.memory_figures(ctx, memory_sizes, args.memory_reps)
            figures += [Skipped(f"4 ({size_label(s)})", "Peak RSS", "not enough free disk") for s in reversed(dropped)]
        if "ranged" in wanted:
            figures += ranged_side.ranged_figures(
                ctx,
                bed.model(parse_size(args.ranged_size)),
                int(args.ranged_conn_rate * 1e6),
                [int(float(rate) * 1e6) for rate in args.ranged_link_rate.split(",")],
                args.reps,
            )
        if wanted & set(DEPLOY_FIGURES):
            figures += deploy_side.run(
                ctx,
                wanted & set(DEPLOY_FIGURES),
                [parse_size(size) for size in args.deploy_size.split(",")],
                args.fleet,
                args.reps,
            )
    finally:
        bed.close()
        shutil.rmtree(scratch, ignore_errors=True)

    results = {
        "date": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine_info(args.work_dir),
        "command": os.environ.get("BENCHMARKS_COMMAND")
        or shlex.join([".venv/bin/python", "-m", "benchmarks", *(argv if argv is not None else sys.argv[1:])]),
        "config": {
            "reps": args.reps,
            "size": args.size,
            "memory_sizes": args.memory_sizes,
            "memory_reps": args.memory_reps,
            "deploy": args.deploy,
            "figures": sorted(wanted),
        },
    }
    print(markdown(results, figures))
    if not args.no_write:
        json_path, md_path = write(args.results_dir, results, figures)
        print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
