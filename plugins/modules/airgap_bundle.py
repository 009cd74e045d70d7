#!/usr/bin/python3
"""Ansible module: verify an ollama-airgap bundle on a host and unpack it atomically, remembering what it verified."""
# ruff: noqa: E402  (Ansible modules document themselves before their imports)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: airgap_bundle
short_description: Verify and unpack an ollama-airgap bundle, refusing anything hostile or altered
description:
  - Works on the host with the Python 3 standard library only (no PyYAML there), so it never parses
    C(bundle.yaml) itself. The control node parses it (C(from_yaml)) and passes the bundle's identity
    (O(manifest_sha256), the sha256 of the C(bundle.yaml) bytes) plus its file list; the module checks that the
    C(bundle.yaml) it finds hashes to that identity, which binds the file list to the bytes on the host.
  - C(state=inspected) reads C(bundle.yaml) of O(src) (an archive whose first member it must be, or an unpacked
    directory) and returns its text and sha256. Run it on the control node (delegated) or on the host, then
    parse RV(manifest_text) with C(from_yaml).
  - C(state=query) tells whether O(dest) holds the bundle O(manifest_sha256) as last verified, by the record
    C(<state_dir>/verified/<manifest_sha256>.json) (size, mtime_ns and inode of every file), and how much space
    is free for it. It never hashes and never changes anything.
  - C(state=present) makes O(dest) the verified bundle. With an intact record it returns at once, changed=false,
    hashing nothing. Otherwise an archive is checked header by header BEFORE any byte is written (absolute paths,
    C(..), links, devices, unlisted or duplicate members, sizes differing from the manifest, data past the end),
    then extracted into a staging directory beside O(dest) while each member is hashed in the same pass. A
    directory O(src) equal to O(dest) is verified in place (files hashed in parallel threads); another directory
    is copied into staging while hashed. On any problem the staging directory is deleted and the module fails
    with one line naming the file; the previous O(dest) stays as it was. On success staging replaces O(dest) by an
    atomic exchange of the two directories (the old tree is removed after) and the record is written.
  - A differential bundle (O(base_digest) set; each O(files) entry says whether the archive C(carried) it) is
    assembled in staging from the files it carries (hashed while extracted) and the rest hard-linked (copied and
    hashed where a link is impossible) from the base tree in O(dest), which must hold base O(base_digest) with an
    intact record; each linked file must be listed with the same sha256 in the base's C(SHA256SUMS). Then the whole
    staging tree must hold exactly the listed files before the atomic exchange. When the base is missing the module
    fails, in check mode too, with one line naming the base's digest, and nothing changes.
options:
  state:
    description: What to do.
    type: str
    choices: [inspected, query, present]
    default: present
  src:
    description: The bundle on the host running the module, an uncompressed tar archive or an unpacked directory.
    type: path
  dest:
    description: Where the verified, unpacked bundle lives (the bundle root).
    type: path
  state_dir:
    description: Directory holding C(verified/<digest>.json) records.
    type: path
    default: /var/lib/ollama-airgap
  manifest_sha256:
    description:
      - sha256 (hex) of the expected C(bundle.yaml) bytes. Required for C(query) and C(present); with
        C(inspected), a C(bundle.yaml) hashing to anything else is refused.
    type: str
  files:
    description: The C(files) list of the parsed bundle.yaml (path, size, sha256 of each file). Required for C(present).
    type: list
    elements: dict
  sums_sha256:
    description: The C(sha256sums_sha256) value of bundle.yaml (sha256 of C(SHA256SUMS)). Required for C(present).
    type: str
  workers:
    description: Threads hashing an unpacked directory verified in place.
    type: int
    default: 4
  base_digest:
    description:
      - sha256 (hex) of the base bundle's C(bundle.yaml) when the bundle is differential (its C(base.bundle_digest)).
        With C(state=query), RV(base_present) tells whether O(dest) holds it.
    type: str
  rehash_base:
    description:
      - Re-hash the files taken from the base tree while assembling a differential bundle. Off by default, the
        base files are trusted by the base's verification record (size, mtime_ns and inode unchanged since hashed).
    type: bool
    default: false
  public_key:
    description:
      - PEM Ed25519 public key (from C(bundle keygen)). When set, C(bundle.yaml.sig) must be a valid signature of
        C(bundle.yaml), checked with the host's C(openssl) before anything is unpacked; an unsigned or altered
        bundle is refused.
    type: str
