"""Figures 1-4: the connected side (download + verify, pack, verify, memory), each against a command-line
baseline run in the same invocation."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmarks.bed import Bed, BigModel, size_label
from benchmarks.measure import Series, interleaved, run_measured, settle, warm
from benchmarks.report import Figure, Skipped

MIB = 1 << 20
REPO_ROOT = Path(__file__).resolve().parent.parent
MODULE = REPO_ROOT / "plugins" / "modules" / "airgap_bundle.py"


@dataclass
class Context:
    bed: Bed
    scratch: Path
    reps: int
    python: str = sys.executable

    @property
    def bundle_cli(self) -> str:
        return str(Path(self.python).with_name("bundle"))

    def worker(self, *args: str | Path | int) -> list[str]:
        return [self.python, "-m", "benchmarks.worker", *map(str, args)]

    def clear(self, *paths: Path) -> None:
        for path in paths:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)


def _phase_seconds(series: Series) -> list[float]:
    return [round(float(json.loads(run.stdout.strip().splitlines()[-1])["phase_s"]), 3) for run in series.runs]


# --- 1. download + verify ------------------------------------------------------------------------------------


def download_figures(ctx: Context, model: BigModel) -> list[Figure | Skipped]:
    spec = ctx.bed.write_spec(model)
    cache, curl_out, fetch_out = ctx.scratch / "fetch-cache", ctx.scratch / "curl.out", ctx.scratch / "fetch.out"
    mirrors = [f"{host}={url}" for host, url in ctx.bed.mirror_map().items()]

    def before(_: str) -> None:
        ctx.clear(cache, curl_out, fetch_out)
        settle()
        warm(model.registry_file)

    def after(_: str) -> None:
        ctx.clear(cache, curl_out, fetch_out)

    figures: list[Figure | Skipped] = []
    registry = interleaved(
        [
            ("curl -o (registry)", ["curl", "-sSfL", "-o", str(curl_out), model.blob_url]),
            ("bundle build fetch phase (registry)", ctx.worker("fetch", spec, cache, *mirrors)),
        ],
        ctx.reps,
        disk_path=ctx.scratch,
        before=before,
        after=after,
    )
    candidate = registry["bundle build fetch phase (registry)"]
    figures.append(
        Figure(
            "1a",
            f"Download + verify {size_label(model.size)} from docker-registry",
            candidate,
            registry["curl -o (registry)"],
            "<= 0.7x curl",
            max_ratio=0.7,
            notes=[
                "candidate = a fresh `python -m benchmarks.worker fetch` process: Builder.resolve_release + "
                "resolve_models + fetch_all into an empty cache (what `bundle build` does before packing), "
                "sha256 in-stream; interpreter start-up included, in-process phase seconds per run "
                f"{_phase_seconds(candidate)} s",
            ],
            extra={"bytes": model.size, "phase_s": _phase_seconds(candidate)},
        )
    )
    nginx = interleaved(
        [
            ("curl -o (nginx)", ["curl", "-sSfL", "-o", str(curl_out), model.nginx_url]),
            ("Fetcher.download (nginx)", ctx.worker("download", model.nginx_url, model.hex, model.size, fetch_out)),
        ],
        ctx.reps,
        disk_path=ctx.scratch,
        before=before,
        after=after,
    )
    candidate = nginx["Fetcher.download (nginx)"]
    figures.append(
        Figure(
            "1b",
            f"Download + verify {size_label(model.size)} from nginx",
            candidate,
            nginx["curl -o (nginx)"],
            "<= 0.7x curl",
            max_ratio=0.7,
            notes=[f"Fetcher.download in-process phase seconds per run {_phase_seconds(candidate)} s"],
            extra={"bytes": model.size, "phase_s": _phase_seconds(candidate)},
        )
    )
    return figures


# --- a built bundle, archive and unpacked, for figures 2 and 3 ------------------------------------------------


def build_bundle(ctx: Context, model: BigModel, name: str) -> tuple[Path, Path]:
    """`bundle build` into a throw-away cache (removed after), then the archive unpacked by tar next to it."""
    spec = ctx.bed.write_spec(model)
    cache, archive, unpacked = ctx.scratch / f"{name}-cache", ctx.scratch / f"{name}.tar", ctx.scratch / name
    run_measured(
        [
            ctx.bundle_cli,
            "build",
            str(spec),
            "--cache",
            str(cache),
            "-o",
            str(archive),
            "--json",
            *ctx.bed.mirror_args(),
        ],
        disk_path=ctx.scratch,
    )
    ctx.clear(cache)
    unpacked.mkdir()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(unpacked)], check=True)
    return archive, unpacked


def bundle_files(unpacked: Path) -> list[Path]:
    return sorted(p for p in unpacked.rglob("*") if p.is_file())


# --- 2. pack -------------------------------------------------------------------------------------------------


def pack_figures(ctx: Context, unpacked: Path, archive_size: int) -> list[Figure | Skipped]:
    out = ctx.scratch / "pack-out.tar"
    files = bundle_files(unpacked)

    def before(_: str) -> None:
        ctx.clear(out)
        settle()
        warm(*files)

    def after(_: str) -> None:
        ctx.clear(out)
        settle()

    tar = ["tar", "-cf", str(out), "-C", str(unpacked), "."]
    tar_sync = ["sh", "-c", f"tar -cf '{out}' -C '{unpacked}' . && sync '{out}'"]
    runs = interleaved(
        [("tar -cf", tar), ("tar -cf; sync FILE", tar_sync), ("bundle.pack", ctx.worker("pack", unpacked, out))],
        ctx.reps,
        disk_path=ctx.scratch,
        before=before,
        after=after,
    )
    candidate = runs["bundle.pack"]
    peak = candidate.max_disk
    disk_note = (
        f"peak extra disk while packing: bundle.pack {peak / MIB:.0f} MiB, tar {runs['tar -cf'].max_disk / MIB:.0f} "
        f"MiB, for a {archive_size / MIB:.0f} MiB archive ({peak / archive_size:.2f}x the archive: "
        f"{'no' if peak <= 1.05 * archive_size else 'a'} second full copy)"
    )
    extra = {"archive_bytes": archive_size, "peak_extra_disk_bytes": peak, "phase_s": _phase_seconds(candidate)}
    return [
        Figure(
            "2a",
            "Pack (archive from the bundle's files)",
            candidate,
            runs["tar -cf"],
            "<= 1.0x tar, no 2nd copy",
            max_ratio=1.0,
            notes=[
                disk_note,
                "bundle.pack (worker process: reads bundle.yaml, builds the Entry list, calls pack) fsyncs the "
                "archive before renaming it; tar does not. In-process phase seconds per run "
                f"{_phase_seconds(candidate)} s",
            ],
            extra=extra,
        ),
        Figure(
            "2b",
            "Pack, durable (both fsync the archive)",
            candidate,
            runs["tar -cf; sync FILE"],
            "<= 1.0x tar+fsync",
            max_ratio=1.0,
            extra=extra,
        ),
    ]


# --- 3. verify -----------------------------------------------------------------------------------------------


def verify_figures(ctx: Context, archive: Path, unpacked: Path) -> list[Figure | Skipped]:
    files = bundle_files(unpacked)
    total = sum(p.stat().st_size for p in files)
    module_dest, extracted, state = ctx.scratch / "module-dest", ctx.scratch / "tar-x", ctx.scratch / "module-state"

    def before(_: str) -> None:
        ctx.clear(module_dest, extracted, state)
        settle()
        warm(archive, *files)

    def after(_: str) -> None:
        ctx.clear(module_dest, extracted, state)

    sha256sum = ["sh", "-c", f"cd '{unpacked}' && sha256sum -c --quiet SHA256SUMS"]
    untar_sha256sum = [
        "sh",
        "-c",
        f"mkdir '{extracted}' && tar -xf '{archive}' -C '{extracted}' && cd '{extracted}' "
        "&& sha256sum -c --quiet SHA256SUMS",
    ]
    pairs: list[tuple[str, list[str]]] = [
        ("sha256sum -c SHA256SUMS", sha256sum),
        ("bundle verify ARCHIVE", [ctx.bundle_cli, "verify", str(archive), "--json"]),
        ("bundle verify DIR", [ctx.bundle_cli, "verify", str(unpacked), "--json"]),
    ]
    if MODULE.is_file():
        pairs += [
            ("airgap_bundle module, dir in place", module_command(ctx, unpacked, unpacked, state, "in-place")),
            ("tar -xf; sha256sum -c", untar_sha256sum),
            ("airgap_bundle module, archive -> dest", module_command(ctx, archive, module_dest, state, "archive")),
        ]
    runs = interleaved(pairs, ctx.reps, disk_path=ctx.scratch, before=before, after=after)
    baseline = runs["sha256sum -c SHA256SUMS"]
    goal = ">= 3x faster (<= 0.33x)"
    figures: list[Figure | Skipped] = [
        Figure(
            "3a",
            f"Verify {total / MIB:.0f} MiB archive",
            runs["bundle verify ARCHIVE"],
            baseline,
            goal,
            max_ratio=1 / 3,
        ),
        Figure(
            "3b",
            f"Verify {total / MIB:.0f} MiB unpacked dir",
            runs["bundle verify DIR"],
            baseline,
            goal,
            max_ratio=1 / 3,
        ),
    ]
    if not MODULE.is_file():
        missing = "plugins/modules/airgap_bundle.py does not exist yet"
        return [*figures, Skipped("3c", "On-host verification module", missing)]
    module_note = (
        "the Ansible module run by this machine's python (`python plugins/modules/airgap_bundle.py ARGS.json`, as "
        "Ansible runs it on a host, without the SSH round trip), with a fresh state_dir each run so it really hashes"
    )
    figures += [
        Figure(
            "3c",
            "On-host module: verify an unpacked dir in place",
            runs["airgap_bundle module, dir in place"],
            baseline,
            goal,
            max_ratio=1 / 3,
            notes=[module_note],
        ),
        Figure(
            "3d",
            "On-host module: unpack archive + verify",
            runs["airgap_bundle module, archive -> dest"],
            runs["tar -xf; sha256sum -c"],
            "<= 0.33x (goal of 3)",
            max_ratio=1 / 3,
            notes=["the module extracts and hashes in one pass; the baseline extracts with tar, then sha256sum -c"],
        ),
    ]
    return figures


def module_command(ctx: Context, src: Path, dest: Path, state: Path, name: str) -> list[str]:
    """The on-host module run directly (AnsibleModule reads {"ANSIBLE_MODULE_ARGS": ...} from argv[1])."""
    document = yaml.safe_load((src / "bundle.yaml").read_bytes() if src.is_dir() else _archive_manifest(src))
    manifest = (src / "bundle.yaml").read_bytes() if src.is_dir() else _archive_manifest(src)
    arguments = {
        "state": "present",
        "src": str(src),
        "dest": str(dest),
        "state_dir": str(state),
        "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
        "files": document["files"],
        "sums_sha256": document["sha256sums_sha256"],
    }
    args_file = ctx.scratch / f"module-args-{name}.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": arguments}))
    return [ctx.python, str(MODULE), str(args_file)]


def _archive_manifest(archive: Path) -> bytes:
    with tarfile.open(archive, "r:") as tar:
        handle = tar.extractfile("bundle.yaml")
        assert handle is not None
        return handle.read()


# --- 4. memory -----------------------------------------------------------------------------------------------


def memory_figures(ctx: Context, sizes: list[int], reps: int) -> list[Figure | Skipped]:
    figures: list[Figure | Skipped] = []
    rss_by_size: dict[int, int] = {}
    for size in sizes:
        model = ctx.bed.model(size)
        spec = ctx.bed.write_spec(model)
        cache, archive, curl_out = ctx.scratch / "mem-cache", ctx.scratch / "mem.tar", ctx.scratch / "mem-curl.out"
        build = [ctx.bundle_cli, "build", str(spec), "--cache", str(cache), "-o", str(archive), "--json"]

        scratch_files = (cache, archive, curl_out, archive.with_name("mem.lock.yaml"))

        def before(_: str, model: BigModel = model, scratch_files: tuple[Path, ...] = scratch_files) -> None:
            ctx.clear(*scratch_files)
            settle()
            warm(model.registry_file)

        def after(_: str, scratch_files: tuple[Path, ...] = scratch_files) -> None:
            ctx.clear(*scratch_files)

        runs = interleaved(
            [
                ("curl -o (registry)", ["curl", "-sSfL", "-o", str(curl_out), model.blob_url]),
                ("bundle build", [*build, *ctx.bed.mirror_args()]),
            ],
            reps,
            disk_path=ctx.scratch,
            before=before,
            after=after,
        )
        candidate = runs["bundle build"]
        rss_by_size[size] = candidate.median_rss
        figures.append(
            Figure(
                f"4 ({size_label(size)})",
                f"Peak RSS, `bundle build` of a {size_label(size)} model",
                candidate,
                runs["curl -o (registry)"],
                "flat, < 100 MiB",
                metric="rss",
                max_candidate=100 * MIB,
                notes=[
                    f"`bundle build` (fetch + pack) wall {candidate.median_s:.2f} s vs curl -o "
                    f"{runs['curl -o (registry)'].median_s:.2f} s"
                ],
                extra={"bytes": size, "build_wall_s": round(candidate.median_s, 3)},
            )
        )
    if len(rss_by_size) > 1:
        smallest, largest = min(rss_by_size), max(rss_by_size)
        growth = rss_by_size[largest] / rss_by_size[smallest]
        last = figures[-1]
        assert isinstance(last, Figure)
        last.notes.append(
            f"flatness: RSS at {size_label(largest)} is {growth:.2f}x the RSS at {size_label(smallest)} "
            f"({(rss_by_size[largest] - rss_by_size[smallest]) / MIB:+.1f} MiB)"
        )
        last.extra["rss_growth"] = round(growth, 3)
    return figures
