"""Which files of a bundle one host needs (run on the control node by plugins/action/airgap_bundle_stream.py).

- ollama: the base release archive of the host's architecture and the overlays the ollama role will unpack on that
  host, decided from the same settings (roles/ollama/tasks/install.yml: ollama_rocm auto = /dev/kfd exists,
  ollama_mlx, ollama_jetpack auto = R35/R36 in /etc/nv_tegra_release); other architectures' archives stay behind.
- models: the manifests, Modelfiles and blobs of the included models (ollama_models_include; empty = all). A blob
  shared with an excluded model is sent.
- images: the container image archives (Open WebUI) only when the host runs it.
- the deploy kit (``deploy``, ``kit/``): never, it runs on the control node.
Every other file (bundle.lock.yaml, sha256sum.txt, kits, ...) is always sent: only files known to be unneeded are
left out."""

from __future__ import annotations

import re
from typing import Any

ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
RELEASE = re.compile(r"^ollama-linux-([a-z0-9]+)(?:-([a-z0-9]+))?\.(?:tar|tgz|tar\.zst)$")


def _truthy(value: object) -> bool:
    return str(value).strip().lower() in ("true", "yes", "1", "on")


def wanted_overlays(arch: str, options: dict[str, Any], host: dict[str, Any]) -> set[str]:
    """Overlay suffixes (rocm, mlx, jetpack5, jetpack6) the ollama role unpacks on this host."""
    wanted: set[str] = set()
    rocm = str(options.get("rocm", "auto")).lower()
    if (rocm != "auto" and _truthy(rocm)) or (rocm == "auto" and host.get("kfd")):
        wanted.add("rocm")
    if _truthy(options.get("mlx", True)):
        wanted.add("mlx")
    jetpack = str(options.get("jetpack", "auto")).lower()
    if jetpack == "auto" and arch == "arm64":
        tegra = str(host.get("tegra", ""))
        jetpack = "6" if "R36" in tegra else ("5" if "R35" in tegra else "")
    if jetpack in ("5", "6"):
        wanted.add(f"jetpack{jetpack}")
    return wanted


def _blob_path(digest: str) -> str:
    return "models/blobs/" + digest.replace(":", "-", 1)


def _model_paths(model: dict[str, Any]) -> set[str]:
    paths = {_blob_path(str(digest)) for digest in model.get("blobs") or []}
    for key in ("manifest", "modelfile"):
        if model.get(key):
            paths.add(str(model[key]))
    return paths


def select(manifest: dict[str, Any], paths: list[str], host: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """{"needed": [paths in bundle order], "left_out": {path: reason}, "selection": what was decided}."""
    arch = ARCH.get(str(host.get("machine", "")), str(host.get("machine", "")))
    overlays = wanted_overlays(arch, options, host)
    left_out: dict[str, str] = {}
    releases: list[str] = []
    for item in (manifest.get("ollama") or {}).get("files") or []:
        match = RELEASE.match(str(item.get("name", "")))
        if not match or not item.get("path"):
            continue
        if match.group(1) != arch:
            left_out[str(item["path"])] = f"release for {match.group(1)} (host is {arch})"
        elif match.group(2) and match.group(2) not in overlays:
            left_out[str(item["path"])] = f"{match.group(2)} overlay not wanted on this host"
        else:
            releases.append(str(item["name"]))
    include = [str(name) for name in options.get("models_include") or []]
    models = manifest.get("models") or []
    chosen = [m for m in models if not include or m.get("short") in include or m.get("name") in include]
    keep: set[str] = set()
    for model in chosen:
        keep |= _model_paths(model)
    for model in models:
        if model not in chosen:
            for path in _model_paths(model) - keep:
                left_out[path] = f"model {model.get('short') or model.get('name')} not included"
    images = _truthy(options.get("images", True))
    if not images:
        for image in manifest.get("images") or []:
            if image.get("path"):
                left_out[str(image["path"])] = f"image {image.get('name', '')} (the host does not run it)"
    if manifest.get("deploy_kit"):  # the entry script and kit/ run on the control node, never on a host
        for path in paths:
            if path == "deploy" or path.startswith("kit/"):
                left_out[path] = "deploy kit (runs on the control node)"
    needed = [path for path in paths if path not in left_out]
    selection = {
        "architecture": arch,
        "releases": releases,
        "models": [str(m.get("short") or m.get("name")) for m in chosen],
        "images": images,
        "left_out_files": len([path for path in paths if path in left_out]),
    }
    listed = set(paths)
    return {"needed": needed, "left_out": {p: r for p, r in left_out.items() if p in listed}, "selection": selection}


def choose(
    manifest: dict[str, Any], paths: list[str], host: dict[str, Any], options: dict[str, Any], subset: bool = True
) -> tuple[list[str], dict[str, Any] | None, dict[str, str]]:
    """(paths this host gets, in bundle order; what its record notes as its subset, None when it gets them all;
    the paths left out with the reason). ``subset`` false: every path."""
    if not subset:
        return list(paths), None, {}
    chosen = select(manifest, paths, host, options)
    needed: list[str] = chosen["needed"]
    if len(needed) == len(paths):
        return needed, None, {}
    return needed, {**chosen["selection"], "files": len(needed), "of": len(paths)}, chosen["left_out"]
