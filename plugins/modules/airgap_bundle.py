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

import os
import shutil
import stat
import tarfile
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule
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
    exchange,
    expected_files,
    hash_file,
    is_hex64,
    read_sums,
    scan_archive,
    walk_tree,
)
from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_receive import check_signature
from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_records import (
    free_bytes,
    record_is_current,
    record_path,
    recorded_digest,
    require_base,
    write_record,
)

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


# --- installing --------------------------------------------------------------------------------------------


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


def verify_in_place(root: str, listed: Listed, digest: str, sums_sha256: str, workers: int) -> int:
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


def ensure_present(module: AnsibleModule, src: str | None, dest: str, state_dir: str, digest: str) -> dict:
    params = module.params
    record = record_path(state_dir, digest)
    current = record_is_current(state_dir, dest, digest)
    if params["public_key"]:
        # Two small files, checked on every run, so a newly required key is honoured at once.
        signed_source = dest if current else src
        if signed_source and os.path.exists(signed_source):
            check_signature(*read_signed_pair(signed_source), params["public_key"])
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
