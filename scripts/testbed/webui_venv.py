"""The real Open WebUI for the test bed: `open-webui` from PyPI, pinned, in a venv built once and cached.

Why a venv and not an image built from the package (issue 12): the package pulls 261 wheels (3.4 GB downloaded,
7.4 GB installed with torch's CUDA wheels); an image of it would be about as big, and would have to be saved to an
archive, carried in a bundle, and loaded by podman inside the nspawn hosts (vfs storage: a full copy per layer) on
a 2-core CI machine with a 45-minute suite budget. The venv is built once under CACHE_DIR and shared by every test;
torch is installed first from its CPU build (what the machine's pip offers for `torch==2.13.0`), so open-webui's
dependencies (sentence-transformers, accelerate) take it instead of the CUDA wheels. The build's figures are kept in
`build.json` beside the venv.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from testbed import config

WEBUI_VERSION = "0.12.4"
# open-webui 0.12.4 has no direct torch requirement; sentence-transformers/accelerate need torch >= 1.11/2.0.
TORCH_REQUIREMENT = "torch==2.13.0"
# Debian 12's python3 (3.11) is what a Debian host would run; open-webui needs >=3.11,<3.13.
PYTHON = os.environ.get("TESTBED_WEBUI_PYTHON", "/usr/bin/python3")
VENV_DIR = config.CACHE_DIR / f"open-webui-{WEBUI_VERSION}-venv"
DONE_MARK = VENV_DIR / "build.json"


def _du_bytes(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


@contextmanager
def _build_lock() -> Iterator[None]:
    config.CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with (config.CACHE_DIR / f"open-webui-{WEBUI_VERSION}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def venv_info() -> dict[str, Any] | None:
    """build.json of a complete cached venv, or None."""
    if not DONE_MARK.is_file():
        return None
    info: dict[str, Any] = json.loads(DONE_MARK.read_text())
    return info


def open_webui_bin() -> Path:
    return VENV_DIR / "bin" / "open-webui"


def ensure_venv(log: Path | None = None) -> dict[str, Any]:
    """Build the venv unless a complete one is cached; returns its build figures (and `cached`)."""
    with _build_lock():
        info = venv_info()
        if info is not None and open_webui_bin().exists():
            return {**info, "cached": True}
        if VENV_DIR.exists():
            shutil.rmtree(VENV_DIR)  # an interrupted build
        free = shutil.disk_usage(config.CACHE_DIR.parent if not config.CACHE_DIR.exists() else config.CACHE_DIR)
        if free.free < 12 * 2**30:
            raise RuntimeError(f"Open WebUI venv needs about 8 GB, {free.free / 2**30:.1f} GiB free under {VENV_DIR}")
        out = log.open("ab") if log else subprocess.DEVNULL
        pip = [str(VENV_DIR / "bin" / "python"), "-m", "pip", "install", "--progress-bar", "off"]
        steps: dict[str, float] = {}
        try:
            started = time.monotonic()
            subprocess.run([PYTHON, "-m", "venv", str(VENV_DIR)], check=True, stdout=out, stderr=out)
            steps["venv_s"] = round(time.monotonic() - started, 1)
            started = time.monotonic()
            subprocess.run([*pip, TORCH_REQUIREMENT], check=True, stdout=out, stderr=out)
            steps["torch_s"] = round(time.monotonic() - started, 1)
            started = time.monotonic()
            subprocess.run([*pip, f"open-webui=={WEBUI_VERSION}"], check=True, stdout=out, stderr=out)
            steps["open_webui_s"] = round(time.monotonic() - started, 1)
        finally:
            if log and not isinstance(out, int):
                out.close()
        freeze = subprocess.run(
            [str(VENV_DIR / "bin" / "python"), "-m", "pip", "freeze"], capture_output=True, text=True, check=True
        ).stdout
        torch = next((line for line in freeze.splitlines() if line.lower().startswith("torch==")), "")
        nvidia = sorted(line for line in freeze.splitlines() if line.lower().startswith("nvidia-"))
        info = {
            "open_webui": WEBUI_VERSION,
            "python": subprocess.run([PYTHON, "--version"], capture_output=True, text=True).stdout.strip(),
            "torch": torch,
            "nvidia_packages": nvidia,
            "packages": len(freeze.splitlines()),
            "installed_bytes": _du_bytes(VENV_DIR),
            **steps,
            "total_s": round(sum(steps.values()), 1),
        }
        DONE_MARK.write_text(json.dumps(info, indent=2) + "\n")
        return {**info, "cached": False}


if __name__ == "__main__":
    import sys

    print(json.dumps(ensure_venv(Path(sys.argv[1]) if len(sys.argv) > 1 else None), indent=2))
