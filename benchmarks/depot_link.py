"""The depot's link bound, measured alone: N hosts' fetches against one depot whose link is limited with tc.

    PYTHONPATH=.:scripts:src .venv/bin/python -m benchmarks.depot_link --hosts 1,4,8,16 --size 64M --mbit 200

The real registry (Debian's docker-registry) runs in a network namespace of its own, joined to this machine by a
veth whose depot end carries a tbf of --mbit (what the depot sends). A bundle-shaped tree (one big blob of --size
plus bundle.yaml and SHA256SUMS) is loaded with plugins/modules/airgap_depot_load.py; then N copies of
plugins/modules/airgap_depot_fetch.py (the host side of ``bundle_transport: depot``, 8 connections each) fetch it at
once, each into its own directory, and the time until the last one has verified every file is compared with the
bound N·B/L. No test bed hosts are used (own namespace ``oafb-depot``, own subnet 10.214.9.0/30), so it does not
need the test bed; the full-fleet figures with ansible and tc on every host are benchmarks/fleet.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from benchmarks.bed import parse_size
from testbed.registry import REGISTRY_BINARY, registry_config

REPO = Path(__file__).resolve().parents[1]
MODULES = REPO / "plugins" / "modules"
RESULTS = REPO / "benchmarks" / "results"
NAMESPACE, HOST_END, DEPOT_END = "oafb-depot", "oafb-h", "oafb-d"
HOST_IP, DEPOT_IP = "10.214.9.1", "10.214.9.2"
URL = f"http://{DEPOT_IP}:5000"


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def network_up(mbit: float) -> None:
    sh("ip", "netns", "add", NAMESPACE)
    sh("ip", "link", "add", HOST_END, "type", "veth", "peer", "name", DEPOT_END, "netns", NAMESPACE)
    sh("ip", "addr", "add", f"{HOST_IP}/30", "dev", HOST_END)
    sh("ip", "link", "set", HOST_END, "up")
    sh("ip", "-n", NAMESPACE, "addr", "add", f"{DEPOT_IP}/30", "dev", DEPOT_END)
    sh("ip", "-n", NAMESPACE, "link", "set", DEPOT_END, "up")
    sh("ip", "-n", NAMESPACE, "link", "set", "lo", "up")
    sh("ip", "netns", "exec", NAMESPACE, "tc", "qdisc", "replace", "dev", DEPOT_END, "root", "tbf",
       "rate", f"{int(mbit * 1000)}kbit", "burst", "512kb", "latency", "100ms")  # fmt: skip


def network_down() -> None:
    subprocess.run(["ip", "netns", "del", NAMESPACE], capture_output=True, check=False)
    subprocess.run(["ip", "link", "del", HOST_END], capture_output=True, check=False)


def module(name: str, args: dict, work: Path) -> subprocess.Popen[str]:
    args_file = work / f"{name}-{time.monotonic_ns()}.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / ".ansible" / "collections"), *sys.path])}
    return subprocess.Popen([sys.executable, str(MODULES / f"{name}.py"), str(args_file)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def finish(process: subprocess.Popen[str]) -> dict:
    out, err = process.communicate(timeout=3600)
    result = json.loads(out or "{}")
    if not out or result.get("failed"):
        raise RuntimeError(f"module failed: {result.get('msg') or err[-2000:]}")
    return dict(result)


def make_tree(root: Path, size: int) -> dict:
    blob = root / "models" / "blobs" / "big"
    blob.parent.mkdir(parents=True)
    hasher = hashlib.sha256()
    with blob.open("wb") as out:
        for _ in range(size >> 20):
            chunk = os.urandom(1 << 20)
            hasher.update(chunk)
            out.write(chunk)
    files = [{"path": "models/blobs/big", "size": size, "sha256": hasher.hexdigest()}]
    sums = "".join(f"{f['sha256']}  {f['path']}\n" for f in files).encode()
    (root / "SHA256SUMS").write_bytes(sums)
    manifest = yaml.safe_dump({"format": "bench", "files": files}).encode()
    (root / "bundle.yaml").write_bytes(manifest)
    return {"files": files, "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
            "sums_sha256": hashlib.sha256(sums).hexdigest()}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.depot_link", description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", default="1,4,8,16")
    parser.add_argument("--size", default="64M")
    parser.add_argument("--mbit", type=float, default=200.0)
    parser.add_argument("--part-size", default="256M", help="the fetch module part_size")
    parser.add_argument("--work", type=Path, default=Path("/var/tmp/ollama-airgap-depot-link"))
    args = parser.parse_args(argv)
    command = "PYTHONPATH=.:scripts:src .venv/bin/python -m benchmarks.depot_link " + " ".join(argv or sys.argv[1:])
    size, counts, part_size = parse_size(args.size), [int(n) for n in args.hosts.split(",")], parse_size(args.part_size)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    network_down()
    network_up(args.mbit)
    config = args.work / "registry.yml"
    config.write_text(yaml.safe_dump(registry_config(args.work / "data", DEPOT_IP, 5000)))
    registry = subprocess.Popen(["ip", "netns", "exec", NAMESPACE, REGISTRY_BINARY, "serve", str(config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    rows = []
    try:
        time.sleep(1.5)
        tree = make_tree(args.work / "bundle", size)
        finish(module("airgap_depot_load", {"url": URL, "root": str(args.work / "bundle"), **tree}, args.work))
        bundle_bytes = size + (args.work / "bundle" / "bundle.yaml").stat().st_size + 100
        for count in counts:
            dests = [args.work / f"host{count}-{i}" for i in range(count)]
            started = time.monotonic()
            fetch = {"url": URL, "part_size": part_size, **tree}
            procs = [module("airgap_depot_fetch", {**fetch, "dest": str(d)}, args.work) for d in dests]
            results = [finish(p) for p in procs]
            seconds = time.monotonic() - started
            assert all(r["fetched_bytes"] >= size for r in results)
            for dest in dests:
                shutil.rmtree(dest)
            bound = count * bundle_bytes / (args.mbit * 1e6 / 8)
            # The floor of this link: N plain curl downloads of the big blob at once (no hashing, no writes).
            blob = f"{URL}/v2/ollama-airgap/bundle/blobs/sha256:{tree['files'][0]['sha256']}"
            started = time.monotonic()
            curls = [subprocess.Popen(["curl", "-sf", "-o", "/dev/null", blob]) for _ in range(count)]
            assert all(c.wait() == 0 for c in curls)
            raw = time.monotonic() - started
            rows.append({"hosts": count, "seconds": round(seconds, 2), "bound_seconds": round(bound, 2),
                         "vs_bound": round(seconds / bound, 3), "curl_seconds": round(raw, 2),
                         "vs_curl": round(seconds / raw, 3)})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    finally:
        registry.terminate()
        registry.wait(timeout=10)
        network_down()
        shutil.rmtree(args.work, ignore_errors=True)
    for row in rows:
        row["ratio_to_one"] = round(row["seconds"] / rows[0]["seconds"], 2)
    result = {"command": command, "bundle_bytes": bundle_bytes, "mbit": args.mbit, "rows": rows}
    lines = [f"Depot link {args.mbit:g} Mbit/s (tbf on its veth), bundle {bundle_bytes / 2**20:.0f} MiB. `{command}`",
             "", "| hosts | fleet (s) | ÷ one host | N·B/L (s) | fleet ÷ N·B/L | N curls (s) | fleet ÷ curls |",
             "|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for row in rows:
        lines.append(f"| {row['hosts']} | {row['seconds']:.1f} | {row['ratio_to_one']:.2f} | "
                     f"{row['bound_seconds']:.1f} | {row['vs_bound']:.3f} | {row['curl_seconds']:.1f} | "
                     f"{row['vs_curl']:.3f} |")  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    (RESULTS / f"depot-link-{stamp}.json").write_text(json.dumps(result, indent=1))
    (RESULTS / f"depot-link-{stamp}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
