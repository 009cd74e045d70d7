#!/usr/bin/python
"""Ansible module: keep ollama releases side by side and switch between them atomically (upgrade and rollback)."""

# Ansible modules keep DOCUMENTATION/EXAMPLES/RETURN ahead of the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
---
module: airgap_ollama_release
short_description: Install an ollama release beside the previous one and switch to it, or roll back
description:
  - Each release (the base archive plus the overlays the host wants) is unpacked once into
    I(releases_dir)/<version>-<id>/ (C(bin/ollama), C(lib/ollama)); the unpacking happens in a hidden staging
    directory that is renamed into place only when complete.
  - C(<install_dir>/bin/ollama) and C(<install_dir>/lib/ollama) are symbolic links to the active release, each
    replaced by a rename (atomic). ollama resolves its own executable through symlinks and finds C(lib/ollama)
    beside it (upstream ml/path.go, LibOllamaPath), so binary and libraries always come from the same release.
  - The previous release stays on disk; C(rollback=true) makes it active again. Releases other than the active and
    the previous one are removed, oldest first, beyond I(keep).
  - A host installed the old way (C(lib/ollama) a real directory, C(bin/ollama) a file) is adopted; both are moved
    into a release directory that becomes the previous release.
  - The model store is never touched. Supports check mode and diff (the release marker file).
options:
  install_dir: {description: Prefix holding bin/ollama and lib/ollama., type: path, default: /usr/local}
  releases_dir: {description: Where releases are kept., type: path, required: true}
  state_dir: {description: Holds the release marker and the release records., type: path, required: true}
  bundle_root: {description: The verified bundle on the host., type: path}
  archives:
    description: The archives of the wanted release in unpack order (base first), each with C(name), C(path)
      (bundle-relative) and C(sha256). Required unless I(rollback).
    type: list
    elements: dict
  version: {description: ollama version of I(archives)., type: str, default: ""}
  rollback: {description: Make the previous release active instead., type: bool, default: false}
  keep: {description: Releases kept on disk (at least the active and the previous one)., type: int, default: 2}
author: ollama-airgap
"""

EXAMPLES = r"""
- name: Install the bundle's release and make it active
  ollama_airgap.deploy.airgap_ollama_release:
    releases_dir: /usr/local/lib/ollama-airgap/releases
    state_dir: /var/lib/ollama-airgap
    bundle_root: /var/lib/ollama-airgap/bundle
    version: "0.35.1"
    archives: [{name: ollama-linux-amd64.tar.zst, path: ollama/ollama-linux-amd64.tar.zst, sha256: "..."}]
