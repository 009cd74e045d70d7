"""Checks shared by every way a bundle reaches a host (plugins/modules/airgap_bundle.py unpacking an archive or a
directory, plugins/action/airgap_bundle_stream.py streaming members over SSH into the host-side receiver).

Standard library only: this file runs on the hosts (no PyYAML there) and is shipped to them by both paths."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import hashlib
import os
import posixpath
import stat
import tarfile
from typing import IO, Any

MANIFEST_NAME = "bundle.yaml"
SUMS_NAME = "SHA256SUMS"
SIGNATURE_NAME = "bundle.yaml.sig"
META_NAMES = (MANIFEST_NAME, SUMS_NAME, SIGNATURE_NAME)
MAX_SIGNATURE = 4096
MAX_MANIFEST = 64 << 20
CHUNK = 1 << 20
BLOCK = tarfile.BLOCKSIZE
HEX = frozenset("0123456789abcdef")
RENAME_EXCHANGE = 2
F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20

Listed = dict[str, tuple[int, str]]


class BundleError(Exception):
    """One-line reason the bundle is refused; names the file."""


def is_hex64(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= HEX


def hex64_problem(name: str, value: object) -> str | None:
    """The one-line refusal of a value that must be a sha256 in lowercase hex, or None when it is one."""
    return None if is_hex64(value) else f"{name} must be 64 lowercase hex digits, got {value!r}"


def widen_pipe(fd: int) -> None:
    """Ask for a 1 MiB pipe (default 64 KiB): fewer wake-ups of the two sides per byte. Not a pipe: nothing."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)


def check_path(name: str) -> None:
    """A relative, normalised path that stays inside the bundle."""
    if not name or "\0" in name or "\\" in name or name.startswith("/"):
        raise BundleError(f"{name!r}: absolute or unsafe path, refused")
    if posixpath.normpath(name) != name or any(part in ("", ".", "..") for part in name.split("/")):
        raise BundleError(f"{name!r}: path escapes the bundle or is not normalised, refused")


def expected_files(files: list[dict[str, Any]]) -> Listed:
    listed: Listed = {}
    for item in files:
        path, size, digest = item.get("path"), item.get("size"), item.get("sha256")
        if not isinstance(path, str) or not isinstance(size, int) or size < 0 or not is_hex64(digest):
            raise BundleError(f"malformed files entry in {MANIFEST_NAME}: {str(item)[:120]}")
        check_path(path)
        if path in listed or path in (MANIFEST_NAME, SUMS_NAME):
            raise BundleError(f"{path} is listed twice in {MANIFEST_NAME}")
        listed[path] = (size, str(digest))
    return listed


def sums_text(listed: Listed) -> bytes:
    return "".join(f"{digest}  {path}\n" for path, (_, digest) in listed.items()).encode()


def check_sums(data: bytes, listed: Listed, sums_sha256: str) -> None:
    if hashlib.sha256(data).hexdigest() != sums_sha256:
        raise BundleError(f"{SUMS_NAME} does not match the sha256 recorded in {MANIFEST_NAME}")
    if data != sums_text(listed):
        raise BundleError(f"{SUMS_NAME} lists other files than {MANIFEST_NAME}")


def check_manifest_digest(data: bytes, expected: str | None) -> str:
    digest = hashlib.sha256(data).hexdigest()
    if expected and digest != expected:
        raise BundleError(f"{MANIFEST_NAME} is not the expected bundle (sha256 {digest}, expected {expected})")
    return digest


def check_member(member: tarfile.TarInfo, listed: Listed, seen: set[str], first: bool) -> str | None:
    """One archive header against the manifest: the member's name when its data is to be read, None for a directory.
    Refuses absolute or escaping paths, links, devices, duplicates, unlisted members and sizes that differ."""
    name = member.name.rstrip("/") if member.isdir() else member.name
    check_path(name)
    if member.isdir():
        return None
    if member.issym() or member.islnk():
        raise BundleError(f"{name} is a link ({member.linkname!r}), refused")
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        raise BundleError(f"{name} is a device or special file, refused")
    if name in seen:
        raise BundleError(f"{name} appears twice in the archive")
    seen.add(name)
    if (name == MANIFEST_NAME) != first:
        raise BundleError(f"{MANIFEST_NAME} is not the first member: not a bundle")
    if name == SIGNATURE_NAME:
        if member.size > MAX_SIGNATURE:
            raise BundleError(f"{name} is larger than {MAX_SIGNATURE} bytes")
    elif name not in (MANIFEST_NAME, SUMS_NAME):
        if name not in listed:
            raise BundleError(f"{name} is not listed in {MANIFEST_NAME}, refused")
        if member.size != listed[name][0]:
            raise BundleError(f"{name} is altered (size {member.size}, expected {listed[name][0]})")
    elif member.size > MAX_MANIFEST:
        raise BundleError(f"{name} is larger than {MAX_MANIFEST} bytes")
    return name


