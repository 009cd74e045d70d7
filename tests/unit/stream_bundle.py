"""A small bundle as `bundle build` writes it, shaped for subset delivery: two architectures' releases with a ROCm
overlay, three models (two sharing a blob), an image archive. Used by tests/unit/test_bundle_stream.py."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ollama_airgap.bundle import Entry, manifest_bytes, pack, sums_text
from ollama_airgap.progress import Reporter

QUIET = Reporter(enabled=False)
SHARED = b"shared license text\n" * 64


def blob(data: bytes) -> tuple[str, Entry]:
    hexdigest = hashlib.sha256(data).hexdigest()
    return f"sha256:{hexdigest}", Entry.from_bytes(f"models/blobs/sha256-{hexdigest}", data)


def write_bundle(out: Path, big: int = 3 << 20) -> tuple[Path, dict[str, Any], bytes]:
    """(archive, parsed bundle.yaml, bundle.yaml bytes)."""
    entries: dict[str, Entry] = {}
    releases = []
    for name in ("ollama-linux-amd64.tar", "ollama-linux-amd64-rocm.tar", "ollama-linux-arm64.tgz"):
        entry = Entry.from_bytes(f"ollama/0.35.1/{name}", name.encode() * 300)
        entries[entry.path] = entry
        releases.append({"name": name, "path": entry.path, "sha256": entry.sha256, "size": entry.size, "url": ""})
    models = []
    for index, short in enumerate(("alpha:latest", "beta:latest", "gamma:latest")):
        digests = []
        for data in (bytes([65 + index]) * (big if index == 0 else 4096), SHARED):
            digest, entry = blob(data)
            entries[entry.path] = entry
            digests.append(digest)
        manifest = Entry.from_bytes(f"models/manifests/registry.ollama.ai/library/{short.split(':')[0]}/latest",
                                    short.encode())  # fmt: skip
        entries[manifest.path] = manifest
        models.append({"name": f"registry.ollama.ai/library/{short}", "short": short, "manifest": manifest.path,
                       "modelfile": None, "blobs": digests, "size": 1})  # fmt: skip
    image = Entry.from_bytes("images/open-webui_v1.docker.tar", b"image layer" * 999)
    entries[image.path] = image
    ordered = sorted(entries.values(), key=lambda e: e.path)
    meta = {"name": "streamed", "ollama": {"version": "0.35.1", "files": releases}, "models": models,
            "images": [{"name": "ghcr.io/open-webui/open-webui", "path": image.path}]}  # fmt: skip
    sums = sums_text(ordered)
    manifest = manifest_bytes(meta, ordered, sums, None)
    pack(out, manifest, sums, ordered, 1, QUIET)
    import yaml

    return out, yaml.safe_load(manifest), manifest
