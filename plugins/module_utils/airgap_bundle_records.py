"""Verification records of the bundle a host holds: ``<state_dir>/verified/<digest>.json`` lists every file verified
into the bundle root with its size, mtime_ns and inode, so a re-run trusts them without hashing. A host that got only
part of a bundle (the files it needs) has a record whose ``subset`` says which part.

Standard library only (runs on the hosts)."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from typing import Any

try:  # noqa: SIM105
    from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_checks import (
        MANIFEST_NAME,
        BundleError,
        is_hex64,
    )
except ImportError:  # shipped to a host by the stream receiver, where the checks are already defined
    pass

RECORD_FORMAT = 1


def record_path(state_dir: str, digest: str) -> str:
    return os.path.join(state_dir, "verified", f"{digest}.json")


def read_record(state_dir: str, dest: str, digest: str) -> dict[str, Any] | None:
    """The record of ``digest`` for ``dest`` when every file still has its recorded size, mtime_ns and inode."""
    try:
        with open(record_path(state_dir, digest)) as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    if record.get("format") != RECORD_FORMAT or record.get("digest") != digest or record.get("dest") != dest:
        return None
    entries = record.get("files") or []
    if not any(entry[0] == MANIFEST_NAME for entry in entries):
        return None
    for path, size, mtime_ns, inode in entries:
        try:
            info = os.lstat(os.path.join(dest, path))
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode) or (info.st_size, info.st_mtime_ns, info.st_ino) != (size, mtime_ns, inode):
            return None
    return dict(record)


def recorded_subset(state_dir: str, dest: str, digest: str) -> tuple[set[str], Any] | None:
    """(paths, subset) of the record of ``digest`` for ``dest`` when it holds a subset, intact or not: what this host
    was given. None for a full bundle or no record."""
    try:
        with open(record_path(state_dir, digest)) as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    if record.get("dest") != dest or not record.get("subset"):
        return None
    return {str(entry[0]) for entry in record.get("files") or []}, record["subset"]


def record_is_current(state_dir: str, dest: str, digest: str) -> bool:
    """The record exists, names dest, and every file still has its recorded size, mtime_ns and inode."""
    return read_record(state_dir, dest, digest) is not None


def write_record(state_dir: str, dest: str, digest: str, paths: list[str], subset: dict[str, Any] | None = None) -> str:
    entries = []
    for path in paths:
        info = os.lstat(os.path.join(dest, path))
        entries.append([path, info.st_size, info.st_mtime_ns, info.st_ino])
    directory = os.path.join(state_dir, "verified")
    os.makedirs(directory, mode=0o755, exist_ok=True)
    # One bundle per dest: records of what dest held before are stale now.
    for name in os.listdir(directory):
        if name.endswith(".json") and name != f"{digest}.json":
            with contextlib.suppress(OSError, ValueError), open(os.path.join(directory, name)) as handle:
                if json.load(handle).get("dest") == dest:
                    os.unlink(os.path.join(directory, name))
    target = record_path(state_dir, digest)
    document: dict[str, Any] = {
        "format": RECORD_FORMAT,
        "digest": digest,
        "dest": dest,
        "verified_at": int(time.time()),
        "files": entries,
        # None: every file of the bundle; else what part of it was sent and verified, and why.
        "subset": subset,
    }
    partial = target + ".partial"
    with open(partial, "w") as handle:
        json.dump(document, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, target)
    return target


def recorded_digest(state_dir: str, dest: str) -> str:
    """The digest of the bundle whose record names dest ("" when none)."""
    directory = os.path.join(state_dir, "verified")
    with contextlib.suppress(OSError):
        for name in sorted(os.listdir(directory)):
            if name.endswith(".json"):
                with contextlib.suppress(OSError, ValueError), open(os.path.join(directory, name)) as handle:
                    record = json.load(handle)
                    if record.get("dest") == dest and is_hex64(record.get("digest")):
                        return str(record["digest"])
    return ""


def require_base(state_dir: str, dest: str, base: str) -> None:
    """A differential bundle needs its base, intact, in dest."""
    if record_is_current(state_dir, dest, base):
        return
    holds = recorded_digest(state_dir, dest)
    what = f"it holds bundle {holds}" if holds else "it holds no verified bundle"
    state = "" if not holds or record_is_current(state_dir, dest, holds) else " (altered since verified)"
    raise BundleError(
        f"this differential bundle needs base bundle {base} in {dest}, and {what}{state}; "
        "deploy the base or a full bundle first. Nothing was changed"
    )


def free_bytes(path: str) -> int:
    probe = path
    while not os.path.exists(probe):
        probe = os.path.dirname(probe) or "/"
    info = os.statvfs(probe)
    return info.f_bavail * info.f_frsize
