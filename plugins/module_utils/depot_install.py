# Shared by the depot modules (Python 3 standard library only: it runs on the hosts).
"""The host side of ``bundle_transport: depot`` (plugins/modules/airgap_depot_fetch.py).

``fetch_into`` fetches a bundle's files by sha256 into a directory (module_utils/depot_transfer.py), remembering
which ones are verified so a re-run fetches only the rest. ``install`` does that straight into the staging tree
beside the bundle root that a streamed push uses (module_utils/airgap_bundle_staging.py): only the files this host
needs (module_utils/airgap_bundle_select.py), those the host already holds verified hard-linked instead of fetched,
each hashed once as it arrives; then the tree is checked whole, swapped into the root and recorded. No second copy,
no second hash.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from typing import Any

from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_checks import (
    MANIFEST_NAME,
    MAX_MANIFEST,
    SIGNATURE_NAME,
    SUMS_NAME,
    BundleError,
    check_manifest_digest,
    check_sums,
    expected_files,
    is_hex64,
)
from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_receive import check_signature
from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_records import (
    free_bytes,
    read_record,
    record_path,
    recorded_digest,
)
from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_select import choose
from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_staging import (
    host_traits,
    link_from_dest,
    linkable,
    staging_path,
    swap_in,
)
from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_unpack import (
    carried_set,
    read_signed_pair,
)
from ansible_collections.ollama_airgap.deploy.plugins.module_utils.depot_transfer import (
    USER_AGENT,
    FetchError,
    Transfer,
    Wanted,
)

STATE_SUFFIX = ".fetch.json"
RESERVED = ("bundle.yaml", "SHA256SUMS", "bundle.yaml.sig")
LOCK_WAIT = 120
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
TITLE = "org.opencontainers.image.title"


def wanted_files(params: dict[str, Any], paths: set[str] | None = None) -> list[Wanted]:
    """bundle.yaml and SHA256SUMS (by their digests), then the listed files (only ``paths`` when given)."""
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
        if paths is None or path in paths:
            wanted.append(Wanted(path, size, digest))
    return wanted


class DoneState:
    """Which files of ``dest`` are verified: path -> [size, mtime_ns, inode] when verified."""

    def __init__(self, dest: str, digest: str) -> None:
        self.path = dest.rstrip("/") + STATE_SUFFIX  # beside the tree: it must hold the listed files only
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


def _transfer(params: dict[str, Any], dest: str, state: DoneState) -> Transfer:
    return Transfer(
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


def _check_digests(params: dict[str, Any]) -> None:
    for key in ("manifest_sha256", "sums_sha256"):
        if not is_hex64(params[key]):
            raise FetchError(f"{key} must be 64 lowercase hex digits")


def fetch_into(params: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    """Fetch every file into params["dest"] (bundle.yaml, SHA256SUMS and the listed files, each verified)."""
    _check_digests(params)
    dest = params["dest"]
    wanted = wanted_files(params)
    state = DoneState(dest, params["manifest_sha256"])
    if state.holds_other_bundle() and not check_mode:
        shutil.rmtree(dest)  # what was fetched for another bundle: its blobs are not ours to resume
        state = DoneState(dest, params["manifest_sha256"])
    todo = [item for item in wanted if not state.intact(dest, item.path)]
    result = {"changed": bool(todo), "fetched_bytes": 0, "resumed_bytes": 0, "fetched_files": 0, "refetched": []}
    if not todo or check_mode:
        result["would_fetch_bytes"] = sum(max(item.size, 0) for item in todo)
        return {**result, "seconds": 0.0}
    lock_dest(dest)
    state = DoneState(dest, params["manifest_sha256"])  # again: an earlier run may have finished files since
    todo = [item for item in wanted if not state.intact(dest, item.path)]
    started = time.monotonic()
    transfer = _transfer(params, dest, state)
    try:
        transfer.run(todo)
    finally:
        state.save()
        result.update(transfer.stats())
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


def _tidy(staging: str, needed: set[str], fetched: set[str]) -> None:
    """Keep in staging only what this run builds on: the needed files, the ones it fetches (bundle.yaml, SHA256SUMS,
    the signature when a key asks for it) and their partial fetches."""
    keep = needed | fetched | {p + ".partial" for p in fetched} | {p + ".partial.json" for p in fetched}
    for dirpath, _, filenames in os.walk(staging):
        for name in filenames:
            if os.path.relpath(os.path.join(dirpath, name), staging) not in keep:
                os.unlink(os.path.join(dirpath, name))


def install(params: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    """Make params["root"] this bundle (the part of it this host needs), fetched from the depot into staging."""
    _check_digests(params)
    root, state_dir, digest = os.path.realpath(params["root"]), params["state_dir"], params["manifest_sha256"]
    try:
        listed = expected_files(params["files"])
        carried = carried_set(params["files"])
    except BundleError as exc:
        raise FetchError(str(exc)) from None
    manifest, options = params["manifest"] or {}, params["select"] or {}
    subset_on = bool(params["subset"] and manifest)  # without the parsed bundle.yaml nothing can be left out
    needed_paths, subset, left_out = choose(manifest, list(listed), host_traits(), options, subset_on)
    needed = {path: listed[path] for path in needed_paths}
    common: dict[str, Any] = {"digest": digest, "root": root, "subset": subset, "left_out": left_out,
                              "fetched_bytes": 0, "resumed_bytes": 0, "fetched_files": 0, "refetched": [],
                              "linked_files": 0, "seconds": 0.0}  # fmt: skip
    record = read_record(state_dir, root, digest)
    if record is not None and params["public_key"]:  # two small files, checked on every run
        check_signature(*read_signed_pair(root), params["public_key"])
    if record is not None and set(needed) <= {entry[0] for entry in record["files"]}:
        return {**common, "changed": False, "current": True, "record": record_path(state_dir, digest)}
    staging = staging_path(root, digest)
    link = linkable(state_dir, root, needed)
    absent = [p for p in needed if carried is not None and p not in carried and p not in link]
    if absent:
        raise FetchError(f"{absent[0]} is neither in this differential bundle nor verified on the host")
    state = DoneState(staging, digest)
    wanted = wanted_files(params, set(needed) - link)
    if params["public_key"] and (signature := signature_blob(params)) is not None:
        wanted.append(signature)
    todo = [item for item in wanted if not state.intact(staging, item.path)]
    to_fetch = sum(max(item.size, 0) for item in todo)
    plan = f"{len(todo)} files, {to_fetch} bytes to fetch ({len(link)} linked from the bundle the host holds, " \
           f"{len(wanted) - len(todo)} verified by an earlier run, {len(listed) - len(needed)} not needed)"  # fmt: skip
    diff = {"before": f"bundle {recorded_digest(state_dir, root) or '(none)'}\n", "after": f"bundle {digest}: {plan}\n"}
    common.update(changed=True, current=False, diff=diff, plan=plan, would_fetch_bytes=to_fetch)
    if check_mode:
        return common
    free = free_bytes(os.path.dirname(root))
    if free < to_fetch + params["free_space_margin"]:
        raise FetchError(f"{free} bytes free beside {root}, the fetch needs {to_fetch} plus a margin of "
                         f"{params['free_space_margin']}")  # fmt: skip
    lock_dest(staging)
    state = DoneState(staging, digest)  # again: an earlier run may have finished files since
    _tidy(staging, set(needed), {item.path for item in wanted})
    for path in sorted(link):
        if not state.intact(staging, path):
            link_from_dest(root, staging, path, needed[path][1], params["rehash_base"])
            state.mark(staging, path)
            common["linked_files"] += 1
    started = time.monotonic()
    transfer = _transfer(params, staging, state)
    try:
        transfer.run([item for item in wanted if not state.intact(staging, item.path)])
    finally:
        state.save()
        common.update(transfer.stats())
    common["seconds"] = round(time.monotonic() - started, 3)
    _check_meta(staging, params, listed)
    written = swap_in(staging, root, state_dir, digest, needed, subset)
    return {**common, "current": True, "record": written}


def signature_blob(params: dict[str, Any]) -> Wanted | None:
    """bundle.yaml.sig as the depot's manifest of the bundle lists it (airgap_depot_load adds it), or None. Its
    digest is not in bundle.yaml (it signs it): the signature proves itself against the key."""
    url = f"{params['url'].rstrip('/')}/v2/{params['repository']}/manifests/{params['manifest_sha256']}"
    request = urllib.request.Request(url, headers={"Accept": MANIFEST_TYPE, "User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=params["timeout"]) as response:
            document = json.loads(response.read(MAX_MANIFEST))
    except urllib.error.HTTPError as exc:
        raise FetchError(f"the bundle's manifest in the depot: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise FetchError(f"the bundle's manifest in the depot: {getattr(exc, 'reason', None) or exc}") from None
    for layer in document.get("layers") or []:
        if (layer.get("annotations") or {}).get(TITLE) == SIGNATURE_NAME:
            digest = str(layer.get("digest", ""))[len("sha256:") :]
            if not is_hex64(digest) or not isinstance(layer.get("size"), int):
                raise FetchError(f"the depot lists {SIGNATURE_NAME} with a malformed digest or size")
            return Wanted(SIGNATURE_NAME, layer["size"], digest)
    return None


def _check_meta(staging: str, params: dict[str, Any], listed: dict[str, tuple[int, str]]) -> None:
    """bundle.yaml is the bundle asked for, SHA256SUMS lists exactly its files (both fetched by digest, so this is
    the same chain a pushed bundle is checked by), and the signature holds when a key is required."""
    with open(os.path.join(staging, MANIFEST_NAME), "rb") as handle:
        check_manifest_digest(handle.read(MAX_MANIFEST + 1), params["manifest_sha256"])
    with open(os.path.join(staging, SUMS_NAME), "rb") as handle:
        check_sums(handle.read(MAX_MANIFEST + 1), listed, params["sums_sha256"])
    if params["public_key"]:
        check_signature(*read_signed_pair(staging), params["public_key"])
