"""Unpacking a bundle that is already on the host (plugins/modules/airgap_bundle.py): an archive or a directory
into staging while hashing, a directory verified in place, a differential bundle assembled from its base.

Standard library only (runs on the hosts)."""

from __future__ import annotations

import os
import stat
import tarfile
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_checks import (
    MANIFEST_NAME,
    MAX_MANIFEST,
    MAX_SIGNATURE,
    SIGNATURE_NAME,
    SUMS_NAME,
    BundleError,
    Listed,
    check_manifest_digest,
    check_sums,
    copy_hashing,
    hash_file,
    read_sums,
    scan_archive,
    walk_tree,
)


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


def inspect_bundle(src: str, expected: str | None) -> dict:
    """state=inspected: bundle.yaml's text and digest (checked against ``expected`` when given), the kind of src and
    its size (0 for a directory)."""
    try:
        data, kind = read_manifest(src)
        size = os.path.getsize(src) if kind == "archive" else 0
    except OSError as exc:
        raise BundleError(f"cannot read it ({exc.strerror})") from None
    digest = check_manifest_digest(data, expected)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BundleError(f"{MANIFEST_NAME} is not UTF-8 text") from None
    return {"changed": False, "digest": digest, "manifest_text": text, "kind": kind, "size": size}


def carried_set(files: list[dict]) -> set[str] | None:
    """The paths a differential bundle's archive carries; None when no entry says (a full bundle)."""
    if not any("carried" in item for item in files):
        return None
    for item in files:
        if not isinstance(item.get("carried"), bool):
            raise BundleError(f"{item.get('path')}: carried is not true or false in {MANIFEST_NAME}")
    return {item["path"] for item in files if item["carried"]}


def in_archive(listed: Listed, carried: set[str] | None) -> Listed:
    return listed if carried is None else {path: value for path, value in listed.items() if path in carried}


def extract_archive(
    src: str,
    staging: str,
    listed: Listed,
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
    listed: Listed,
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


def link_from_base(base_root: str, staging: str, listed: Listed, carried: set[str], rehash: bool) -> tuple[int, int]:
    """Hard-link (or copy while hashing) every file the delta does not carry from the base tree into staging.
    Returns (files linked, bytes hashed)."""
    base_sums = read_sums(base_root)
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


def verify_in_place(
    root: str,
    listed: Listed,
    digest: str,
    sums_sha256: str,
    workers: int,
    held: set[str] | None = None,
    sync: bool = False,
) -> int:
    """Hash the tree where it is. ``held``: the part of the bundle this host was given (its record's subset).
    ``sync``: also flush each file to disk (a tree another program wrote, about to become the bundle)."""
    with open(os.path.join(root, SUMS_NAME), "rb") as handle:
        check_sums(handle.read(MAX_MANIFEST + 1), listed, sums_sha256)
    if held is not None:
        listed = {path: value for path, value in listed.items() if path in held}
    walk_tree(root, listed)
    with open(os.path.join(root, MANIFEST_NAME), "rb") as handle:
        check_manifest_digest(handle.read(MAX_MANIFEST + 1), digest)
    paths = list(listed)
    # Biggest first, so one large blob does not end up last on a single thread.
    paths.sort(key=lambda path: listed[path][0], reverse=True)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        hashed = pool.map(lambda p: _hash_and_sync(os.path.join(root, p), sync), paths)
        for path, got in zip(paths, hashed, strict=True):
            if got != listed[path][1]:
                raise BundleError(f"{path} is altered (sha256 {got}, expected {listed[path][1]})")
    return sum(size for size, _ in listed.values())


def _hash_and_sync(path: str, sync: bool) -> str:
    got = hash_file(path)
    if sync:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return got


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
