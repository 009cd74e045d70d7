#!/usr/bin/python
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
    parse RV(manifest_text) with C(from_yaml). On a C(local) connection (delegated to the control node) the action
    plugin reads it in the controller's own process, without starting a module.
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
  adopt:
    description:
      - A directory O(src) on the file system of O(dest) is consumed; it is verified where it is (every file hashed,
        in O(workers) threads, and flushed to disk) and then swapped into O(dest), instead of being copied into
        staging. On any problem it stays where it was and O(dest) is unchanged. Ignored for archives, for
        differential bundles and across file systems.
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
size:
  description: Size of O(src) in bytes, 0 for a directory (state=inspected).
  returned: state=inspected
  type: int
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
import tarfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_checks import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    SUMS_NAME,
    BundleError,
    exchange,
    expected_files,
    hex64_problem,
    is_hex64,
    walk_tree,
)
from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_receive import check_signature
from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_records import (
    free_bytes,
    record_is_current,
    record_path,
    recorded_digest,
    recorded_subset,
    require_base,
    write_record,
)
from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_unpack import (
    carried_set,
    copy_directory,
    extract_archive,
    inspect_bundle,
    link_from_base,
    read_signed_pair,
    verify_in_place,
)

# --- reading the source ------------------------------------------------------------------------------------


# --- installing --------------------------------------------------------------------------------------------


def same_file_system(src: str, dest: str) -> bool:
    """Whether a rename can move src to dest (dest's parent when dest does not exist yet)."""
    target = dest if os.path.exists(dest) else os.path.dirname(dest)
    return os.path.exists(target) and os.stat(src).st_dev == os.stat(target).st_dev


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
    linked, subset = 0, None
    src = os.path.realpath(src)
    if os.path.isdir(src) and params["adopt"] and not base and src != dest and same_file_system(src, dest):
        # A tree fetched for this purpose (p2p): hashed where it is and moved into place, never copied.
        hashed = verify_in_place(src, listed, digest, params["sums_sha256"], params["workers"], sync=True)
        os.makedirs(os.path.dirname(dest), mode=0o755, exist_ok=True)
        exchange(src, dest)
        shutil.rmtree(src, ignore_errors=True)  # the old tree after the exchange
    elif os.path.isdir(src) and src == dest and not base:
        # A host given part of the bundle (a streamed push's subset) is checked for that part.
        held = recorded_subset(state_dir, dest, digest)
        part = held[0] if held else None
        hashed = verify_in_place(src, listed, digest, params["sums_sha256"], params["workers"], part)
        if held:
            listed, subset = {path: value for path, value in listed.items() if path in held[0]}, held[1]
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
    record = write_record(state_dir, dest, digest, [MANIFEST_NAME, SUMS_NAME, *signed, *listed], subset)
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
            "adopt": {"type": "bool", "default": False},
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
    for name in ("manifest_sha256", "base_digest"):
        if params[name] is not None and (problem := hex64_problem(name, params[name])):
            module.fail_json(msg=problem)
    dest = os.path.realpath(params["dest"]) if params["dest"] else None
    state_dir = params["state_dir"]
    try:
        if state == "inspected":
            module.exit_json(**inspect_bundle(src, expected))
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
