"""Names, addresses and paths shared by every part of the test bed."""

from __future__ import annotations

import os
from pathlib import Path

# Run state (per-host root file systems, logs, pid files, the written inventory, mirror data).
STATE_DIR = Path(os.environ.get("TESTBED_STATE_DIR", "/var/tmp/ollama-airgap-testbed"))
# Kept between runs so a second start takes seconds: the debootstrapped root file system tarball.
CACHE_DIR = Path(os.environ.get("TESTBED_CACHE_DIR", "/var/cache/ollama-airgap-testbed"))

# Network: one bridge on the machine, one namespace + veth per host, a private /24 that exists only here.
BRIDGE = "oatb0"
SUBNET_PREFIX = "10.213.0"
GATEWAY = f"{SUBNET_PREFIX}.1"
NETMASK_BITS = 24


def host_name(index: int) -> str:
    """node1, node2, ... (index starts at 1)."""
    return f"node{index}"


def host_address(index: int) -> str:
    return f"{SUBNET_PREFIX}.{10 + index}"


def netns_name(index: int) -> str:
    return f"oatb-{host_name(index)}"


def veth_name(index: int) -> str:
    # IFNAMSIZ is 16 including the NUL.
    return f"oatb-v{index}"


# Debian suite of the target hosts.
SUITE = "bookworm"

# Ollama versions the release mirror serves: one of each archive style.
OLLAMA_VERSION_TGZ = "0.13.5"  # ollama-linux-<arch>.tgz (<= 0.13)
OLLAMA_VERSION_ZST = "0.14.1"  # ollama-linux-<arch>.tar.zst (>= 0.14)
# Shaped like today's releases: llama-server, cuda_v12/cuda_v13/vulkan with versioned symlinked libraries, and the
# -rocm and -mlx overlays (amd64) and -jetpack5/-jetpack6 variants (arm64) as separate archives.
OLLAMA_VERSION_CURRENT = "0.35.1"
OLLAMA_VERSIONS = (OLLAMA_VERSION_TGZ, OLLAMA_VERSION_ZST, OLLAMA_VERSION_CURRENT)
