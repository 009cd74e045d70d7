#!/usr/bin/python
"""Ansible module: GPU pre-flight for ollama (driver version, device nodes, groups); reads, never installs."""

# Ansible modules keep DOCUMENTATION/EXAMPLES/RETURN ahead of the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
---
module: airgap_gpu_facts
short_description: Check that ollama can use the host's GPUs, without installing anything
description:
  - NVIDIA. Finds NVIDIA display controllers on the PCI bus (vendor 0x10de in sysfs), runs C(nvidia-smi -q -x)
    (XML, nvsmi_device_v12.dtd) and C(nvidia-smi -L), and C(nvidia-smi --query-gpu=index,uuid,compute_cap
    --format=csv,noheader) for the compute capability. The driver must be at least I(nvidia_min_driver) (550), or
    I(nvidia_min_driver_legacy) (570) when a GPU has compute capability 5.0 to 6.2 (ollama's docs/gpu.md; where
    the capability is not reported, the product architecture Maxwell or Pascal counts as such). Below 5.0 a GPU is
    unusable. C(/dev/nvidiactl), C(/dev/nvidia-uvm) and C(/dev/nvidiaN) for each GPU's minor number must exist.
  - AMD, when I(rocm) is true (the ROCm overlay is bundled and wanted). C(/dev/kfd) and a C(/dev/dri/renderD*)
    node must exist (ollama's discover/amd_linux.go reads both).
  - The C(render) and C(video) groups must exist (the service user joins them for device access).
  - Problems are returned, never raised; the caller decides whether a host without a usable GPU stops.
    C(problems) are one-line sentences; C(report) is one line for the host.
options:
  nvidia_smi: {description: nvidia-smi to run (a name on PATH or a path)., type: str, default: nvidia-smi}
  nvidia_min_driver: {description: Lowest driver major version., type: int, default: 550}
  nvidia_min_driver_legacy: {description: Lowest driver major version for compute capability 5.0-6.2., type: int,
    default: 570}
  rocm: {description: The ROCm overlay is bundled and may be used; the AMD side is checked when the host has an AMD
    GPU (/dev/kfd or a PCI display controller of vendor 0x1002) or I(rocm_required)., type: bool, default: false}
  rocm_required: {description: The host asks for ROCm explicitly (ollama_rocm true)., type: bool, default: false}
  groups: {description: Groups that must exist., type: list, elements: str, default: [render, video]}
  dev_root: {description: Where device nodes are (tests point it elsewhere)., type: path, default: /dev}
  sysfs_root: {description: Where sysfs is (tests point it elsewhere)., type: path, default: /sys}
author: ollama-airgap
"""

EXAMPLES = r"""
- name: Check the GPUs
  ollama_airgap.deploy.airgap_gpu_facts:
    rocm: true
  register: gpu
"""

RETURN = r"""
nvidia: {description: "present, driver_version, driver_major, cuda_version, gpus (index, name, uuid, architecture,
  compute_capability, memory_mib, minor_number), pci_devices, smi_error.", returned: always, type: dict}
amd: {description: "checked, pci_devices, kfd, render_nodes.", returned: always, type: dict}
groups: {description: Each wanted group and whether it exists., returned: always, type: dict}
gpu_found: {description: Whether any GPU (NVIDIA or AMD) was seen on the host., returned: always, type: bool}
usable: {description: A GPU was found and no problem stands in the way of using it., returned: always, type: bool}
problems: {description: One-line sentences, one per problem., returned: always, type: list}
report: {description: One line describing the host's GPUs and the outcome., returned: always, type: str}
"""

import glob
import grp
import os
import re
import shutil
import xml.etree.ElementTree as ET

from ansible.module_utils.basic import AnsibleModule

# nvidia-smi's own words when the kernel module is not loaded (exit status 9).
NO_DRIVER = "couldn't communicate with the NVIDIA driver"
LEGACY_ARCHITECTURES = ("maxwell", "pascal")  # compute capability 5.x and 6.x
UNSUPPORTED_ARCHITECTURES = ("kepler", "fermi", "tesla")  # below 5.0


def _text(element: ET.Element | None, tag: str) -> str:
    found = element.find(tag) if element is not None else None
    return (found.text or "").strip() if found is not None and found.text else ""


def parse_smi_xml(xml_text: str) -> dict:
    """`nvidia-smi -q -x` → driver/CUDA versions and the GPUs (nvsmi_device_v12.dtd element names)."""
    start = xml_text.find("<?xml")  # some drivers print warnings before the document
    root = ET.fromstring(xml_text[start if start >= 0 else 0 :].encode())
    gpus = []
    for index, gpu in enumerate(root.findall("gpu")):
        memory = re.match(r"(\d+)", _text(gpu.find("fb_memory_usage"), "total"))
        minor = _text(gpu, "minor_number")
        gpus.append(
            {
                "index": index,
                "pci_bus_id": gpu.get("id", ""),
                "name": _text(gpu, "product_name"),
                "architecture": _text(gpu, "product_architecture"),
                "uuid": _text(gpu, "uuid"),
                "minor_number": int(minor) if minor.isdigit() else None,
                "memory_mib": int(memory.group(1)) if memory else 0,
                "compute_capability": "",
            }
        )
    return {
        "driver_version": _text(root, "driver_version"),
        "cuda_version": _text(root, "cuda_version"),
        "gpus": gpus,
    }


def parse_smi_list(text: str) -> list[dict]:
    """`nvidia-smi -L`: "GPU 0: NAME (UUID: GPU-...)" lines, with their MIG devices below them."""
    gpus: list[dict] = []
    for line in text.splitlines():
        gpu = re.match(r"^GPU (\d+): (.*?) \(UUID: ([^)]+)\)\s*$", line)
        mig = re.match(r"^\s+MIG (\S+)\s+Device\s+(\d+): \(UUID: ([^)]+)\)", line)
        if gpu:
            gpus.append({"index": int(gpu.group(1)), "name": gpu.group(2), "uuid": gpu.group(3), "mig": []})
        elif mig and gpus:
            gpus[-1]["mig"].append({"profile": mig.group(1), "index": int(mig.group(2)), "uuid": mig.group(3)})
    return gpus


def parse_compute_caps(text: str) -> dict[str, str]:
    """`--query-gpu=index,uuid,compute_cap --format=csv,noheader` → {uuid: "8.9"}."""
    caps = {}
    for line in text.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) == 3 and re.match(r"^\d+\.\d+$", fields[2]):
            caps[fields[1]] = fields[2]
    return caps


def _cc_tuple(cc: str) -> tuple[int, int] | None:
    match = re.match(r"^(\d+)\.(\d+)$", cc)
    return (int(match.group(1)), int(match.group(2))) if match else None


def driver_problems(nvidia: dict, min_driver: int, min_legacy: int) -> list[str]:
    """The version rule of ollama's docs/gpu.md: driver >= 550, >= 570 for compute capability 5.0-6.2."""
    problems = []
    version = nvidia["driver_version"]
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    nvidia["driver_major"] = major
    for gpu in nvidia["gpus"]:
        cc = _cc_tuple(gpu["compute_capability"])
        arch = gpu["architecture"].lower()
        label = f"GPU {gpu['index']} {gpu['name']}" + (
            f" (compute capability {gpu['compute_capability']})"
            if cc
            else (f" ({gpu['architecture']})" if arch else "")
        )
        if (cc and cc < (5, 0)) or (not cc and arch in UNSUPPORTED_ARCHITECTURES):
            problems.append(f"{label} is below compute capability 5.0, which ollama cannot use")
            continue
        legacy = (cc is not None and (5, 0) <= cc <= (6, 2)) or (not cc and arch in LEGACY_ARCHITECTURES)
        needed = min_legacy if legacy else min_driver
        if major < needed:
            problems.append(
                f"NVIDIA driver {version or 'unknown'} is too old for {label}: ollama needs {needed} or newer"
                + (" for compute capability 5.0-6.2" if legacy else "")
                + " (install it from your offline driver repository; this role never installs drivers)"
            )
    return problems


def pci_devices(sysfs_root: str, vendor: str) -> list[str]:
    """PCI display controllers (class 0x03xxxx) of one vendor."""
    found = []
    for device in sorted(glob.glob(os.path.join(sysfs_root, "bus", "pci", "devices", "*"))):
        try:
            with open(os.path.join(device, "vendor")) as v, open(os.path.join(device, "class")) as c:
                if v.read().strip().lower() == vendor and c.read().strip().lower().startswith("0x03"):
                    found.append(os.path.basename(device))
        except OSError:
            continue
    return found


def check_nvidia(module: AnsibleModule, p: dict) -> tuple[dict, list[str]]:
    dev = p["dev_root"]
    nvidia: dict = {
        "present": False, "driver_version": "", "driver_major": 0, "cuda_version": "", "gpus": [], "smi_error": "",
        "pci_devices": pci_devices(p["sysfs_root"], "0x10de"), "smi": "",
    }  # fmt: skip
    problems: list[str] = []
    smi = p["nvidia_smi"] if os.sep in p["nvidia_smi"] else (shutil.which(p["nvidia_smi"]) or "")
    if not smi or not os.access(smi, os.X_OK):
        nvidia["smi_error"] = f"{p['nvidia_smi']} not found"
        if nvidia["pci_devices"]:
            problems.append(
                f"NVIDIA GPU at PCI {', '.join(nvidia['pci_devices'])} but no NVIDIA driver ({p['nvidia_smi']} not "
                "found): install driver 550 or newer offline; this role never installs drivers"
            )
        return nvidia, problems
    nvidia["smi"] = smi
    rc, out, err = module.run_command([smi, "-q", "-x"])
    if rc != 0 or "<nvidia_smi_log" not in out:
        message = " ".join((out + " " + err).split())[:200] or f"exit status {rc}"
        nvidia["smi_error"] = message
        if NO_DRIVER in message or nvidia["pci_devices"]:
            problems.append(
                f"NVIDIA driver not loaded: {smi} -q -x failed ({message}); install or load driver 550 or newer "
                "offline; this role never installs drivers"
            )
        return nvidia, problems
    try:
        nvidia.update(parse_smi_xml(out))
    except ET.ParseError as exc:
        nvidia["smi_error"] = f"unreadable XML: {exc}"
        return nvidia, [f"{smi} -q -x printed unreadable XML ({exc})"]
    nvidia["present"] = bool(nvidia["gpus"])
    rc, out, _ = module.run_command([smi, "-L"])
    listed = parse_smi_list(out) if rc == 0 else []
    nvidia["mig_devices"] = sum(len(g["mig"]) for g in listed)
    rc, out, _ = module.run_command([smi, "--query-gpu=index,uuid,compute_cap", "--format=csv,noheader"])
    caps = parse_compute_caps(out) if rc == 0 else {}
    for gpu in nvidia["gpus"]:
        gpu["compute_capability"] = caps.get(gpu["uuid"], "")
    problems += driver_problems(nvidia, p["nvidia_min_driver"], p["nvidia_min_driver_legacy"])
    if nvidia["present"]:
        nodes = ["nvidiactl", "nvidia-uvm"] + [
            f"nvidia{g['minor_number']}" for g in nvidia["gpus"] if g["minor_number"] is not None
        ]
        missing = [f"{dev}/{node}" for node in nodes if not os.path.exists(os.path.join(dev, node))]
        if missing:
            problems.append(
                f"NVIDIA device nodes missing: {', '.join(missing)} "
                "(load nvidia and nvidia-uvm, e.g. nvidia-modprobe -u -c=0)"
            )
    return nvidia, problems


def check_amd(p: dict) -> tuple[dict, list[str]]:
    dev = p["dev_root"]
    renders = sorted(os.path.basename(n) for n in glob.glob(os.path.join(dev, "dri", "renderD*")))
    amd = {
        "checked": False,
        "pci_devices": pci_devices(p["sysfs_root"], "0x1002"),
        "kfd": os.path.exists(os.path.join(dev, "kfd")),
        "render_nodes": renders,
    }
    problems = []
    amd["checked"] = p["rocm"] and (p["rocm_required"] or amd["kfd"] or bool(amd["pci_devices"]))
    if amd["checked"]:
        missing = ([f"{dev}/kfd"] if not amd["kfd"] else []) + ([f"{dev}/dri/renderD*"] if not renders else [])
        if missing:
            problems.append(
                f"AMD GPU device nodes missing: {', '.join(missing)} (the amdgpu driver is not loaded; install it "
                "offline; this role never installs drivers)"
            )
    return amd, problems


def run(module: AnsibleModule) -> dict:
    p = module.params
    nvidia, problems = check_nvidia(module, p)
    amd, amd_problems = check_amd(p)
    problems += amd_problems
    groups = {}
    for name in p["groups"]:
        try:
            grp.getgrnam(name)
            groups[name] = True
        except KeyError:
            groups[name] = False
    gpu_found = bool(nvidia["present"] or nvidia["pci_devices"] or amd["checked"])
    if gpu_found and not all(groups.values()):
        missing = ", ".join(name for name, ok in groups.items() if not ok)
        problems.append(f"group(s) {missing} missing: the service user cannot open the GPU devices")
    if not gpu_found and not problems:
        problems.append(
            "no GPU found (no NVIDIA driver or GPU" + (", no AMD GPU" if p["rocm"] else "") + "): models run on the CPU"
        )
    parts = []
    if nvidia["present"]:
        names = "; ".join(
            f"{g['name']}" + (f" cc {g['compute_capability']}" if g["compute_capability"] else "")
            for g in nvidia["gpus"]
        )
        parts.append(f"NVIDIA driver {nvidia['driver_version']} (CUDA {nvidia['cuda_version']}): {names}")
    if amd["checked"]:
        parts.append(
            f"AMD: /dev/kfd {'present' if amd['kfd'] else 'missing'}, {len(amd['render_nodes'])} render node(s)"
        )
    usable = gpu_found and not problems
    report = ("; ".join(parts) or "no GPU") + (": ready" if usable else ": " + "; ".join(problems))
    return {
        "changed": False,
        "nvidia": nvidia,
        "amd": amd,
        "groups": groups,
        "gpu_found": gpu_found,
        "usable": usable,
        "problems": problems,
        "report": report,
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "nvidia_smi": {"type": "str", "default": "nvidia-smi"},
            "nvidia_min_driver": {"type": "int", "default": 550},
            "nvidia_min_driver_legacy": {"type": "int", "default": 570},
            "rocm": {"type": "bool", "default": False},
            "rocm_required": {"type": "bool", "default": False},
            "groups": {"type": "list", "elements": "str", "default": ["render", "video"]},
            "dev_root": {"type": "path", "default": "/dev"},
            "sysfs_root": {"type": "path", "default": "/sys"},
        },
        supports_check_mode=True,
    )
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