def scan_archive(tar: tarfile.TarFile, size: int, listed: Listed) -> list[tarfile.TarInfo]:
    """Every header checked before anything is written; returns the regular members in archive order."""
    members: list[tarfile.TarInfo] = []
    seen: set[str] = set()
    for member in tar:
        if check_member(member, listed, seen, not members) is not None:
            members.append(member)
    for name in [*listed, SUMS_NAME]:
        if name not in seen:
            raise BundleError(f"{name} is missing from the archive")
    # tar.offset is where the end-of-archive marker starts; only zero padding may follow it.
    with open(tar.name, "rb") as handle:  # type: ignore[arg-type]
        handle.seek(tar.offset)
        while chunk := handle.read(CHUNK):
            if any(chunk):
                raise BundleError(f"{size - tar.offset} bytes past the end of the archive (over its declared size)")
    return members


def copy_hashing(reader: IO[bytes], path: str, size: int) -> str:
    """Write reader's bytes to a new file at path while hashing them; returns the hex digest."""
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        left = size
        while left:
            count = reader.readinto(view[: min(left, CHUNK)])  # type: ignore[attr-defined]
            if not count:
                raise BundleError(f"{path}: source ended early")
            digest.update(view[:count])
            written = 0
            while written < count:
                written += os.write(fd, view[written:count])
            left -= count
        os.fsync(fd)
    finally:
        os.close(fd)
    return digest.hexdigest()


def hash_file(path: str, digest: Any = None, limit: int | None = None) -> str:
    """sha256 of a file (of its first ``limit`` bytes), fed into ``digest`` when given."""
    digest = digest or hashlib.sha256()
    view = memoryview(bytearray(CHUNK))
    left = -1 if limit is None else limit
    with open(path, "rb", buffering=0) as handle:
        while left:
            count = handle.readinto(view if left < 0 else view[: min(left, CHUNK)])
            if not count:
                break
            digest.update(view[:count])
            left = left - count if left > 0 else left
    return str(digest.hexdigest())


def walk_tree(root: str, listed: Listed) -> None:
    """An unpacked tree holds exactly the listed files (plus bundle.yaml, SHA256SUMS), regular, of the right size."""
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            mode = os.lstat(full).st_mode
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise BundleError(f"{rel} is not a regular file (link or device), refused")
            if rel not in listed and rel not in META_NAMES:
                raise BundleError(f"{rel} is not listed in {MANIFEST_NAME}, refused")
            seen.add(rel)
    for path, (size, _) in listed.items():
        if path not in seen:
            raise BundleError(f"{path} is missing")
        actual = os.path.getsize(os.path.join(root, path))
        if actual != size:
            raise BundleError(f"{path} is altered (size {actual}, expected {size})")
    if SUMS_NAME not in seen:
        raise BundleError(f"{SUMS_NAME} is missing")


def exchange(staging: str, dest: str) -> None:
    """Put staging at dest: one atomic renameat2(RENAME_EXCHANGE) when dest exists, plain rename otherwise."""
    if not os.path.lexists(dest):
        os.rename(staging, dest)
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    at_fdcwd = -100
    if renameat2 is not None and renameat2(at_fdcwd, staging.encode(), at_fdcwd, dest.encode(), RENAME_EXCHANGE) == 0:
        return  # staging now holds the old tree
    # No renameat2 (old libc or file system): two renames, a brief moment without dest.
    aside = staging + ".old"
    os.rename(dest, aside)
    os.rename(staging, dest)
    os.rename(aside, staging)


def read_sums(root: str) -> dict[str, str]:
    """path -> sha256 from a verified tree's SHA256SUMS."""
    sums: dict[str, str] = {}
    with open(os.path.join(root, SUMS_NAME), encoding="utf-8") as handle:
        for line in handle:
            digest, sep, path = line.rstrip("\n").partition("  ")
            if sep and is_hex64(digest):
                sums[path] = digest
    return sums