attributes:
  check_mode:
    support: full
    details: Reports whether O(dest) would change, touches nothing.
author: ollama-airgap
"""

EXAMPLES = r"""
- name: Read bundle.yaml on the control node
  ollama_airgap.deploy.airgap_bundle:
    state: inspected
    src: /srv/bundles/demo.tar
  delegate_to: localhost
  become: false
  register: inspected

- name: Verify and unpack on the host
  ollama_airgap.deploy.airgap_bundle:
    src: /var/lib/ollama-airgap/incoming/demo.tar
    dest: /var/lib/ollama-airgap/bundle
    manifest_sha256: "{{ inspected.digest }}"
    files: "{{ (inspected.manifest_text | from_yaml).files }}"
    sums_sha256: "{{ (inspected.manifest_text | from_yaml).sha256sums_sha256 }}"
"""

RETURN = r"""
digest:
  description: sha256 of bundle.yaml, the bundle's identity.
  returned: always
  type: str
manifest_text:
  description: The bundle.yaml text (state=inspected).
  returned: state=inspected
  type: str
kind:
  description: C(archive) or C(directory) (state=inspected).
  returned: state=inspected
  type: str
current:
  description: Whether O(dest) holds this bundle as recorded (state=query and present).
  returned: state=query or state=present
  type: bool
free_bytes:
  description: Free bytes on the file system that holds (or will hold) O(dest) (state=query).
  returned: state=query
  type: int
record:
  description: Path of the verification record.
  returned: state=query or state=present
  type: str
hashed_bytes:
  description: Bytes hashed by this run (0 when the record was intact).
  returned: state=present
  type: int
base_present:
  description: Whether O(dest) holds the base O(base_digest) with an intact record.
  returned: state=query with base_digest
  type: bool
holds:
  description: Digest of the bundle O(dest) is recorded to hold ("" when none).
  returned: state=query or state=present
  type: str
linked_files:
  description: Files of a differential bundle taken from the base tree (state=present).
  returned: state=present
  type: int
