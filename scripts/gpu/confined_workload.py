#!/usr/bin/env python3
"""Run workload.py's GPU checks under the parts of ollama.service's sandbox that need no systemd (for GPU machines
where systemd is not PID 1, so sandbox-check.sh cannot use systemd-run).

Applied with the kernel's own interfaces, in this order: every capability dropped from the bounding set, the user
switched (setgroups/setgid/setuid), PR_SET_NO_NEW_PRIVS, and with --mdwe PR_SET_MDWE(REFUSE_EXEC_GAIN) — the
kernel's form of MemoryDenyWriteExecute (the `strict` profile): no mapping may become writable and executable.
Then each workload runs in this process, and the device nodes it holds open are mapped through /proc/devices to the
`char-<group>` names DeviceAllow uses, so the unit's ollama_device_allow list can be checked against what the driver
really opens. Prints one JSON document. Exit 0 when every workload computed the right result.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import pwd
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workload  # beside this file

PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 24, 38, 65, 1


def prctl(option: int, arg: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}, {arg}): {os.strerror(ctypes.get_errno())}")


def confine(user: str, mdwe: bool) -> list[str]:
    applied = []
    for cap in range(64):
        try:
            prctl(PR_CAPBSET_DROP, cap)
        except OSError:
            break  # past the last capability this kernel knows
    applied.append("bounding set emptied")
    entry = pwd.getpwnam(user)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    applied.append(f"user {user} ({entry.pw_uid})")
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    applied.append("no_new_privs")
    if mdwe:
        prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN)
        applied.append("MDWE refuse-exec-gain")
    return applied


def char_groups() -> dict[int, list[str]]:
    """Major number -> every name registered for it (the NVIDIA driver registers 195 as both nvidia and nvidiactl)."""
    groups: dict[int, list[str]] = {}
    section = ""
    for line in Path("/proc/devices").read_text().splitlines():
        if line.endswith(":"):
            section = line
        elif section.startswith("Character") and line.strip():
            major, name = line.split(None, 1)
            groups.setdefault(int(major), []).append(name)
    return groups


def open_devices() -> list[dict[str, object]]:
    groups, seen = char_groups(), {}
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("/dev/") and target not in seen:
            rdev = os.stat(target).st_rdev
            major = os.major(rdev)
            seen[target] = {"node": target, "major": major, "minor": os.minor(rdev), "groups": groups.get(major, [])}
    return sorted(seen.values(), key=lambda d: str(d["node"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--user", default="nobody")
    parser.add_argument("--mdwe", action="store_true")
    args = parser.parse_args()
    report: dict[str, object] = {"confinement": confine(args.user, args.mdwe), "workloads": []}
    ok = True
    for attempt in (workload.with_torch, workload.with_driver_api):
        try:
            result = attempt()
        except Exception as exc:  # every way the GPU was not usable is part of the report
            result = {"via": attempt.__name__, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        ok = ok and bool(result["ok"])
        report["workloads"].append(result)  # type: ignore[union-attr]
    report["open_devices"] = open_devices()
    keys = ("Uid:", "CapEff:", "CapBnd:", "NoNewPrivs:", "Seccomp:")
    report["status"] = [line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(keys)]
    print(json.dumps(report, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
