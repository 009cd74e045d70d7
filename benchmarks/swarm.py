"""Fleet benchmark with peer-to-peer: push, depot and p2p side by side for 1, 4, 8 and 16 hosts, links limited by tc.

    PYTHONPATH=.:scripts:src .venv/bin/python -m benchmarks.swarm --hosts 1,4,8,16 --size 128M --mbit 200

The harness is benchmarks/fleet.py's (helper "fleet"): one bundle from the test bed mirrors (ollama 0.14.1 stand-in,
one big model of --size), here built with ``fleet: {depot: true, p2p: true}`` so it carries the depot's registry
and libtorrent's wheel (from a local PyPI holding PyPI's file). node1 is the depot (playbooks/depot.yml, untimed);
every host's veth and the control node's link are limited to --mbit each way (benchmarks/fleet_bed.py). One
untimed p2p run makes the depot's torrent first (it is cached by the bundle's digest, as in production after the
first deploy). For each N and mode the fleet's bundle state is wiped and ``playbooks/bundle.yml`` is timed; a
re-run that changes nothing gives the play's fixed cost. Results: benchmarks/results/swarm-<UTC>.{json,md}.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from benchmarks.bed import Bed
from benchmarks.fleet import VENV_BIN, markdown, playbook, run, wipe
from benchmarks.fleet_bed import FleetBed
from testbed.hosts import Host

SWARM_STATUS = "/var/lib/ollama-airgap/swarm/ollama-airgap-swarm-*.status.json"


def build(bed: Bed, size: int, work: Path) -> Path:
    """The benchmark bundle with the depot's engine and the swarm's (libtorrent from a local index)."""
    from ollama_airgap.swarm_kit import INDEX_ENV, LIBTORRENT_REQUIREMENT
    from testbed.pypi_mirror import cached_wheels, start_pypi_mirror

    spec_path = bed.write_spec(bed.model(size))
    spec = yaml.safe_load(spec_path.read_text())
    spec["fleet"] = {"depot": True, "p2p": True}
    spec_path.write_text(yaml.safe_dump(spec))
    out = work / "swarm-bench.tar"
    index = start_pypi_mirror(work / "pypi", cached_wheels([LIBTORRENT_REQUIREMENT]))
    try:
        argv = [str(VENV_BIN / "bundle"), "build", str(spec_path), "-o", str(out), "--cache", str(work / "cache"),
                "-q", *bed.mirror_args()]  # fmt: skip
        env = {**os.environ, "OLLAMA_AIRGAP_DEPLOY_KIT": "0", INDEX_ENV: index.index_url}
        subprocess.run(argv, check=True, env=env)
    finally:
        index.stop()
    return out


def swarm_span(hosts: list[Host]) -> float | None:
    """Seconds from the first host's peer starting to the last host's files complete (the swarm's own time)."""
    starts, ends = [], []
    for host in hosts:
        found = host.ssh(f"cat {SWARM_STATUS}", check=False).stdout.strip()
        if not found:
            return None
        status = json.loads(found.splitlines()[0])
        starts.append(status["started_at"])
        ends.append(status["finished_at"])
    return round(max(ends) - min(starts), 2)


def measure(fleet: FleetBed, inventory: Path, vars_file: Path, counts: list[int], modes: list[str]) -> list[dict]:
    """benchmarks/fleet.py's loop (wipe, timed run, no-change re-run), plus the swarm's span for p2p."""
    rows = []
    for count in counts:
        hosts = fleet.hosts[1 : count + 1]
        for mode in modes:
            wipe(hosts)
            seconds, _ = playbook(inventory, vars_file, "playbooks/bundle.yml", hosts, bundle_transport=mode)
            fixed, _ = playbook(inventory, vars_file, "playbooks/bundle.yml", hosts, bundle_transport=mode)
            row = {"mode": mode, "hosts": count, "seconds": round(seconds, 2), "fixed_seconds": round(fixed, 2)}
            if mode == "p2p":
                row["swarm_seconds"] = swarm_span(hosts)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def swarm_markdown(result: dict[str, Any]) -> str:
    """fleet.py's table, then p2p beside push and depot: fleet time ÷ one host's, per N."""
    table = markdown(result)
    modes = list(dict.fromkeys(r["mode"] for r in result["rows"]))
    counts = sorted({r["hosts"] for r in result["rows"]})
    ratio = {(r["mode"], r["hosts"]): r["ratio_to_one"] for r in result["rows"]}
    lines = ["", "Fleet time ÷ one host's time:", "", "| hosts | " + " | ".join(modes) + " |",
             "|---:|" + "---:|" * len(modes)]  # fmt: skip
    for count in counts:
        lines.append(f"| {count} | " + " | ".join(f"{ratio.get((m, count), float('nan')):.2f}" for m in modes) + " |")
    spans = [(r["hosts"], r["swarm_seconds"]) for r in result["rows"] if r.get("swarm_seconds")]
    if spans:
        lines += ["", "p2p, first peer started to last host complete (s): "
                  + ", ".join(f"{n} hosts {s:.1f}" for n, s in spans)]  # fmt: skip
    return table + "\n".join(lines) + "\n"


def warm_torrent(inventory: Path, vars_file: Path, members: list[Host], modes: list[str]) -> None:
    """The depot makes and caches its torrent once per bundle, outside the measured runs."""
    if "p2p" in modes:
        playbook(inventory, vars_file, "playbooks/bundle.yml", members[:1], bundle_transport="p2p")
        wipe(members[:1])


def main(argv: list[str] | None = None) -> int:
    return run(
        "swarm",
        __doc__ or "",
        argv,
        default_modes="push,depot,p2p",
        build_bundle=build,
        render=swarm_markdown,
        extra_vars={"bundle_p2p_stall_timeout": 120},
        prepare=warm_torrent,
    )


if __name__ == "__main__":
    raise SystemExit(main())