"""

import contextlib
import ctypes
import ctypes.util
import hashlib
import json
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule

MANIFEST_NAME = "bundle.yaml"
SUMS_NAME = "SHA256SUMS"
SIGNATURE_NAME = "bundle.yaml.sig"
MAX_SIGNATURE = 4096
MAX_MANIFEST = 64 << 20
CHUNK = 1 << 20
BLOCK = tarfile.BLOCKSIZE
RECORD_FORMAT = 1
HEX = frozenset("0123456789abcdef")
RENAME_EXCHANGE = 2


class BundleError(Exception):
    """One-line reason the bundle is refused; names the file."""


def is_hex64(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= HEX


def check_path(name: str) -> None:
    """A relative, normalised path that stays inside the bundle."""
    if not name or "\0" in name or "\\" in name or name.startswith("/"):
        raise BundleError(f"{name!r}: absolute or unsafe path, refused")
    if posixpath.normpath(name) != name or any(part in ("", ".", "..") for part in name.split("/")):
        raise BundleError(f"{name!r}: path escapes the bundle or is not normalised, refused")


def expected_files(files: list[dict]) -> dict[str, tuple[int, str]]:
    listed: dict[str, tuple[int, str]] = {}
    for item in files:
        path, size, digest = item.get("path"), item.get("size"), item.get("sha256")
        if not isinstance(path, str) or not isinstance(size, int) or size < 0 or not is_hex64(digest):
            raise BundleError(f"malformed files entry in {MANIFEST_NAME}: {str(item)[:120]}")
        check_path(path)
        if path in listed or path in (MANIFEST_NAME, SUMS_NAME):
            raise BundleError(f"{path} is listed twice in {MANIFEST_NAME}")
        listed[path] = (size, digest)
    return listed


def sums_text(listed: dict[str, tuple[int, str]]) -> bytes:
    return "".join(f"{digest}  {path}\n" for path, (_, digest) in listed.items()).encode()


def check_sums(data: bytes, listed: dict[str, tuple[int, str]], sums_sha256: str) -> None:
    if hashlib.sha256(data).hexdigest() != sums_sha256:
        raise BundleError(f"{SUMS_NAME} does not match the sha256 recorded in {MANIFEST_NAME}")
    if data != sums_text(listed):
        raise BundleError(f"{SUMS_NAME} lists other files than {MANIFEST_NAME}")


def check_manifest_digest(data: bytes, expected: str | None) -> str:
    digest = hashlib.sha256(data).hexdigest()
    if expected and digest != expected:
        raise BundleError(f"{MANIFEST_NAME} is not the expected bundle (sha256 {digest}, expected {expected})")
    return digest


# --- records -----------------------------------------------------------------------------------------------


def record_path(state_dir: str, digest: str) -> str:
    return os.path.join(state_dir, "verified", f"{digest}.json")


def record_is_current(state_dir: str, dest: str, digest: str) -> bool:
    """The record exists, names dest, and every file still has its recorded size, mtime_ns and inode."""
    try:
        with open(record_path(state_dir, digest)) as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return False
    if record.get("format") != RECORD_FORMAT or record.get("digest") != digest or record.get("dest") != dest:
        return False
    entries = record.get("files") or []
    if not any(entry[0] == MANIFEST_NAME for entry in entries):
        return False
    for path, size, mtime_ns, inode in entries:
        try:
            info = os.lstat(os.path.join(dest, path))
        except OSError:
            return False
        if not stat.S_ISREG(info.st_mode) or (info.st_size, info.st_mtime_ns, info.st_ino) != (size, mtime_ns, inode):
            return False
    return True


def write_record(state_dir: str, dest: str, digest: str, paths: list[str]) -> str:
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
    document = {
        "format": RECORD_FORMAT,
        "digest": digest,
        "dest": dest,
        "verified_at": int(time.time()),
        "files": entries,
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


# --- reading the source ------------------------------------------------------------------------------------


def read_manifest(src: str) -> tuple[bytes, str]:
    """bundle.yaml bytes and the kind of src (archive or directory)."""
    if os.path.isdir(src):
        path = os.path.join(src, MANIFEST_NAME)
        if not os.path.isfile(path) or os.path.islink(path):
            raise BundleError(f"{MANIFEST_NAME} is missing: not a bundle")
        if os.path.getsize(path) > MAX_MANIFEST:
            raise BundleError(f"{MANIFEST_NAME} is larger than {MAX_MANIFEST} bytes")
        with open(path, "rb") as handle:
            return handle.read(), "directory"
    try:
        with tarfile.open(src, "r:") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST_NAME or first.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
                raise BundleError(f"the first member is not {MANIFEST_NAME}: not a bundle")
            if first.size > MAX_MANIFEST:
                raise BundleError(f"{MANIFEST_NAME} is larger than {MAX_MANIFEST} bytes")
            handle = tar.extractfile(first)
            assert handle is not None
            return handle.read(), "archive"
    except tarfile.TarError as exc:
        raise BundleError(f"not a readable tar archive ({exc})") from None


def scan_archive(tar: tarfile.TarFile, size: int, listed: dict[str, tuple[int, str]]) -> list[tarfile.TarInfo]:
    """Every header checked before anything is written; returns the regular members in archive order."""
    members: list[tarfile.TarInfo] = []
    seen: set[str] = set()
    for member in tar:
        name = member.name.rstrip("/") if member.isdir() else member.name
        check_path(name)
        if member.isdir():
            continue
        if member.issym() or member.islnk():
            raise BundleError(f"{name} is a link ({member.linkname!r}), refused")
        if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            raise BundleError(f"{name} is a device or special file, refused")
        if name in seen:
            raise BundleError(f"{name} appears twice in the archive")
        seen.add(name)
        if (name == MANIFEST_NAME) != (not members):
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


def copy_hashing(reader, path: str, size: int) -> str:
    """Write reader's bytes to a new file at path while hashing them; returns the hex digest."""
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        left = size
        while left:
            count = reader.readinto(view[: min(left, CHUNK)])
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


def hash_file(path: str) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while count := handle.readinto(view):
            digest.update(view[:count])
    return digest.hexdigest()


def walk_tree(root: str, listed: dict[str, tuple[int, str]]) -> None:
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
            if rel not in listed and rel not in (MANIFEST_NAME, SUMS_NAME, SIGNATURE_NAME):
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


# --- installing --------------------------------------------------------------------------------------------


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


def carried_set(files: list[dict]) -> set[str] | None:
    """The paths a differential bundle's archive carries; None when no entry says (a full bundle)."""
    if not any("carried" in item for item in files):
        return None
    for item in files:
        if not isinstance(item.get("carried"), bool):
            raise BundleError(f"{item.get('path')}: carried is not true or false in {MANIFEST_NAME}")
    return {item["path"] for item in files if item["carried"]}


def in_archive(listed: dict[str, tuple[int, str]], carried: set[str] | None) -> dict[str, tuple[int, str]]:
    return listed if carried is None else {path: value for path, value in listed.items() if path in carried}


