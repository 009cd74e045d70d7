#!/usr/bin/python
"""Ansible module: fetch a bundle's files from the depot (a CNCF Distribution registry in the gap) by digest."""
# ruff: noqa: E402  (Ansible modules document themselves before their imports)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: airgap_depot_fetch
short_description: Fetch an ollama-airgap bundle's files from the depot by sha256, in ranged parts, resumably
description:
  - Runs on the host with the Python 3 standard library only. Every file of a bundle is a blob of the depot's
    repository under its own sha256 (the bundle is content-addressed), so the host asks for
    C(GET /v2/<repository>/blobs/sha256:<hex>) and needs no other index.
  - Like ollama's downloader (server/download.go upstream), a big blob is fetched in up to O(max_parts) C(Range)
    parts over parallel connections, written in place into C(<path>.partial) whose progress is kept in
    C(<path>.partial.json), so a broken transfer resumes where it stopped. Unlike it, the sha256 is computed while
    the parts arrive (the contiguous prefix is hashed as it grows), not in a second pass at the end. Redirects
    (a registry on object storage answers 307) are followed.
  - A file whose sha256 differs is fetched again from scratch (O(retries) times) and then refused. A depot that
    stops answering fails the task with one line; what arrived stays in O(dest) for the next run.
  - The result, O(dest), holds C(bundle.yaml), C(SHA256SUMS) and the listed files, each verified, ready for
    C(airgap_bundle state=present src=dest) to verify as a tree and swap in atomically. Files verified by an
    earlier run (same size, mtime and inode, recorded in C(<dest>.fetch.json)) are neither fetched nor hashed
    again. C(<dest>.lock) keeps two runs from fetching into O(dest) at once.
