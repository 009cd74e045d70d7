"""The staging tree of a bundle delivered file by file (a streamed push, plugins/module_utils/airgap_bundle_receive.py;
a depot fetch, plugins/module_utils/depot_install.py): beside the bundle root, one per bundle digest, resumable, and
swapped in whole once every file in it is verified.

Standard library only: runs on the hosts, shipped over the SSH connection with the receiver."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from typing import Any

try:
    from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_checks import (
        CHUNK,
        META_NAMES,
        BundleError,
        Listed,
        exchange,
        hash_file,
        read_sums,
        walk_tree,
    )
    from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_records import (
        read_record,
        recorded_digest,
        write_record,
    )
except ImportError:  # shipped: the modules above are already defined in this namespace
    pass


def journal_path(staging: str) -> str:
    return staging + ".journal"


def load_journal(staging: str) -> dict[str, tuple[int, str]]:
    """Members verified into staging by an earlier run and unchanged since (size, mtime_ns, inode)."""
    done: dict[str, tuple[int, str]] = {}
    with contextlib.suppress(OSError), open(journal_path(staging), encoding="utf-8") as handle:
        for line in handle:
            try:
                path, size, digest, mtime_ns, inode = json.loads(line)
                info = os.lstat(os.path.join(staging, path))
            except (ValueError, TypeError, OSError):
                continue
            if stat.S_ISREG(info.st_mode) and (info.st_size, info.st_mtime_ns, info.st_ino) == (size, mtime_ns, inode):
                done[path] = (size, digest)
    return done


def note_done(staging: str, path: str, digest: str) -> None:
    info = os.lstat(os.path.join(staging, path))
    line = json.dumps([path, info.st_size, digest, info.st_mtime_ns, info.st_ino]) + "\n"
    with open(journal_path(staging), "a", encoding="utf-8") as handle:
        handle.write(line)


def linkable(state_dir: str, dest: str, listed: Listed) -> set[str]:
    """Files of this bundle that dest already holds verified (same sha256 in its SHA256SUMS, record intact)."""
    holds = recorded_digest(state_dir, dest)
    record = read_record(state_dir, dest, holds) if holds else None
    if record is None:
        return set()
    present = {entry[0] for entry in record["files"]}
    try:
        sums = read_sums(dest)
    except OSError:
        return set()
    return {path for path, (_, digest) in listed.items() if path in present and sums.get(path) == digest}


def prepare_staging(staging: str, needed: Listed, done: dict[str, tuple[int, str]], resume: dict[str, int]) -> None:
    """Keep only what this run builds on: verified members still needed and the partial members to continue."""
    os.makedirs(staging, mode=0o700, exist_ok=True)
    for dirpath, _, filenames in os.walk(staging):
        for name in filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), staging)
            if not ((rel in done and rel in needed) or rel in resume):
                os.unlink(os.path.join(dirpath, name))


def link_from_dest(dest: str, staging: str, path: str, expected: str, rehash: bool) -> int:
    """Hard-link (or copy, hashing) a file dest holds verified into staging; bytes hashed."""
    source, target = os.path.join(dest, path), os.path.join(staging, path)
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(target)
    hashed = 0
    if rehash:
        got = hash_file(source)
        hashed = os.path.getsize(source)
        if got != expected:
            raise BundleError(f"{path} in {dest} is altered (sha256 {got}, expected {expected})")
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError:  # another file system, a link limit: copy, hashing
        with open(source, "rb") as reader, open(target, "xb") as writer:
            shutil.copyfileobj(reader, writer, CHUNK)
        got = hash_file(target)
        hashed += os.path.getsize(target)
        if got != expected:
            os.unlink(target)
            raise BundleError(f"{path} in {dest} is altered (sha256 {got}, expected {expected})") from None
    return hashed


def staging_path(dest: str, digest: str) -> str:
    """Beside dest (the same file system, for the atomic exchange), one per bundle: what a resume builds on."""
    return os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}.staging-{digest[:12]}")


def remove_stale_staging(dest: str) -> None:
    """After a swap, what broken transfers of any bundle left beside dest is of no use any more."""
    parent, prefix = os.path.dirname(dest), f".{os.path.basename(dest)}.staging-"
    for name in os.listdir(parent):
        if name.startswith(prefix):
            full = os.path.join(parent, name)
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(full)


def forget_empty(staging: str) -> None:
    """A refused transfer that verified nothing leaves nothing behind."""
    if os.path.isdir(staging) and not load_journal(staging):
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.unlink(journal_path(staging))


def host_traits() -> dict[str, Any]:
    """What module_utils/airgap_bundle_select.py decides a host's files by: architecture and GPU overlays."""
    tegra = ""
    with contextlib.suppress(OSError), open("/etc/nv_tegra_release", encoding="utf-8", errors="replace") as handle:
        tegra = handle.read(4096)
    return {"machine": os.uname().machine, "kfd": os.path.exists("/dev/kfd"), "tegra": tegra}


def swap_in(staging: str, dest: str, state_dir: str, digest: str, needed: Listed, subset: Any) -> str:
    """Staging holds bundle.yaml, SHA256SUMS (its signature) and exactly the ``needed`` files, each verified: swap it
    into dest atomically, drop the old tree and what broken transfers left, write the record; returns its path."""
    walk_tree(staging, needed)
    meta = [name for name in META_NAMES if os.path.isfile(os.path.join(staging, name))]
    os.makedirs(os.path.dirname(dest), mode=0o755, exist_ok=True)
    exchange(staging, dest)
    shutil.rmtree(staging, ignore_errors=True)  # the old tree after the exchange
    remove_stale_staging(dest)
    return write_record(state_dir, dest, digest, [*meta, *needed], subset)
