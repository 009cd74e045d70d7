"""Differential bundles: a bundle that carries only the files its base lacks.

A delta's bundle.yaml describes the complete result, exactly as a full build of the same spec would (every file
with path, size and sha256; SHA256SUMS lists them all), and adds:

    base:                       # the bundle this one completes
      bundle_digest: <hex>      # sha256 of the base's bundle.yaml (its identity on hosts: verified/<digest>.json)
      name: demo
      ollama_version: 0.14.1
      models: [{name, manifest_digest}, ...]
      images: [{reference, digest}, ...]
      files: 12                 # how many files the base lists
      total_size: 123
    carried: {files: 3, size: 456}   # what this archive holds
    files:
      - {path, size, sha256, carried: true|false}   # false: taken from the base's tree on the host

A file comes from the base when the base lists the same path with the same size and sha256.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .bundle import FORMAT, Entry, base_digest, carried_paths, read_bundle_index, read_index
from .errors import SpecError, VerifyError
from .lock import load_lock

__all__ = ["BaseBundle", "base_digest", "carried_paths", "delta_meta", "load_base", "split_entries", "whats_new"]


@dataclass(frozen=True)
class BaseBundle:
    """The base of a differential bundle: its identity and the files it lists."""

    digest: str
    document: dict[str, Any]
    files: dict[str, tuple[int, str]]
    source: str

    def provides(self, entry: Entry) -> bool:
        return self.files.get(entry.path) == (entry.size, entry.sha256)

    def meta(self) -> dict[str, Any]:
        """bundle.yaml's ``base`` record."""
        doc = self.document
        return {
            "bundle_digest": self.digest,
            "name": doc.get("name"),
            "ollama_version": str((doc.get("ollama") or {}).get("version", "")),
            "models": [
                {"name": m.get("name"), "manifest_digest": m.get("manifest_digest")} for m in doc.get("models") or []
            ],
            "images": [{"reference": i.get("reference"), "digest": i.get("digest")} for i in doc.get("images") or []],
            "files": len(self.files),
            "total_size": sum(size for size, _ in self.files.values()),
        }


def sidecar_path(archive: Path) -> Path:
    """Where `bundle build` leaves a copy of bundle.yaml beside the archive (``demo.tar`` → ``demo.bundle.yaml``)."""
    return archive.with_name(archive.name.removesuffix(".tar") + ".bundle.yaml")


def _from_lock(path: Path) -> BaseBundle:
    """A lock names what was resolved, not the bundle's files: find the bundle.yaml written beside it."""
    lock = load_lock(path)
    stem = path.name.removesuffix(".yaml").removesuffix(".lock")
    candidates = [path.with_name(f"{stem}.bundle.yaml"), path.with_name(f"{stem}.tar"), path.with_name(stem)]
    for candidate in candidates:
        if candidate.exists():
            base = load_base(candidate)
            if base.document.get("lock") != lock.as_dict():
                raise SpecError(f"--base {path}: {candidate} is another build than this lock")
            return base
    raise SpecError(
        f"--base {path}: a lock does not list the bundle's files; keep {candidates[0].name} (written beside the "
        "archive by bundle build) or the archive next to it, or pass either instead"
    )


def load_base(path: Path) -> BaseBundle:
    """The base from an archive, an unpacked tree, a bundle.yaml (or its sidecar copy) or a lock file."""
    if not path.exists():
        raise SpecError(f"--base {path}: no such file or directory")
    if path.is_file() and path.name.endswith((".yaml", ".yml")):
        data = path.read_bytes()
        try:
            document = yaml.safe_load(data)
        except yaml.YAMLError:
            raise SpecError(f"--base {path}: not YAML") from None
        if isinstance(document, dict) and "lock_version" in document:
            return _from_lock(path)
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise SpecError(f"--base {path}: neither a bundle.yaml ({FORMAT}) nor a lock file")
        index = read_index(data, str(path))
    else:
        try:
            index = read_bundle_index(path)
        except VerifyError as exc:
            raise SpecError(f"--base {exc}") from None
    return BaseBundle(index.digest, index.document, index.files, str(path))


def split_entries(base: BaseBundle, entries: Iterable[Entry]) -> tuple[list[Entry], set[str]]:
    """The entries this archive must carry, and the set of their paths."""
    carried = [entry for entry in entries if not base.provides(entry)]
    return carried, {entry.path for entry in carried}


def delta_meta(base: BaseBundle, carried: list[Entry]) -> dict[str, Any]:
    return {"base": base.meta(), "carried": {"files": len(carried), "size": sum(e.size for e in carried)}}


def whats_new(document: dict[str, Any]) -> dict[str, Any] | None:
    """For `bundle inspect`: what a delta adds to its base (None for a full bundle)."""
    base = document.get("base")
    if not isinstance(base, dict):
        return None
    base_models = {(m.get("name"), m.get("manifest_digest")) for m in base.get("models") or []}
    base_names = {m.get("name") for m in base.get("models") or []}
    models = document.get("models") or []
    names = {m.get("name") for m in models}
    base_images = {(i.get("reference"), i.get("digest")) for i in base.get("images") or []}
    files = document.get("files") or []
    carried = [f for f in files if f.get("carried", True)]
    from_base = [f for f in files if not f.get("carried", True)]
    version = str((document.get("ollama") or {}).get("version", ""))
    was = str(base.get("ollama_version", ""))
    return {
        "base_digest": base.get("bundle_digest"),
        "base_name": base.get("name"),
        "ollama": {
            "base": was,
            "now": version,
            "changed": was != version,
        },
        "models_added": [m["name"] for m in models if m.get("name") not in base_names],
        "models_changed": [
            m["name"]
            for m in models
            if m.get("name") in base_names and (m.get("name"), m.get("manifest_digest")) not in base_models
        ],
        "models_from_base": [m["name"] for m in models if (m.get("name"), m.get("manifest_digest")) in base_models],
        "models_dropped": sorted(str(n) for n in base_names - names),
        "images_added": [
            i.get("reference")
            for i in document.get("images") or []
            if (i.get("reference"), i.get("digest")) not in base_images
        ],
        "files_carried": len(carried),
        "bytes_carried": sum(int(f.get("size", 0)) for f in carried),
        "files_from_base": len(from_base),
        "bytes_from_base": sum(int(f.get("size", 0)) for f in from_base),
        "carried_paths": [f["path"] for f in carried],
    }