options:
  url:
    description: Base URL of the depot registry, e.g. C(http://depot:5000).
    type: str
    required: true
  repository:
    description: Repository holding the bundle's blobs.
    type: str
    default: ollama-airgap/bundle
  dest:
    description: Directory the files are fetched into (created; emptied first when it holds another bundle).
    type: path
    required: true
  manifest_sha256:
    description: sha256 of the bundle's C(bundle.yaml) (the bundle's identity); fetched as that blob.
    type: str
    required: true
  sums_sha256:
    description: sha256 of the bundle's C(SHA256SUMS); fetched as that blob.
    type: str
    required: true
  files:
    description: The files to fetch (path, size, sha256 of each), from the parsed bundle.yaml.
    type: list
    elements: dict
    required: true
  connections:
    description: Parallel HTTP connections in all.
    type: int
    default: 8
  max_parts:
    description: Most ranged parts one blob is split into.
    type: int
    default: 16
  part_size:
    description:
      - Smallest part in bytes; blobs up to this size are fetched in one request, hashed wholly in-stream.
      - A depot in the gap caps no connection, so one stream per file fills the link and parts only pay off for
        big blobs (ollama's parts are 100 MB to 1 GB); measured in docs/fleet.md.
    type: int
    default: 268435456
  retries:
    description: Tries per request on a connection error or a 5xx, and per file whose sha256 is wrong.
    type: int
    default: 3
  timeout:
    description: Seconds a connection may stay silent.
    type: float
    default: 30
attributes:
  check_mode:
    support: full
    details: Reports how many bytes would be fetched, fetches nothing.
author: ollama-airgap
"""

EXAMPLES = r"""
- name: Fetch the bundle from the depot
  ollama_airgap.deploy.airgap_depot_fetch:
    url: http://depot.example:5000
    dest: /var/lib/ollama-airgap/incoming/depot-{{ bundle_digest }}
    manifest_sha256: "{{ bundle_digest }}"
    sums_sha256: "{{ document.sha256sums_sha256 }}"
    files: "{{ document.files }}"
"""

RETURN = r"""
fetched_bytes:
  description: Bytes received from the depot by this run.
  returned: always
  type: int
resumed_bytes:
  description: Bytes of partial files kept from an earlier run and not fetched again.
  returned: always
  type: int
fetched_files:
  description: Files fetched (wholly or partly) by this run.
  returned: always
  type: int
refetched:
  description: Files whose sha256 was wrong and that were fetched again.
  returned: always
  type: list
  elements: str
seconds:
  description: Wall time of the transfer.
  returned: always
  type: float
"""

import fcntl
import json
import os
import shutil
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ollama_airgap.deploy.plugins.module_utils.depot_transfer import (
    FetchError,
    Transfer,
    Wanted,
)

STATE_SUFFIX = ".fetch.json"
HEX = frozenset("0123456789abcdef")
RESERVED = ("bundle.yaml", "SHA256SUMS", "bundle.yaml.sig")
LOCK_WAIT = 120


def is_hex64(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= HEX


def wanted_files(params: dict) -> list[Wanted]:
    wanted = [
        Wanted("bundle.yaml", -1, params["manifest_sha256"]),
        Wanted("SHA256SUMS", -1, params["sums_sha256"]),
    ]
    seen = {"bundle.yaml", "SHA256SUMS"}
    for item in params["files"]:
        path, size, digest = item.get("path"), item.get("size"), item.get("sha256")
        if not isinstance(path, str) or not isinstance(size, int) or size < 0 or not is_hex64(digest):
            raise FetchError(f"malformed files entry: {str(item)[:120]}")
        if path.startswith("/") or ".." in path.split("/") or path in RESERVED or path in seen:
            raise FetchError(f"{path!r}: unsafe, reserved or duplicate path, refused")
        seen.add(path)
        wanted.append(Wanted(path, size, digest))
    return wanted


class DoneState:
    """Which files of ``dest`` are verified: path -> [size, mtime_ns, inode] when verified."""

    def __init__(self, dest: str, digest: str) -> None:
        self.path = dest.rstrip("/") + STATE_SUFFIX  # beside the tree: airgap_bundle wants the listed files only
        self.digest = digest
        self.done: dict[str, list[int]] = {}
        try:
            with open(self.path) as handle:
                document = json.load(handle)
            if document.get("digest") == digest:
                self.done = dict(document.get("done") or {})
        except (OSError, ValueError):
            pass

    def holds_other_bundle(self) -> bool:
        try:
            with open(self.path) as handle:
                return json.load(handle).get("digest") != self.digest
        except (OSError, ValueError):
            return False

    def intact(self, dest: str, path: str) -> bool:
        try:
            info = os.lstat(os.path.join(dest, path))
        except OSError:
            return False
        return self.done.get(path) == [info.st_size, info.st_mtime_ns, info.st_ino]

    def mark(self, dest: str, path: str) -> None:
        info = os.lstat(os.path.join(dest, path))
        self.done[path] = [info.st_size, info.st_mtime_ns, info.st_ino]

    def save(self) -> None:
        partial = self.path + ".partial"
        with open(partial, "w") as handle:
            json.dump({"digest": self.digest, "done": self.done}, handle)
        os.replace(partial, self.path)


def lock_dest(dest: str) -> int:
    """One fetch per dest at a time: a run whose connection dropped may still be finishing on the host."""
    os.makedirs(dest, mode=0o700, exist_ok=True)
    lock = os.open(dest.rstrip("/") + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock  # held until the module exits
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise FetchError(f"another fetch into {dest} is still running after {LOCK_WAIT} s") from None
            time.sleep(1)


def run(module: AnsibleModule) -> dict:
    params = module.params
    for key in ("manifest_sha256", "sums_sha256"):
        if not is_hex64(params[key]):
            raise FetchError(f"{key} must be 64 lowercase hex digits")
    dest = params["dest"]
    wanted = wanted_files(params)
    state = DoneState(dest, params["manifest_sha256"])
    if state.holds_other_bundle() and not module.check_mode:
        shutil.rmtree(dest)  # what was fetched for another bundle: its blobs are not ours to resume
        state = DoneState(dest, params["manifest_sha256"])
    todo = [item for item in wanted if not state.intact(dest, item.path)]
    result = {"changed": bool(todo), "fetched_bytes": 0, "resumed_bytes": 0, "fetched_files": 0, "refetched": []}
    if not todo or module.check_mode:
        result["would_fetch_bytes"] = sum(max(item.size, 0) for item in todo)
        return {**result, "seconds": 0.0}
    lock_dest(dest)
    state = DoneState(dest, params["manifest_sha256"])  # again: an earlier run may have finished files since
    todo = [item for item in wanted if not state.intact(dest, item.path)]
    started = time.monotonic()
    transfer = Transfer(
        base_url=params["url"].rstrip("/"),
        repository=params["repository"],
        dest=dest,
        connections=max(1, params["connections"]),
        max_parts=max(1, params["max_parts"]),
        part_size=max(1 << 20, params["part_size"]),
        retries=max(1, params["retries"]),
        timeout=params["timeout"],
        on_verified=lambda path: state.mark(dest, path),
    )
    try:
        transfer.run(todo)
    finally:
        state.save()
        result.update(transfer.stats())
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "repository": {"type": "str", "default": "ollama-airgap/bundle"},
            "dest": {"type": "path", "required": True},
            "manifest_sha256": {"type": "str", "required": True},
            "sums_sha256": {"type": "str", "required": True},
            "files": {"type": "list", "elements": "dict", "required": True},
            "connections": {"type": "int", "default": 8},
            "max_parts": {"type": "int", "default": 16},
            "part_size": {"type": "int", "default": 256 << 20},
            "retries": {"type": "int", "default": 3},
            "timeout": {"type": "float", "default": 30.0},
        },
        supports_check_mode=True,
    )
    try:
        module.exit_json(**run(module))
    except FetchError as exc:
        dest = module.params["dest"]
        kept = f"; what arrived is kept in {dest} for the next run to resume" if os.path.isdir(dest) else ""
        module.fail_json(msg=f"depot {module.params['url']}: {exc}{kept}")
    except OSError as exc:
        module.fail_json(msg=f"{exc.filename or module.params['dest']}: {exc.strerror or exc}")


if __name__ == "__main__":
    main()
