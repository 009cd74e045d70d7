"""On-disk store: manifest/ (manifests, layers, blobs) and the prune of server/images.go."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .names import ModelName, parse_name
from .util import ApiError, go_json, log

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
MT_MODEL = "application/vnd.ollama.image.model"
MT_TEMPLATE = "application/vnd.ollama.image.template"
MT_SYSTEM = "application/vnd.ollama.image.system"
MT_PARAMS = "application/vnd.ollama.image.params"
MT_MESSAGES = "application/vnd.ollama.image.messages"
MT_LICENSE = "application/vnd.ollama.image.license"
MT_ADAPTER = "application/vnd.ollama.image.adapter"
MT_PROJECTOR = "application/vnd.ollama.image.projector"
MT_PROMPT = "application/vnd.ollama.image.prompt"  # legacy template layer
MT_DRAFT = "application/vnd.ollama.image.draft"  # v0.30: speculative-decoding draft model
MT_TENSOR = "application/vnd.ollama.image.tensor"  # v0.16: safetensors/MLX tensor layers (with "name")
MT_JSON = "application/vnd.ollama.image.json"  # v0.16: safetensors config files (with "name")
DEFAULT_TEMPLATE = "{{ .Prompt }}"
DIGEST_RE = re.compile(r"^sha256[:-][0-9a-fA-F]{64}$")


@dataclass
class Manifest:
    name: ModelName
    path: Path
    data: dict[str, Any]
    digest: str  # sha256 hex of the manifest file bytes
    mtime: float

    @property
    def layers(self) -> list[dict[str, Any]]:
        return list(self.data.get("layers") or [])

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.data.get("config") or {})

    def size(self) -> int:
        return sum(int(layer.get("size", 0)) for layer in [*self.layers, self.config])

    def digests(self) -> set[str]:
        return {layer["digest"] for layer in [*self.layers, self.config] if layer.get("digest")}


class Store:
    """$OLLAMA_MODELS with ollama's layout."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.RLock()

    @property
    def manifests_dir(self) -> Path:
        return self.root / "manifests"

    @property
    def blobs_dir(self) -> Path:
        return self.root / "blobs"

    def blob_path(self, digest: str) -> Path:
        if not DIGEST_RE.match(digest):
            raise ApiError("invalid digest format", 400)
        return self.blobs_dir / digest.replace(":", "-")

    def _ensure_dirs(self) -> None:
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        self.manifests_dir.mkdir(parents=True, exist_ok=True)

    # -- blobs -----------------------------------------------------------------------------------------------

    def write_blob(self, chunks: Iterable[bytes], expected: str | None = None) -> tuple[str, int, bool]:
        """Stream chunks into a temp file while hashing, then rename to sha256-<hex>.

        Returns (digest, size, created). A digest mismatch raises ApiError 400 and leaves nothing behind.
        """
        self._ensure_dirs()
        hasher = hashlib.sha256()
        size = 0
        fd, temp_name = tempfile.mkstemp(prefix="sha256-", dir=self.blobs_dir)
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    hasher.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            digest = f"sha256:{hasher.hexdigest()}"
            if expected is not None and digest != expected:
                raise ApiError(f'digest mismatch, expected "{expected}", got "{digest}"', 400)
            target = self.blob_path(digest)
            created = not target.exists()
            if created:
                os.replace(temp, target)
                target.chmod(0o644)
            os.utime(target)
            return digest, size, created
        finally:
            temp.unlink(missing_ok=True)

    def new_layer(self, data: bytes, media_type: str) -> tuple[dict[str, Any], str]:
        """manifest.NewLayer: store bytes as a blob; returns (layer, status line)."""
        digest, size, created = self.write_blob([data])
        status = f"{'creating new layer' if created else 'using existing layer'} {digest}"
        return {"mediaType": media_type, "digest": digest, "size": size}, status

    def layer_from_blob(self, digest: str, media_type: str, source: str = "") -> tuple[dict[str, Any], str]:
        """manifest.NewLayerFromLayer."""
        path = self.blob_path(digest)
        try:
            stat = path.stat()
        except FileNotFoundError as err:
            raise ApiError(f"stat {path}: no such file or directory") from err
        os.utime(path)
        layer: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": stat.st_size}
        if source:
            layer["from"] = source
        return layer, f"using existing layer {digest}"

    # -- manifests -------------------------------------------------------------------------------------------

    def manifest_path(self, name: ModelName) -> Path:
        return self.manifests_dir.joinpath(*name.parts())

    def read_manifest(self, name: ModelName) -> Manifest:
        path = self.manifest_path(name)
        raw = path.read_bytes()
        data = json.loads(raw)
        return Manifest(name, path, data, hashlib.sha256(raw).hexdigest(), path.stat().st_mtime)

    def write_manifest(self, name: ModelName, config: dict[str, Any], layers: list[dict[str, Any]]) -> None:
        """manifest.WriteManifest, atomically (temp file + rename)."""
        path = self.manifest_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE, "config": config, "layers": layers}
        fd, temp_name = tempfile.mkstemp(prefix=".manifest-", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(go_json(body))
            os.chmod(temp_name, 0o644)
            os.replace(temp_name, path)
        finally:
            Path(temp_name).unlink(missing_ok=True)

    def manifests(self, continue_on_error: bool = True) -> dict[ModelName, Manifest]:
        """manifest.Manifests: every <host>/<namespace>/<model>/<tag> file under manifests/."""
        found: dict[ModelName, Manifest] = {}
        if not self.manifests_dir.is_dir():
            return found
        for path in sorted(self.manifests_dir.glob("*/*/*/*")):
            if path.is_dir() or path.name.startswith(".manifest-"):
                continue
            name = ModelName(*path.relative_to(self.manifests_dir).parts)
            if not name.is_valid():
                if not continue_on_error:
                    raise ApiError(f"{path} invalid manifest name")
                log("WARN", "bad manifest name", source="manifest.go", path=str(path))
                continue
            try:
                found[name] = self.read_manifest(name)
            except (OSError, ValueError) as err:
                if not continue_on_error:
                    raise ApiError(f"{name} {err}") from err
                log("WARN", "bad manifest", source="manifest.go", name=str(name), error=str(err))
        return found

    def existing_name(self, name: ModelName) -> ModelName:
        """getExistingName: an existing model whose name matches case-insensitively wins."""
        for other in self.manifests():
            if other.equal_fold(name):
                return other
        return name

    def find(self, text: str) -> Manifest:
        name = parse_name(text)
        if not name.is_valid():
            raise ApiError(f"model '{text}' not found", 404)
        try:
            return self.read_manifest(self.existing_name(name))
        except (OSError, ValueError) as err:
            raise ApiError(f"model '{text}' not found", 404) from err

    def read_config(self, manifest: Manifest) -> dict[str, Any]:
        digest = manifest.config.get("digest")
        if not digest:
            return {}
        try:
            config = json.loads(self.blob_path(digest).read_bytes())
        except (OSError, ValueError, ApiError):
            return {}
        return config if isinstance(config, dict) else {}

    # -- removal and pruning ---------------------------------------------------------------------------------

    def remove_unused_layers(self, manifest: Manifest) -> None:
        """Manifest.RemoveLayers: drop this manifest's blobs that no other manifest references."""
        in_use: set[str] = set()
        for other in self.manifests().values():
            in_use |= other.digests()
        for digest in manifest.digests() - in_use:
            try:
                self.blob_path(digest).unlink(missing_ok=True)
            except ApiError:
                continue

    def remove(self, manifest: Manifest) -> None:
        manifest.path.unlink()
        prune_empty_dirs(self.manifests_dir)
        self.remove_unused_layers(manifest)

    def fix_blobs(self) -> None:
        """fixBlobs: rename legacy `sha256:<hex>` blob files to `sha256-<hex>`."""
        if self.blobs_dir.is_dir():
            for path in self.blobs_dir.iterdir():
                if ":" in path.name and path.is_file():
                    path.rename(path.with_name(path.name.replace(":", "-")))

    def prune(self) -> None:
        """PruneLayers + PruneDirectory at serve start."""
        try:
            manifests = self.manifests(continue_on_error=False)
        except ApiError as err:
            log("WARN", "corrupt manifests detected, skipping prune operation.  Re-pull or delete to clear",
                error=err.message)  # fmt: skip
            return
        self._ensure_dirs()
        candidates: set[str] = set()
        for path in self.blobs_dir.iterdir():
            if path.is_dir():
                continue
            digest = path.name.replace("-", ":", 1)
            if not DIGEST_RE.match(digest):
                path.unlink(missing_ok=True)
                continue
            candidates.add(digest)
        log("INFO", f"total blobs: {len(candidates)}", source="images.go")
        for manifest in manifests.values():
            candidates -= manifest.digests()
        for digest in candidates:
            self.blob_path(digest).unlink(missing_ok=True)
        log("INFO", f"total unused blobs removed: {len(candidates)}", source="images.go")
        prune_empty_dirs(self.manifests_dir)


def prune_empty_dirs(path: Path) -> None:
    """manifest.PruneDirectory: remove empty directories bottom-up (symlinks untouched)."""
    if not path.is_dir() or path.is_symlink():
        return
    for child in path.iterdir():
        prune_empty_dirs(child)
    if not any(path.iterdir()):
        path.rmdir()