def extract_archive(
    src: str,
    staging: str,
    listed: dict[str, tuple[int, str]],
    digest: str,
    sums_sha256: str,
    carried: set[str] | None = None,
) -> int:
    hashed = 0
    with tarfile.open(src, "r:") as tar:
        members = scan_archive(tar, os.path.getsize(src), in_archive(listed, carried))
        os.makedirs(staging, mode=0o755)
        for member in members:
            reader = tar.extractfile(member)
            assert reader is not None
            if member.name in (MANIFEST_NAME, SUMS_NAME, SIGNATURE_NAME):
                data = reader.read()
                if member.name == MANIFEST_NAME:
                    check_manifest_digest(data, digest)
                elif member.name == SUMS_NAME:
                    check_sums(data, listed, sums_sha256)
                with open(os.path.join(staging, member.name), "xb") as handle:
                    handle.write(data)
                continue
            target = os.path.join(staging, member.name)
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            got = copy_hashing(reader, target, member.size)
            hashed += member.size
            expected = listed[member.name][1]
            if got != expected:
                raise BundleError(f"{member.name} is altered (sha256 {got}, expected {expected})")
    return hashed


def copy_directory(
    src: str,
    staging: str,
    listed: dict[str, tuple[int, str]],
    digest: str,
    sums_sha256: str,
    carried: set[str] | None = None,
) -> int:
    walk_tree(src, in_archive(listed, carried))
    with open(os.path.join(src, MANIFEST_NAME), "rb") as handle:
        manifest = handle.read(MAX_MANIFEST + 1)
    check_manifest_digest(manifest, digest)
    with open(os.path.join(src, SUMS_NAME), "rb") as handle:
        sums = handle.read(MAX_MANIFEST + 1)
    check_sums(sums, listed, sums_sha256)
    os.makedirs(staging, mode=0o755)
    copied = [(MANIFEST_NAME, manifest), (SUMS_NAME, sums)]
    signature = os.path.join(src, SIGNATURE_NAME)
    if os.path.isfile(signature):
        with open(signature, "rb") as handle:
            copied.append((SIGNATURE_NAME, handle.read(MAX_SIGNATURE + 1)))
    for name, data in copied:
        with open(os.path.join(staging, name), "xb") as handle:
            handle.write(data)
    hashed = 0
    for path, (size, expected) in in_archive(listed, carried).items():
        target = os.path.join(staging, path)
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        with open(os.path.join(src, path), "rb", buffering=0) as reader:
            got = copy_hashing(reader, target, size)
        hashed += size
        if got != expected:
            raise BundleError(f"{path} is altered (sha256 {got}, expected {expected})")
    return hashed


def read_base_sums(base_root: str) -> dict[str, str]:
    """path -> sha256 from the base tree's SHA256SUMS (intact: its record was checked)."""
    sums: dict[str, str] = {}
    with open(os.path.join(base_root, SUMS_NAME), encoding="utf-8") as handle:
        for line in handle:
            digest, sep, path = line.rstrip("\n").partition("  ")
            if sep and is_hex64(digest):
                sums[path] = digest
    return sums


def link_from_base(
    base_root: str, staging: str, listed: dict[str, tuple[int, str]], carried: set[str], rehash: bool
) -> tuple[int, int]:
    """Hard-link (or copy while hashing) every file the delta does not carry from the base tree into staging.
    Returns (files linked, bytes hashed)."""
    base_sums = read_base_sums(base_root)
    linked = hashed = 0
    for path, (size, expected) in listed.items():
        if path in carried:
            continue
        if base_sums.get(path) != expected:
            raise BundleError(f"{path}: the base on this host does not list it with sha256 {expected}")
        source = os.path.join(base_root, path)
        info = os.lstat(source)
        if not stat.S_ISREG(info.st_mode) or info.st_size != size:
            raise BundleError(f"{path} in the base tree is altered (size {info.st_size}, expected {size})")
        if rehash:
            got = hash_file(source)
            hashed += size
            if got != expected:
                raise BundleError(f"{path} in the base tree is altered (sha256 {got}, expected {expected})")
        target = os.path.join(staging, path)
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        try:
            os.link(source, target, follow_symlinks=False)
        except OSError:  # another file system, a link limit: copy, hashing
            with open(source, "rb", buffering=0) as reader:
                got = copy_hashing(reader, target, size)
            hashed += size
            if got != expected:
                raise BundleError(f"{path} in the base tree is altered (sha256 {got}, expected {expected})") from None
        linked += 1
    return linked, hashed


