#!/usr/bin/python
"""Ansible module: place a bundled ollama model straight into OLLAMA_MODELS (no copy through the API)."""

# Ansible modules keep DOCUMENTATION/EXAMPLES/RETURN ahead of the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
---
module: airgap_model_restore
short_description: Restore ollama models from an unpacked ollama-airgap bundle, or check the disk space for it
description:
  - C(action=restore) places one model's blobs into I(models_dir)/blobs (hard links where the bundle and the model
    store share a file system, else a verified copy written to a temp file and renamed), then writes the manifest
    bytes from the bundle atomically to I(models_dir)/manifests/<host>/<namespace>/<model>/<tag>. The model's
    digest in C(ollama list) and C(/api/tags) is then the sha256 of those bytes, exactly what C(ollama pull) gives.
    A running ollama server lists it at once; no restart is needed.
  - Blobs go first and the manifest last, so a failure never leaves a listed model with missing layers; blobs this
    run placed are removed again when it fails.
  - C(action=preflight) checks, for several models in order, that the file system of I(models_dir) has room for
    what each import still needs (blobs already in the store need nothing; C(create) needs twice the missing
    bytes, as the API copies the GGUF; C(restore) needs them once, or nothing where hard links are possible).
    It fails with one line naming the model, the path, the bytes needed and the bytes free. It never changes
    anything.
  - Standard library only (runs with the hosts' system python3). Supports check mode.
options:
  action:
    description: What to do.
    type: str
    choices: [restore, preflight]
    default: restore
  bundle_root:
    description: Absolute path of the unpacked, verified bundle on the host.
    type: path
    required: true
  models_dir:
    description: The ollama model store (OLLAMA_MODELS).
    type: path
    required: true
  manifest:
    description: Bundle-relative path of the model's manifest (C(models/manifests/<host>/<ns>/<model>/<tag>)).
      Required for C(action=restore).
    type: str
  manifest_digest:
    description: Expected C(sha256:<hex>) of the manifest bytes; the restore refuses a manifest that differs.
    type: str
  models:
    description: For C(action=preflight), the models to import, in order (each a dict with C(name), C(manifest)
      and C(method) create|restore).
    type: list
    elements: dict
  link:
    description: C(auto) hard-links blobs when the bundle and the store are on one file system, C(never) always
      copies.
    type: str
    choices: [auto, never]
    default: auto
  owner:
    description: Owner of the directories and copied files created in the store.
    type: str
    default: ollama
  group:
    description: Group of the directories and copied files created in the store.
    type: str
    default: ollama
author: ollama-airgap
"""

EXAMPLES = r"""
- name: Restore tinyllama:latest from the bundle
  ollama_airgap.deploy.airgap_model_restore:
    bundle_root: /var/lib/ollama-airgap/bundle
    models_dir: /usr/share/ollama/.ollama/models
    manifest: models/manifests/registry.ollama.ai/library/tinyllama/latest
    manifest_digest: sha256:de7ebfe4febd82b3cb23f85fd25fc0ff7924d1d8199a72982bdc945f4da9af4e

- name: Check the free space for every pending import
  ollama_airgap.deploy.airgap_model_restore:
    action: preflight
    bundle_root: /var/lib/ollama-airgap/bundle
    models_dir: /usr/share/ollama/.ollama/models
    models:
      - {name: "tinyllama:latest", manifest: models/manifests/registry.ollama.ai/library/tinyllama/latest,
         method: create}
"""

RETURN = r"""
manifest_path:
  description: Where the manifest was (or would be) written.
  returned: action=restore
  type: str
digest:
  description: sha256:<hex> of the manifest bytes (the model's ID in ollama list).
  returned: action=restore
  type: str
blobs_linked:
  description: Blobs hard-linked from the bundle.
  returned: action=restore
  type: list
blobs_copied:
  description: Blobs copied (and verified) from the bundle.
  returned: action=restore
  type: list
blobs_present:
  description: Blobs that were already in the store.
  returned: action=restore
  type: list
bytes_copied:
  description: Bytes written by copies.
  returned: action=restore
  type: int
linkable:
  description: Whether the bundle and the store share a file system (hard links possible).
  returned: always
  type: bool
free_bytes:
  description: Free bytes (for unprivileged users) on the store's file system.
  returned: action=preflight
  type: int
needed_bytes:
  description: Bytes the listed imports need in total.
  returned: action=preflight
  type: int
models:
  description: Per model, bytes needed.
  returned: action=preflight
  type: list
"""

import contextlib
import grp
import hashlib
import json
import os
import pwd
import re
import tempfile
from collections.abc import Callable

from ansible.module_utils.basic import AnsibleModule

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
CHUNK = 4 * 1024 * 1024
# Space the copy factor applies to: `ollama create` streams the GGUF to the server, which writes it again.
CREATE_FACTOR = 2


class RestoreError(Exception):
    """A one-line reason the restore cannot go on."""


def blob_name(digest: str) -> str:
    if not DIGEST_RE.match(digest):
        raise RestoreError(f"invalid blob digest {digest!r} in manifest")
    return "sha256-" + digest[len("sha256:") :]


def safe_join(root: str, relative: str) -> str:
    """root/relative, refusing absolute paths and `..` (the bundle is verified, but stay strict)."""
    parts = relative.split("/")
    if relative.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise RestoreError(f"unsafe bundle path {relative!r}")
    return os.path.join(root, *parts)


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def read_manifest(bundle_root: str, manifest: str) -> tuple[bytes, list[tuple[str, int]]]:
    """The manifest bytes and its distinct blobs [(digest, size)], config first.

    Every layer is a blob, whatever its media type: model (one or several: split GGUFs), projector, adapter, draft,
    tensor and json (safetensors models; these carry a ``name``), template, system, params, messages, license,
    prompt. The media type decides nothing here, as ollama's own pull (server/images.go PullModel) fetches every
    layer by digest alone. A digest listed twice (two tensor layers with equal bytes) is one blob.
    """
    path = safe_join(bundle_root, manifest)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as err:
        raise RestoreError(f"cannot read manifest {path}: {err.strerror}") from err
    try:
        data = json.loads(raw)
        layers = data.get("layers") or []
        if not isinstance(layers, list):
            raise TypeError("layers is not a list")
        entries = [data["config"], *layers]
        listed = [(str(entry["digest"]), int(entry["size"])) for entry in entries]
    except (ValueError, KeyError, TypeError) as err:
        raise RestoreError(f"manifest {path} is not an ollama manifest: {err}") from err
    blobs: dict[str, int] = {}
    for digest, size in listed:
        if blobs.setdefault(digest, size) != size:
            raise RestoreError(f"manifest {path} lists blob {digest} with sizes {blobs[digest]} and {size}")
    return raw, list(blobs.items())


def store_manifest_path(models_dir: str, manifest: str) -> str:
    """models/manifests/<host>/<ns>/<model>/<tag> in the bundle → <models_dir>/manifests/<host>/<ns>/<model>/<tag>."""
    parts = manifest.split("/")
    if len(parts) != 6 or parts[:2] != ["models", "manifests"]:
        raise RestoreError(f"manifest path {manifest!r} is not models/manifests/<host>/<ns>/<model>/<tag>")
    return safe_join(models_dir, "/".join(parts[1:]))


def existing_dir(path: str) -> str:
    """The nearest existing directory at or above path (the store may not exist yet)."""
    while not os.path.isdir(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def same_file_system(a: str, b: str) -> bool:
    return os.stat(existing_dir(a)).st_dev == os.stat(existing_dir(b)).st_dev


def free_bytes(path: str) -> int:
    stats = os.statvfs(existing_dir(path))
    return stats.f_bavail * stats.f_frsize


def missing_blobs(models_dir: str, blobs: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Blobs not yet in the store with their declared size."""
    result = []
    for digest, size in blobs:
        try:
            present = os.stat(os.path.join(models_dir, "blobs", blob_name(digest))).st_size == size
        except FileNotFoundError:
            present = False
        if not present:
            result.append((digest, size))
    return result


# -- preflight ---------------------------------------------------------------------------------------------------


def preflight(params: dict) -> dict:
    bundle_root, models_dir = params["bundle_root"], params["models_dir"]
    linkable = params["link"] == "auto" and same_file_system(bundle_root, models_dir)
    free = free_bytes(models_dir)
    counted: set[str] = set()
    total = 0
    report = []
    for model in params["models"] or []:
        name = str(model.get("short") or model.get("name") or "?")
        method = str(model.get("method", "create"))
        if method not in ("create", "restore"):
            raise RestoreError(f"model {name}: unknown method {method!r} (create or restore)")
        _raw, blobs = read_manifest(bundle_root, str(model["manifest"]))
        missing = [(d, s) for d, s in missing_blobs(models_dir, blobs) if d not in counted]
        counted.update(d for d, _ in missing)
        missing_size = sum(size for _, size in missing)
        restore_factor = 0 if linkable else 1
        needed = missing_size * (CREATE_FACTOR if method == "create" else restore_factor)
        total += needed
        report.append({"name": name, "method": method, "needed_bytes": needed, "missing_blobs": len(missing)})
        if total > free:
            raise RestoreError(
                f"not enough disk space to import model {name} ({method}) into {models_dir}: "
                f"needs {total} bytes (with the models before it), {free} bytes free"
            )
    return {"changed": False, "linkable": linkable, "free_bytes": free, "needed_bytes": total, "models": report}


# -- restore -----------------------------------------------------------------------------------------------------


class Store:
    def __init__(self, module: AnsibleModule, models_dir: str, owner: str, group: str) -> None:
        self.module = module
        self.models_dir = models_dir
        self.uid = pwd.getpwnam(owner).pw_uid
        self.gid = grp.getgrnam(group).gr_gid

    def make_dirs(self, path: str) -> None:
        """Create path and missing parents (0755, owner:group); never loosen an existing directory."""
        missing = []
        while not os.path.isdir(path):
            missing.append(path)
            path = os.path.dirname(path)
        for directory in reversed(missing):
            os.mkdir(directory, 0o755)
            os.chmod(directory, 0o755)  # umask-proof
            os.chown(directory, self.uid, self.gid)

    def place_temp(self, target: str, write: Callable[[str], None]) -> None:
        """Write a file next to target through write(temp_path), then rename it into place."""
        fd, temp = tempfile.mkstemp(prefix=".airgap-", dir=os.path.dirname(target))
        os.close(fd)
        try:
            write(temp)
            os.replace(temp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)

    def copy_verified(self, source: str, target: str, digest: str) -> int:
        copied = 0

        def write(temp: str) -> None:
            nonlocal copied
            hasher = hashlib.sha256()
            with open(source, "rb") as src, open(temp, "wb") as out:
                while chunk := src.read(CHUNK):
                    hasher.update(chunk)
                    out.write(chunk)
                    copied += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            if "sha256:" + hasher.hexdigest() != digest:
                raise RestoreError(f"bundle blob {source} does not match its digest {digest}")
            os.chmod(temp, 0o644)
            os.chown(temp, self.uid, self.gid)

        self.place_temp(target, write)
        return copied

    def link(self, source: str, target: str) -> None:
        def write(temp: str) -> None:
            os.unlink(temp)
            os.link(source, temp)

        self.place_temp(target, write)


def linkable_source(source: str) -> bool:
    """A hard link shares the bundle file's inode: only when it is readable by all and writable by no one else."""
    mode = os.stat(source).st_mode
    return bool(mode & 0o004) and not mode & 0o022


def restore(module: AnsibleModule, params: dict) -> dict:
    bundle_root, models_dir = params["bundle_root"], params["models_dir"]
    manifest, expected = params["manifest"], params["manifest_digest"]
    if not manifest:
        raise RestoreError("manifest is required for action=restore")
    raw, blobs = read_manifest(bundle_root, manifest)
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    if expected and digest != expected:
        raise RestoreError(f"bundle manifest {manifest} has digest {digest}, bundle.yaml says {expected}")
    manifest_path = store_manifest_path(models_dir, manifest)
    blobs_dir = os.path.join(models_dir, "blobs")
    linkable = params["link"] == "auto" and same_file_system(bundle_root, models_dir)
    result: dict = {
        "changed": False,
        "manifest_path": manifest_path,
        "digest": digest,
        "linkable": linkable,
        "blobs_linked": [],
        "blobs_copied": [],
        "blobs_present": [],
        "bytes_copied": 0,
    }

    # What is to do (also all that check mode reports).
    todo: list[tuple[str, int, str, str]] = []
    for blob_digest, size in blobs:
        name = blob_name(blob_digest)
        source = safe_join(bundle_root, f"models/blobs/{name}")
        target = os.path.join(blobs_dir, name)
        try:
            source_stat = os.stat(source)
        except FileNotFoundError:
            raise RestoreError(f"bundle blob {source} is missing") from None
        if source_stat.st_size != size:
            raise RestoreError(f"bundle blob {source} has {source_stat.st_size} bytes, manifest says {size}")
        try:
            target_stat = os.stat(target)
        except FileNotFoundError:
            target_stat = None
        if target_stat is not None and target_stat.st_size == size:
            same_inode = (target_stat.st_dev, target_stat.st_ino) == (source_stat.st_dev, source_stat.st_ino)
            # Not the bundle's own inode: hash it (a blob ollama wrote is fine, a damaged one is replaced).
            if same_inode or file_sha256(target) == blob_digest:
                result["blobs_present"].append(blob_digest)
                continue
        todo.append((blob_digest, size, source, target))
    try:
        with open(manifest_path, "rb") as handle:
            current = handle.read()
        before = "sha256:" + hashlib.sha256(current).hexdigest()
    except (FileNotFoundError, NotADirectoryError):
        current, before = None, "(absent)"
    manifest_current = current == raw

    if not todo and manifest_current:
        return result
    result["changed"] = True
    for blob_digest, _size, source, _target in todo:
        kind = "blobs_linked" if linkable and linkable_source(source) else "blobs_copied"
        result[kind].append(blob_digest)
    if module._diff:
        placed = "".join(
            f"{os.path.join(blobs_dir, blob_name(d))} ({'link' if d in result['blobs_linked'] else 'copy'})\n"
            for d, _s, _src, _t in todo
        )
        result["diff"] = {
            "before_header": manifest_path,
            "after_header": manifest_path,
            "before": f"manifest {before}\n",
            "after": f"manifest {digest}\n{placed}",
        }
    if module.check_mode:
        return result

    store = Store(module, models_dir, params["owner"], params["group"])
    placed: list[str] = []
    try:
        store.make_dirs(blobs_dir)
        for blob_digest, _size, source, target in todo:
            if blob_digest in result["blobs_linked"]:
                store.link(source, target)
            else:
                result["bytes_copied"] += store.copy_verified(source, target, blob_digest)
            placed.append(target)
        store.make_dirs(os.path.dirname(manifest_path))

        def write_manifest(temp: str) -> None:
            with open(temp, "wb") as out:
                out.write(raw)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temp, 0o644)
            os.chown(temp, store.uid, store.gid)

        store.place_temp(manifest_path, write_manifest)
    except BaseException:
        # Nothing half-imported: the manifest is written last, so blobs placed here are referenced by nothing new.
        for target in placed:
            with contextlib.suppress(OSError):
                os.unlink(target)
        raise
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "action": {"type": "str", "choices": ["restore", "preflight"], "default": "restore"},
            "bundle_root": {"type": "path", "required": True},
            "models_dir": {"type": "path", "required": True},
            "manifest": {"type": "str"},
            "manifest_digest": {"type": "str"},
            "models": {"type": "list", "elements": "dict"},
            "link": {"type": "str", "choices": ["auto", "never"], "default": "auto"},
            "owner": {"type": "str", "default": "ollama"},
            "group": {"type": "str", "default": "ollama"},
        },
        required_if=[("action", "restore", ["manifest"]), ("action", "preflight", ["models"])],
        supports_check_mode=True,
    )
    params = module.params
    try:
        if not os.path.isdir(params["bundle_root"]):
            raise RestoreError(f"bundle_root {params['bundle_root']} is not a directory")
        result = preflight(params) if params["action"] == "preflight" else restore(module, params)
    except RestoreError as err:
        module.fail_json(msg=str(err))
    except OSError as err:
        name = params.get("manifest") or "models"
        module.fail_json(msg=f"restoring {name} into {params['models_dir']} failed: {err}")
    except KeyError as err:  # pwd/grp lookups
        module.fail_json(msg=f"unknown user or group {err} for the model store")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
