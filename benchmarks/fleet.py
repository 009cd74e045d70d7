"""Fleet benchmark: control-node push against the depot, for 1, 4, 8 and 16 hosts, every link limited with tc.

    PYTHONPATH=.:scripts:src .venv/bin/python -m benchmarks.fleet --hosts 1,4,8,16 --size 128M --mbit 200

One bundle (ollama 0.14.1 stand-in release, one big model of --size, the depot's registry tarball) is built from
the test bed mirrors. node1 is the depot (playbooks/depot.yml, untimed); nodes 2.. are the fleet. Every host's veth
and the control node's link (the bridge) are limited to --mbit each way (benchmarks/fleet_bed.py). For each N the
fleet's bundle state is wiped, then ``playbooks/bundle.yml`` is timed with ``bundle_transport`` push and depot.
The fixed cost of a play (preflight, SSH, the record check) is measured by a re-run that changes nothing and is
reported beside the raw figures. Bound for the depot (and for push, whose source also has one link): N·B/L.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from benchmarks.bed import Bed, parse_size
from benchmarks.fleet_bed import FleetBed, fleet_bed
from testbed.hosts import Host

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
VENV_BIN = Path(sys.executable).parent


def playbook(inventory: Path, vars_file: Path, name: str, hosts: list[Host], **extra: str) -> tuple[float, str]:
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), "-e", f"@{vars_file}",
            "--limit", ",".join(h.name for h in hosts), str(REPO / name)]  # fmt: skip
    for key, value in extra.items():
        argv[1:1] = ["-e", f"{key}={value}"]
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORKS": "32"}  # fmt: skip
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}")
    return seconds, proc.stdout


def wipe(hosts: list[Host]) -> None:
    for host in hosts:
        host.ssh("rm -rf /var/lib/ollama-airgap", check=False)


def bundle_bytes(archive: Path) -> int:
    with tarfile.open(archive) as tar:
        member = tar.extractfile("bundle.yaml")
        assert member is not None
        return int(yaml.safe_load(member.read())["total_size"])


def build(bed: Bed, size: int, work: Path) -> Path:
    model = bed.model(size)
    spec_path = bed.write_spec(model)
    spec = yaml.safe_load(spec_path.read_text())
    spec["fleet"] = {"depot": True}
    spec_path.write_text(yaml.safe_dump(spec))
    out = work / "fleet-bench.tar"
    argv = [str(VENV_BIN / "bundle"), "build", str(spec_path), "-o", str(out), "--cache", str(work / "cache"), "-q",
            *bed.mirror_args()]  # fmt: skip
    subprocess.run(argv, check=True, env={**os.environ, "OLLAMA_AIRGAP_DEPLOY_KIT": "0"})
    return out


def measure(fleet: FleetBed, inventory: Path, vars_file: Path, counts: list[int], modes: list[str]) -> list[dict]:
    rows = []
    for count in counts:
        hosts = fleet.hosts[1 : count + 1]
        for mode in modes:
            wipe(hosts)
            seconds, _ = playbook(inventory, vars_file, "playbooks/bundle.yml", hosts, bundle_transport=mode)
            fixed, _ = playbook(inventory, vars_file, "playbooks/bundle.yml", hosts, bundle_transport=mode)
            rows.append({"mode": mode, "hosts": count, "seconds": round(seconds, 2), "fixed_seconds": round(fixed, 2)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def report(rows: list[dict], size: int, mbit: float, command: str) -> dict[str, Any]:
    link = mbit * 1e6 / 8
    for row in rows:
        one = next(r for r in rows if r["mode"] == row["mode"] and r["hosts"] == 1)
        bound = row["hosts"] * size / link
        transfer = row["seconds"] - row["fixed_seconds"]
        row.update(
            bound_seconds=round(bound, 2),
            ratio_to_one=round(row["seconds"] / one["seconds"], 2),
            transfer_seconds=round(transfer, 2),
            transfer_vs_bound=round(transfer / bound, 3),
        )
    return {"command": command, "bundle_bytes": size, "mbit": mbit, "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Bundle {result['bundle_bytes'] / 2**20:.0f} MiB, every link {result['mbit']:g} Mbit/s each way. "
        f"`{result['command']}`",
        "",
        "| mode | hosts | fleet (s) | ÷ one host | fixed cost (s) | transfer (s) | N·B/L (s) | transfer ÷ N·B/L |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['mode']} | {r['hosts']} | {r['seconds']:.1f} | {r['ratio_to_one']:.2f} | {r['fixed_seconds']:.1f} "
            f"| {r['transfer_seconds']:.1f} | {r['bound_seconds']:.1f} | {r['transfer_vs_bound']:.2f} |"
        )
    return "\n".join(lines) + "\n"


Prepare = Callable[[Path, Path, list[Host], list[str]], None]


def run(
    prog: str,
    doc: str,
    argv: list[str] | None,
    *,
    default_modes: str,
    build_bundle: Callable[[Bed, int, Path], Path],
    render: Callable[[dict[str, Any]], str],
    extra_vars: dict[str, Any] | None = None,
    prepare: Prepare | None = None,
) -> int:
    """The fleet benchmarks' one driver: build a bundle, boot the tc-limited bed, load the depot, (``prepare``),
    measure every mode for every fleet size, write benchmarks/results/<prog>-<stamp>.{json,md}."""
    parser = argparse.ArgumentParser(prog=f"benchmarks.{prog}", description=doc.split("\n")[0])
    parser.add_argument("--hosts", default="1,4,8,16", help="fleet sizes, comma-separated")
    parser.add_argument("--size", default="128M", help="size of the bundle's big model")
    parser.add_argument("--mbit", type=float, default=200.0, help="every link's limit, Mbit/s each way")
    parser.add_argument("--modes", default=default_modes)
    parser.add_argument("--work", type=Path, default=Path(f"/var/tmp/ollama-airgap-{prog}-bench"))
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.hosts.split(",")]
    modes = args.modes.split(",")
    command = f"PYTHONPATH=.:scripts:src .venv/bin/python -m benchmarks.{prog} " + " ".join(argv or sys.argv[1:])
    args.work.mkdir(parents=True, exist_ok=True)
    bed = Bed(args.work / "bed")
    try:
        archive = build_bundle(bed, parse_size(args.size), args.work)
        size = bundle_bytes(archive)
        with fleet_bed(max(counts) + 1) as fleet:
            depot, members = fleet.hosts[0], fleet.hosts[1:]
            inventory = fleet.inventory({"ollama_airgap_depot": [depot], "ollama_hosts": members}, f"{prog}-bench.yml")
            vars_file = args.work / "vars.yml"
            vars_file.write_text(yaml.safe_dump({"bundle_src": str(archive), **(extra_vars or {})}))
            playbook(inventory, vars_file, "playbooks/depot.yml", [depot])
            if prepare:
                prepare(inventory, vars_file, members, modes)
            fleet.shape_all(args.mbit)
            fleet.shape_control(args.mbit)
            result = report(measure(fleet, inventory, vars_file, counts, modes), size, args.mbit, command)
    finally:
        bed.close()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    (RESULTS / f"{prog}-{stamp}.json").write_text(json.dumps(result, indent=1))
    (RESULTS / f"{prog}-{stamp}.md").write_text(render(result))
    print(render(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run("fleet", __doc__ or "", argv, default_modes="push,depot", build_bundle=build, render=markdown)


if __name__ == "__main__":
    raise SystemExit(main())