def verify_in_place(root: str, listed: dict[str, tuple[int, str]], digest: str, sums_sha256: str, workers: int) -> int:
    walk_tree(root, listed)
    with open(os.path.join(root, MANIFEST_NAME), "rb") as handle:
        check_manifest_digest(handle.read(MAX_MANIFEST + 1), digest)
    with open(os.path.join(root, SUMS_NAME), "rb") as handle:
        check_sums(handle.read(MAX_MANIFEST + 1), listed, sums_sha256)
    paths = list(listed)
    # Biggest first, so one large blob does not end up last on a single thread.
    paths.sort(key=lambda path: listed[path][0], reverse=True)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for path, got in zip(paths, pool.map(lambda p: hash_file(os.path.join(root, p)), paths), strict=True):
            if got != listed[path][1]:
                raise BundleError(f"{path} is altered (sha256 {got}, expected {listed[path][1]})")
    return sum(size for size, _ in listed.values())


def read_signed_pair(src: str) -> tuple[bytes, bytes | None]:
    """bundle.yaml and bundle.yaml.sig (None when the bundle is unsigned) from an archive or a directory."""
    if os.path.isdir(src):
        manifest, _ = read_manifest(src)
        path = os.path.join(src, SIGNATURE_NAME)
        if not os.path.isfile(path) or os.path.islink(path):
            return manifest, None
        with open(path, "rb") as handle:
            return manifest, handle.read(MAX_SIGNATURE + 1)
    manifest, _ = read_manifest(src)
    with tarfile.open(src, "r:") as tar:
        tar.next()  # bundle.yaml
        second = tar.next()
        if second is None or second.name != SIGNATURE_NAME or not second.isreg() or second.size > MAX_SIGNATURE:
            return manifest, None
        handle = tar.extractfile(second)
        assert handle is not None
        return manifest, handle.read()


def check_signature(module: AnsibleModule, src: str, public_key: str) -> None:
    """Ed25519 signature of bundle.yaml, checked offline with the host's OpenSSL before anything is installed."""
    manifest, signature = read_signed_pair(src)
    if signature is None:
        raise BundleError(f"bundle is not signed ({SIGNATURE_NAME} missing) but a signing key is required")
    openssl = module.get_bin_path("openssl")
    if not openssl:
        raise BundleError("openssl is needed on the host to check the bundle signature")
    with tempfile.TemporaryDirectory(prefix="airgap-signature-") as tmp:
        paths = {}
        for name, data in (("key.pem", public_key.encode()), ("bundle.yaml", manifest), ("bundle.sig", signature)):
            paths[name] = os.path.join(tmp, name)
            with open(paths[name], "wb") as handle:
                handle.write(data)
        rc, _, _ = module.run_command(
            [openssl, "pkeyutl", "-verify", "-pubin", "-inkey", paths["key.pem"], "-rawin",
             "-in", paths["bundle.yaml"], "-sigfile", paths["bundle.sig"]]
        )  # fmt: skip
    if rc != 0:
        raise BundleError(f"{SIGNATURE_NAME} does not match {MANIFEST_NAME} (altered, or signed by another key)")


