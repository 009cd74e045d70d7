"""The lock: what a build resolved (release files and manifest digests), so a rebuild gives the same content."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import SpecError
from .hashing import DIGEST_RE, HEX_RE

LOCK_VERSION = 1


@dataclass
class Lock:
    bundle: str
    resolved_at: int
    ollama_version: str
    release_files: dict[str, str] = field(default_factory=dict)  # file name -> sha256 hex
    models: dict[str, str] = field(default_factory=dict)  # full model name -> manifest digest
    images: dict[str, str] = field(default_factory=dict)  # image reference -> manifest digest
    kit_wheels: dict[str, str] = field(default_factory=dict)  # deploy kit wheel file name -> sha256 hex

    def as_dict(self) -> dict[str, Any]:
        return {
            "lock_version": LOCK_VERSION,
            "bundle": self.bundle,
            "resolved_at": self.resolved_at,
            "ollama": {"version": self.ollama_version, "files": dict(sorted(self.release_files.items()))},
            "models": dict(sorted(self.models.items())),
            "images": dict(sorted(self.images.items())),
            **({"deploy_kit": {"wheels": dict(sorted(self.kit_wheels.items()))}} if self.kit_wheels else {}),
        }

    def dump(self) -> bytes:
        return yaml.safe_dump(self.as_dict(), sort_keys=False).encode()


def load_lock(path: Path) -> Lock:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: cannot read lock ({exc})") from None
    if not isinstance(data, dict) or data.get("lock_version") != LOCK_VERSION:
        raise SpecError(f"{path}: lock_version: expected {LOCK_VERSION}")
    try:
        ollama = data["ollama"]
        lock = Lock(
            bundle=str(data["bundle"]),
            resolved_at=int(data["resolved_at"]),
            ollama_version=str(ollama["version"]),
            release_files={str(k): str(v) for k, v in (ollama.get("files") or {}).items()},
            models={str(k): str(v) for k, v in (data.get("models") or {}).items()},
            images={str(k): str(v) for k, v in (data.get("images") or {}).items()},
            kit_wheels={str(k): str(v) for k, v in ((data.get("deploy_kit") or {}).get("wheels") or {}).items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SpecError(f"{path}: malformed lock ({exc})") from None
    for name, digest in lock.release_files.items():
        if not HEX_RE.match(digest):
            raise SpecError(f"{path}: ollama.files.{name}: not a sha256")
    for name, digest in lock.kit_wheels.items():
        if not HEX_RE.match(digest) or not name.endswith(".whl") or "/" in name:
            raise SpecError(f"{path}: deploy_kit.wheels.{name}: not a wheel file name with its sha256")
    for name, digest in {**lock.models, **lock.images}.items():
        if not DIGEST_RE.match(digest):
            raise SpecError(f"{path}: {name}: not a sha256 digest")
    return lock
