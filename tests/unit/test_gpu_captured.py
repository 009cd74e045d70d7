"""The nvidia-smi outputs and GPU sandbox results captured on a real H100 (driver 580.159.04) by
scripts/gpu/capture.sh on a lent GPU machine (tests/fixtures/nvidia-smi/h100-580-captured; README there)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from test_gpu_preflight import FIXTURES, REPO, devices, run, smi

CAPTURED = FIXTURES / "h100-580-captured"


def test_captured_h100_is_ready(tmp_path: Path) -> None:
    dev = devices(tmp_path, "nvidiactl", "nvidia-uvm", "nvidia0")
    result = run(tmp_path, nvidia_smi=str(smi(tmp_path, "h100-580-captured")), dev_root=str(dev))
    assert result["usable"] and result["problems"] == [], result
    nvidia = result["nvidia"]
    assert (nvidia["driver_version"], nvidia["driver_major"], nvidia["cuda_version"]) == ("580.159.04", 580, "13.0")
    assert [(g["name"], g["compute_capability"], g["architecture"], g["memory_mib"]) for g in nvidia["gpus"]] == [
        ("NVIDIA H100 80GB HBM3", "9.0", "Hopper", 81559)
    ]
    assert result["report"].endswith(": ready")


def char_names_by_major() -> dict[int, set[str]]:
    """/proc/devices of the captured machine: a major can carry several names (195: nvidia and nvidiactl)."""
    text = (CAPTURED / "machine.txt").read_text()
    section = text.split("Character devices:", 1)[1].split("Block devices:", 1)[0].split("# PID 1", 1)[0]
    names: dict[int, set[str]] = {}
    for line in section.splitlines():
        if line.strip():
            major, name = line.split(None, 1)
            names.setdefault(int(major), set()).add(name.strip())
    return names


def test_device_allow_covers_every_node_the_driver_opened() -> None:
    """Each device node CUDA held open in the confined workload is allowed by one of ollama_device_allow's groups."""
    allow = yaml.safe_load((REPO / "roles" / "ollama" / "defaults" / "main.yml").read_text())["ollama_device_allow"]
    allowed = {entry.split()[0].removeprefix("char-") for entry in allow if entry.startswith("char-")}
    names = char_names_by_major()
    opened = json.loads((CAPTURED / "sandbox-confined.json").read_text())["open_devices"]
    gpu_nodes = [d for d in opened if str(d["node"]).startswith("/dev/nvidia")]
    assert {d["node"] for d in gpu_nodes} >= {"/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm"}
    for device in gpu_nodes:
        assert names[int(device["major"])] & allowed, f"{device['node']} (major {device['major']}) is not allowed"


def test_gpu_worked_confined_and_under_mdwe() -> None:
    """As nobody with no capabilities and no_new_privs, and with the kernel's MemoryDenyWriteExecute (PR_SET_MDWE,
    the strict profile), torch and the driver's PTX JIT both computed the right product on the H100."""
    for name in ("sandbox-confined.json", "sandbox-confined-mdwe.json"):
        report = json.loads((CAPTURED / name).read_text())
        assert [w["via"] for w in report["workloads"] if w["ok"]] == ["torch", "cuda-driver-ptx-jit"], name
        assert "CapEff:\t0000000000000000" in report["status"] and "NoNewPrivs:\t1" in report["status"]
    assert "MDWE refuse-exec-gain" in json.loads((CAPTURED / "sandbox-confined-mdwe.json").read_text())["confinement"]
