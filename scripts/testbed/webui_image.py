"""The test bed's stand-in for the Open WebUI image (ghcr.io/open-webui/open-webui), built without docker.

WHAT IT STANDS IN FOR: the real Open WebUI image is ~4 GB and the test bed has no internet. This image is a small
one (~10 MB compressed): Debian's own python3.11 interpreter with a trimmed standard library, plus
``/app/webui_standin.py`` (webui_standin_app.py), an HTTP server that behaves like Open WebUI where the deploy side
can observe it: port 8080, ``GET /health`` → ``{"status": true}``, the data directory /app/backend/data, and at
start-up the ollama calls Open WebUI makes (``GET $OLLAMA_BASE_URL/api/version`` and ``/api/tags``), whose result
it logs and serves at ``GET /api/config``. It is NOT Open WebUI: no UI, no database, no auth.

The image is pushed to the test bed registry as a real multi-platform image, the way ghcr.io serves Open WebUI:
an OCI image index with a linux/amd64 and a linux/arm64 manifest (the arm64 one has its own config, so a client
that picks the wrong platform gets a different image ID), gzip layers, an OCI config. Everything is
deterministic (fixed mtimes, sorted members, gzip mtime 0), so digests repeat run to run on the same machine.

    image = push_webui_image(registry_url, work_dir)      # repository open-webui/open-webui, tag "test"
    image.index_digest, image.platforms["linux/amd64"].config_digest
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from testbed.registry import RegistryPusher

REPOSITORY = "open-webui/open-webui"
TAG = "test"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

PYTHON = Path("/usr/bin/python3.11")
STDLIB = Path("/usr/lib/python3.11")
# Parts of the standard library the stand-in never imports (keeps the layer small).
STDLIB_SKIP = {
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "pydoc_data",
    "distutils",
    "site-packages",
    "dist-packages",
    "__pycache__",
    "unittest",
    "config-3.11-x86_64-linux-gnu",
}
APP_SOURCE = Path(__file__).with_name("webui_standin_app.py")
FIXED_MTIME = 1_700_000_000


@dataclass(frozen=True)
class PushedPlatform:
    platform: str  # "linux/amd64"
    manifest: bytes
    manifest_digest: str
    config: bytes
    config_digest: str  # the image ID podman/docker report (sha256 of the config)
    layers: tuple[tuple[str, int, str], ...]  # (digest of the gzip blob, size, diff_id)


@dataclass
class PushedImage:
    repository: str
    tag: str
    index: bytes
    index_digest: str
    platforms: dict[str, PushedPlatform] = field(default_factory=dict)
    blob_paths: dict[str, Path] = field(default_factory=dict)  # digest → local file with those bytes

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _libraries(binaries: list[Path]) -> set[Path]:
    """Shared libraries the binaries load (ldd), with the paths the dynamic loader will look them up at."""
    found: set[Path] = set()
    for binary in binaries:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            parts = line.split()
            if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
                found.add(Path(parts[2]))
            elif parts and parts[0].startswith("/"):
                found.add(Path(parts[0]))
    return found


def _rootfs_files() -> list[tuple[str, Path]]:
    """(path in the image, source on this machine) for the interpreter, its libraries and the stdlib."""
    files: list[tuple[str, Path]] = [("usr/bin/python3.11", PYTHON)]
    stdlib: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(STDLIB):
        dirnames[:] = sorted(d for d in dirnames if d not in STDLIB_SKIP)
        stdlib.extend(Path(dirpath) / name for name in filenames if not name.endswith((".pyc", ".exe")))
    files.extend((str(path).lstrip("/"), path) for path in stdlib)
    dynload = [path for path in stdlib if path.suffix == ".so"]
    for library in _libraries([PYTHON, *dynload]):
        # Stored (content, links followed) where the loader looks; /lib and /lib64 are links to usr/ in the image.
        name = str(library).lstrip("/")
        if name.startswith(("lib/", "lib64/")):
            name = "usr/" + name
        files.append((name, library))
    return sorted(set(files))


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, *, mode: int = 0o644, **kind: str) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = FIXED_MTIME
    info.mode = mode
    if "link" in kind:
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, kind["link"], 0o777
    elif data is None:
        info.type = tarfile.DIRTYPE
    else:
        info.size = len(data)
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def build_layer(arch_note: str = "amd64") -> bytes:
    """The uncompressed layer tar (deterministic)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        directories: set[str] = set()

        def ensure_dirs(name: str) -> None:
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                directory = "/".join(parts[:i])
                if directory not in directories:
                    directories.add(directory)
                    _add(tar, directory, mode=0o755)

        for top in ("tmp", "app", "app/backend", "app/backend/data", "etc", "usr", "usr/bin", "usr/lib"):
            directories.add(top)
            _add(tar, top, mode=0o1777 if top == "tmp" else 0o755)
        for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
            _add(tar, link, link=target)
        for name, source in _rootfs_files():
            ensure_dirs(name)
            if name in directories:
                continue
            _add(tar, name, source.read_bytes(), mode=0o755 if os.access(source, os.X_OK) else 0o644)
        _add(tar, "usr/bin/python3", link="python3.11")
        _add(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        _add(tar, "etc/group", b"root:x:0:\nnogroup:x:65534:\n")
        _add(tar, "app/webui_standin.py", APP_SOURCE.read_bytes())
        _add(tar, "app/PLATFORM", arch_note.encode() + b"\n")
    return buffer.getvalue()


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def _config(architecture: str, diff_ids: list[str]) -> bytes:
    document = {
        "architecture": architecture,
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {
            "Env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "PYTHONDONTWRITEBYTECODE=1",
                "PORT=8080",
                "OLLAMA_BASE_URL=/ollama",
            ],
            "Cmd": ["/usr/bin/python3", "/app/webui_standin.py"],
            "WorkingDir": "/app/backend",
            "ExposedPorts": {"8080/tcp": {}},
            "Labels": {"org.opencontainers.image.title": "Open WebUI stand-in (ollama-airgap test bed)"},
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "ollama-airgap testbed webui_image.py"}],
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def push_webui_image(
    registry_url: str,
    work_dir: Path,
    *,
    repository: str = REPOSITORY,
    tag: str = TAG,
    pusher: RegistryPusher | None = None,
) -> PushedImage:
    """Build the stand-in image for linux/amd64 and linux/arm64 and push it as an OCI index."""
    pusher = pusher or RegistryPusher(registry_url)
    work_dir.mkdir(parents=True, exist_ok=True)
    shared = build_layer()
    shared_gz = _gzip(shared)
    blob_paths: dict[str, Path] = {}

    def keep(data: bytes) -> str:
        digest = _digest(data)
        path = work_dir / digest.replace(":", "-")
        if not path.exists():
            path.write_bytes(data)
        blob_paths[digest] = path
        pusher.push_blob(repository, digest, path)
        return digest

    platforms: dict[str, PushedPlatform] = {}
    descriptors = []
    for architecture in ("amd64", "arm64"):
        # A small per-platform layer marks which variant a client picked (the arm64 one never runs here).
        marker = io.BytesIO()
        with tarfile.open(fileobj=marker, mode="w", format=tarfile.PAX_FORMAT) as tar:
            _add(tar, "app", mode=0o755)
            _add(tar, "app/PLATFORM", f"linux/{architecture}\n".encode())
        marker_tar = marker.getvalue()
        layer_data = [(shared, shared_gz), (marker_tar, _gzip(marker_tar))]
        layers = tuple((keep(gz), len(gz), _digest(raw)) for raw, gz in layer_data)
        config = _config(architecture, [diff_id for _, _, diff_id in layers])
        config_digest = keep(config)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
                "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": digest, "size": size} for digest, size, _ in layers],
            },
            separators=(",", ":"),
        ).encode()
        manifest_digest = pusher.put_manifest(repository, _digest(manifest), manifest, OCI_MANIFEST)
        platform = f"linux/{architecture}"
        platforms[platform] = PushedPlatform(platform, manifest, manifest_digest, config, config_digest, layers)
        descriptors.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest),
                "platform": {"architecture": architecture, "os": "linux"},
            }
        )
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}, separators=(",", ":")
    ).encode()
    index_digest = pusher.put_manifest(repository, tag, index, OCI_INDEX)
    return PushedImage(repository, tag, index, index_digest, platforms, blob_paths)


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Push the Open WebUI stand-in image to a registry.")
    parser.add_argument("registry_url")
    parser.add_argument("--work-dir", type=Path, default=Path("/var/tmp/ollama-airgap-testbed/webui-image"))
    parser.add_argument("--tag", default=TAG)
    args = parser.parse_args()
    image = push_webui_image(args.registry_url, args.work_dir, tag=args.tag)
    print(json.dumps({"reference": image.reference, "index_digest": image.index_digest}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