"""

RETURN = r"""
active: {description: "The active release: id, version.", returned: always, type: dict}
previous: {description: "The release a rollback returns to (empty when none).", returned: always, type: dict}
releases: {description: Ids of the releases kept on disk, oldest first., returned: always, type: list}
installed: {description: Whether a release was unpacked., returned: always, type: bool}
switched: {description: Whether the active release changed., returned: always, type: bool}
removed: {description: Release ids removed (older than the kept ones)., returned: always, type: list}
adopted: {description: Id of an old-style install moved into a release directory, if any., returned: always, type: str}
"""

import hashlib
import json
import os
import re
import shutil
import tarfile
import time

from ansible.module_utils.basic import AnsibleModule

STATE_FILE = "ollama-releases.json"
MARKER_FILE = "ollama-release.sha256"  # sha256 of each archive of the active release, one a line
RELEASE_INFO = ".airgap-release.json"  # written last inside a complete release directory


def release_id(version: str, marker: str) -> str:
    return f"{version or 'unknown'}-{hashlib.sha256(marker.encode()).hexdigest()[:12]}"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return None


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.airgap-tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _symlink_atomic(target: str, link: str) -> None:
    """Point LINK at TARGET with one rename (a reader sees the old or the new link, never none)."""
    tmp = f"{link}.airgap-tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)


class _NoOwner(tarfile.TarFile):
    """Files belong to whoever unpacks them (GNU tar's --no-same-owner)."""

    def chown(self, tarinfo: tarfile.TarInfo, targetpath: str, numeric_owner: bool) -> None:
        return


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def unpack_tar(path: str, dest: str) -> str:
    """Extract a release tar (plain or gzip) into DEST with Python's tarfile; "" when done, else why not.

    Refused before a byte of them is written: absolute names, "..", devices and fifos, links pointing out of
    DEST, and members below a symlink that leaves DEST. An existing file is replaced, never written through."""
    root = os.path.realpath(dest)
    trusted = {"filter": "fully_trusted"} if hasattr(tarfile, "data_filter") else {}  # checked here instead
    try:
        with _NoOwner.open(path, "r:*") as tar:
            for member in tar:
                name = member.name
                while name.startswith("./"):
                    name = name[2:]
                if name in ("", "."):
                    continue
                parts = name.split("/")
                if name.startswith("/") or ".." in parts:
                    return f"unsafe member name {member.name!r}"
                if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                    return f"{member.name} is a device or special file"
                if member.issym() or member.islnk():
                    base = os.path.dirname(name) if member.issym() else ""
                    link = os.path.normpath(os.path.join(base, member.linkname))
                    if member.linkname.startswith("/") or link == ".." or link.startswith("../"):
                        return f"{member.name} links out of the release ({member.linkname})"
                target = os.path.join(dest, *parts)
                if not _inside(root, os.path.realpath(os.path.dirname(target))):
                    return f"{member.name} lies below a link that leaves the release"
                if not member.isdir() and os.path.lexists(target) and not os.path.isdir(target):
                    os.unlink(target)
                member.name = name
                tar.extract(member, dest, set_attrs=True, **trusted)
    except (OSError, tarfile.TarError, EOFError) as exc:
        return str(exc)[:300]
    return ""


class Releases:
    def __init__(self, module: AnsibleModule) -> None:
        p = module.params
        self.module = module
        self.bin_link = os.path.join(p["install_dir"], "bin", "ollama")
        self.lib_link = os.path.join(p["install_dir"], "lib", "ollama")
        self.releases_dir = p["releases_dir"]
        self.state_path = os.path.join(p["state_dir"], STATE_FILE)
        self.marker_path = os.path.join(p["state_dir"], MARKER_FILE)
        raw = _read(self.state_path)
        try:
            self.state = json.loads(raw) if raw else {}
        except ValueError:
            self.state = {}
        self.state.setdefault("releases", {})  # id -> {version, marker, installed}
        self.state.setdefault("order", [])  # ids, oldest first
        self.state_before = json.dumps(self.state, sort_keys=True)

    def path(self, rid: str) -> str:
        return os.path.join(self.releases_dir, rid)

    def complete(self, rid: str) -> bool:
        return os.path.isfile(os.path.join(self.path(rid), RELEASE_INFO))

    def on_disk_active(self) -> str:
        """The release bin/ollama points into, read from the link itself (the disk wins over the records)."""
        if not os.path.islink(self.bin_link):
            return ""
        target = os.path.realpath(self.bin_link)
        prefix = os.path.realpath(self.releases_dir) + os.sep
        return target[len(prefix) :].split(os.sep, 1)[0] if target.startswith(prefix) else ""

    def record(self, rid: str, version: str, marker: str) -> None:
        self.state["releases"][rid] = {"version": version, "marker": marker, "installed": int(time.time())}
        if rid in self.state["order"]:
            self.state["order"].remove(rid)
        self.state["order"].append(rid)

    def legacy(self) -> bool:
        return (os.path.isdir(self.lib_link) and not os.path.islink(self.lib_link)) or (
            os.path.isfile(self.bin_link) and not os.path.islink(self.bin_link)
        )

    def adopt(self) -> str:
        """Move an install made by unpacking into install_dir (install.sh's way) into a release directory."""
        marker = _read(self.marker_path) or ""
        version = ""
        if os.path.isfile(self.bin_link) and not os.path.islink(self.bin_link):
            # `ollama --version` without a server prints "Warning: client version is X".
            env = {"OLLAMA_HOST": "127.0.0.1:1"}
            _, out, err = self.module.run_command([self.bin_link, "--version"], environ_update=env)
            found = re.search(r"version is (\S+)", out + err)
            version = found.group(1) if found else ""
        rid = release_id(version, marker or "adopted")
        if self.module.check_mode:
            return rid
        dest = self.path(rid)
        os.makedirs(os.path.join(dest, "bin"), exist_ok=True)
        os.makedirs(os.path.join(dest, "lib"), exist_ok=True)
        if os.path.isdir(self.lib_link) and not os.path.islink(self.lib_link):
            shutil.move(self.lib_link, os.path.join(dest, "lib", "ollama"))
        if os.path.isfile(self.bin_link) and not os.path.islink(self.bin_link):
            shutil.move(self.bin_link, os.path.join(dest, "bin", "ollama"))
        _write_atomic(os.path.join(dest, RELEASE_INFO), json.dumps({"version": version, "adopted": True}) + "\n")
        self.record(rid, version, marker)
        return rid

    def unpack(self, rid: str, archives: list[dict], bundle_root: str, version: str, marker: str) -> None:
        staging = os.path.join(self.releases_dir, f".{rid}.partial")
        if os.path.lexists(staging):
            shutil.rmtree(staging)
        os.makedirs(staging, mode=0o755)
        for archive in archives:
            path = os.path.join(bundle_root, archive["path"])
            # In order, base first, symlinks kept (libfoo.so -> libfoo.so.12 -> ...). A plain .tar (what bundle
            # build makes of a .tar.zst) and a .tgz need only Python; a .tar.zst from an older bundle needs zstd.
            error = ""
            if archive["name"].endswith(".zst"):
                argv = ["tar", "--extract", f"--file={path}", f"--directory={staging}", "--no-same-owner", "--zstd"]
                rc, _, err = self.module.run_command(argv)
                error = err.strip()[:300] if rc != 0 else ""
            else:
                error = unpack_tar(path, staging)
            if error:
                shutil.rmtree(staging, ignore_errors=True)
                self.module.fail_json(msg=f"ollama: unpacking {archive['name']} failed: {error}")
        if not os.path.isfile(os.path.join(staging, "bin", "ollama")):
            shutil.rmtree(staging, ignore_errors=True)
            self.module.fail_json(msg=f"ollama: {archives[0]['name']} has no bin/ollama")
        os.makedirs(os.path.join(staging, "lib", "ollama"), exist_ok=True)
        info = {"version": version, "archives": [a["name"] for a in archives], "marker": marker}
        _write_atomic(os.path.join(staging, RELEASE_INFO), json.dumps(info) + "\n")
        if os.path.lexists(self.path(rid)):
            shutil.rmtree(self.path(rid))  # an incomplete leftover (no release info)
        os.rename(staging, self.path(rid))
        self.record(rid, version, marker)

    def activate(self, rid: str) -> None:
        for link in (self.lib_link, self.bin_link):
            os.makedirs(os.path.dirname(link), exist_ok=True)
        # Libraries first: a binary started between the two renames still finds its own release's libraries,
        # since it resolves them through its own (resolved) path.
        _symlink_atomic(os.path.join(self.path(rid), "lib", "ollama"), self.lib_link)
        _symlink_atomic(os.path.join(self.path(rid), "bin", "ollama"), self.bin_link)

    def prune(self, keep: int, protect: set[str]) -> list[str]:
        order = [rid for rid in self.state["order"] if os.path.isdir(self.path(rid))]
        removed = []
        for rid in list(order):
            if len(order) <= keep:
                break
            if rid in protect:
                continue
            if not self.module.check_mode:
                shutil.rmtree(self.path(rid))
            order.remove(rid)
            removed.append(rid)
        self.state["order"] = order
        self.state["releases"] = {rid: self.state["releases"].get(rid, {}) for rid in order}
        return removed


def describe(rel: Releases, rid: str) -> dict:
    info = rel.state["releases"].get(rid, {}) if rid else {}
    return {"id": rid, "version": info.get("version", "")} if rid else {}


def run(module: AnsibleModule) -> dict:
    p = module.params
    rel = Releases(module)
    if p["keep"] < 2:
        module.fail_json(msg="ollama: ollama_releases_keep must be at least 2 (the active and the previous release)")
    marker_before = _read(rel.marker_path) or ""
    active = rel.on_disk_active()
    adopted = ""
    if not active and rel.legacy():
        adopted = rel.adopt()
        active = adopted
    previous = rel.state.get("previous", "")
    installed = False

    if p["rollback"]:
        target = previous if previous and (rel.complete(previous) or previous == adopted) else ""
        if not target:
            kept = ", ".join(r for r in rel.state["order"] if r != active) or "none"
            module.fail_json(
                msg=f"ollama: no previous release to roll back to in {rel.releases_dir} "
                f"(active {active or 'none'}; other releases kept: {kept})"
            )
        marker = rel.state["releases"].get(target, {}).get("marker", "")
    else:
        archives = p["archives"] or []
        if not archives:
            module.fail_json(msg="ollama: no release archives given")
        marker = "".join(f"{a['sha256']}\n" for a in archives)
        target = release_id(p["version"], marker)
        if not rel.complete(target):
            installed = True
            if not module.check_mode:
                os.makedirs(rel.releases_dir, mode=0o755, exist_ok=True)
                rel.unpack(target, archives, p["bundle_root"], p["version"], marker)
            else:
                rel.record(target, p["version"], marker)
        if target != active and active:
            rel.state["previous"] = active

    switched = target != active or not os.path.islink(rel.lib_link)
    if switched and not module.check_mode:
        rel.activate(target)
    rel.state["active"] = target
    removed = rel.prune(p["keep"], {target, rel.state.get("previous", "")})
    state_text = json.dumps(rel.state, sort_keys=True, indent=1) + "\n"
    changed = bool(installed or switched or removed or adopted or marker_before != marker)
    changed = changed or json.dumps(rel.state, sort_keys=True) != rel.state_before
    if changed and not module.check_mode:
        os.makedirs(os.path.dirname(rel.state_path), exist_ok=True)
        _write_atomic(rel.marker_path, marker)
        _write_atomic(rel.state_path, state_text)
    result = {
        "changed": changed,
        "active": describe(rel, target),
        "previous": describe(rel, rel.state.get("previous", "")),
        "releases": list(rel.state["order"]),
        "installed": installed,
        "switched": switched,
        "removed": removed,
        "adopted": adopted,
    }
    if module._diff:
        result["diff"] = {
            "before_header": rel.marker_path,
            "after_header": rel.marker_path,
            "before": f"{marker_before}# active release: {active or 'none'}\n",
            "after": f"{marker}# active release: {target}\n",
        }
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "install_dir": {"type": "path", "default": "/usr/local"},
            "releases_dir": {"type": "path", "required": True},
            "state_dir": {"type": "path", "required": True},
            "bundle_root": {"type": "path"},
            "archives": {"type": "list", "elements": "dict"},
            "version": {"type": "str", "default": ""},
            "rollback": {"type": "bool", "default": False},
            "keep": {"type": "int", "default": 2},
        },
        supports_check_mode=True,
    )
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