def ensure_present(module: AnsibleModule, src: str | None, dest: str, state_dir: str, digest: str) -> dict:
    params = module.params
    record = record_path(state_dir, digest)
    current = record_is_current(state_dir, dest, digest)
    if params["public_key"]:
        # Two small files, checked on every run, so a newly required key is honoured at once.
        signed_source = dest if current else src
        if signed_source and os.path.exists(signed_source):
            check_signature(module, signed_source, params["public_key"])
    if current:
        return {"changed": False, "current": True, "digest": digest, "root": dest, "record": record, "hashed_bytes": 0}
    base = params["base_digest"]
    if base:
        require_base(state_dir, dest, base)
    diff = {"before": f"bundle {recorded_digest(state_dir, dest) or '(none)'}\n", "after": f"bundle {digest}\n"}
    if base:
        diff["after"] += f"assembled from base bundle {base} and the files the differential bundle carries\n"
    if module.check_mode:
        return {
            "changed": True, "current": False, "digest": digest, "root": dest, "record": record, "hashed_bytes": 0,
            "diff": diff,
        }  # fmt: skip
    if not src:
        raise BundleError(f"{dest} does not hold bundle {digest} and no src was given")
    if not os.path.exists(src):
        raise BundleError(f"{src} does not exist")
    if params["files"] is None or not is_hex64(params["sums_sha256"]):
        raise BundleError("state=present needs files and sums_sha256 from the parsed bundle.yaml")
    listed = expected_files(params["files"])
    carried = carried_set(params["files"])
    if bool(base) != (carried is not None):
        raise BundleError("a differential bundle needs both base_digest and the carried mark of every file")
    linked = 0
    src = os.path.realpath(src)
    if os.path.isdir(src) and src == dest and not base:
        hashed = verify_in_place(src, listed, digest, params["sums_sha256"], params["workers"])
    else:
        parent = os.path.dirname(dest)
        os.makedirs(parent, mode=0o755, exist_ok=True)
        staging = os.path.join(parent, f".{os.path.basename(dest)}.staging-{digest[:12]}")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            if os.path.isdir(src):
                hashed = copy_directory(src, staging, listed, digest, params["sums_sha256"], carried)
            else:
                hashed = extract_archive(src, staging, listed, digest, params["sums_sha256"], carried)
            if carried is not None:
                linked, base_hashed = link_from_base(dest, staging, listed, carried, params["rehash_base"])
                hashed += base_hashed
                walk_tree(staging, listed)  # the complete tree: exactly the listed files, each of its size
            exchange(staging, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # the refused tree, or the old one after the exchange
    signed = [SIGNATURE_NAME] if os.path.isfile(os.path.join(dest, SIGNATURE_NAME)) else []
    record = write_record(state_dir, dest, digest, [MANIFEST_NAME, SUMS_NAME, *signed, *listed])
    return {
        "changed": True, "current": True, "digest": digest, "root": dest, "record": record, "hashed_bytes": hashed,
        "linked_files": linked, "diff": diff,
    }  # fmt: skip


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["inspected", "query", "present"], "default": "present"},
            "src": {"type": "path"},
            "dest": {"type": "path"},
            "state_dir": {"type": "path", "default": "/var/lib/ollama-airgap"},
            "manifest_sha256": {"type": "str"},
            "files": {"type": "list", "elements": "dict"},
            "sums_sha256": {"type": "str"},
            "workers": {"type": "int", "default": 4},
            "public_key": {"type": "str"},
            "base_digest": {"type": "str"},
            "rehash_base": {"type": "bool", "default": False},
        },
        required_if=[
            ("state", "inspected", ["src"]),
            ("state", "query", ["dest", "manifest_sha256"]),
            ("state", "present", ["dest", "manifest_sha256"]),
        ],
        supports_check_mode=True,
    )
    params = module.params
    state, src = params["state"], params["src"]
    expected = params["manifest_sha256"]
    if expected is not None and not is_hex64(expected):
        module.fail_json(msg=f"manifest_sha256 must be 64 lowercase hex digits, got {expected!r}")
    if params["base_digest"] is not None and not is_hex64(params["base_digest"]):
        module.fail_json(msg=f"base_digest must be 64 lowercase hex digits, got {params['base_digest']!r}")
    dest = os.path.realpath(params["dest"]) if params["dest"] else None
    state_dir = params["state_dir"]
    try:
        if state == "inspected":
            try:
                data, kind = read_manifest(src)
            except OSError as exc:
                raise BundleError(f"cannot read it ({exc.strerror})") from None
            digest = check_manifest_digest(data, expected)
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise BundleError(f"{MANIFEST_NAME} is not UTF-8 text") from None
            module.exit_json(changed=False, digest=digest, manifest_text=text, kind=kind)
        assert dest is not None
        if state == "query":
            current = record_is_current(state_dir, dest, expected)
            base = params["base_digest"]
            module.exit_json(
                changed=False,
                current=current,
                holds=recorded_digest(state_dir, dest),
                base_present=bool(base) and record_is_current(state_dir, dest, base),
                digest=expected,
                record=record_path(state_dir, expected),
                free_bytes=free_bytes(os.path.dirname(dest)),
            )
        module.exit_json(**ensure_present(module, src, dest, state_dir, expected))
    except BundleError as exc:
        module.fail_json(msg=f"{src or dest}: {exc}")
    except tarfile.TarError as exc:
        module.fail_json(msg=f"{src}: not a readable tar archive ({exc})")
    except OSError as exc:
        where = exc.filename or src or dest
        module.fail_json(msg=f"{where}: {exc.strerror or exc}")


if __name__ == "__main__":
    main()
