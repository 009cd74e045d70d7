"""plugins/modules/airgap_ollama_release.py, run as Ansible runs it (a JSON args file), on release-shaped archives:
install, upgrade keeping the previous release, rollback, pruning beyond `keep`, check mode, adopting an old-style
install, and a broken archive leaving nothing behind."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

MODULE = Path(__file__).resolve().parents[2] / "plugins" / "modules" / "airgap_ollama_release.py"


def archive(bundle: Path, version: str, overlay: str = "") -> dict[str, str]:
    """ollama-linux-amd64[-OVERLAY].tgz with bin/ollama (prints its version) and lib/ollama/ (a symlinked lib)."""
    name = f"ollama-linux-amd64{'-' + overlay if overlay else ''}.tgz"
    path = bundle / version / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:

        def add(member: str, data: bytes = b"", mode: int = 0o644, link: str = "") -> None:
            info = tarfile.TarInfo(member)
            info.mode = mode
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

        if overlay:
            add(f"lib/ollama/{overlay}/libggml-{overlay}.so", f"{overlay} {version}".encode())
        else:
            add("bin/ollama", f"#!/bin/sh\necho 'ollama version is {version}'\n".encode(), 0o755)
            add("lib/ollama/libggml-base.so.0.0.0", f"ggml {version}".encode())
            add("lib/ollama/libggml-base.so", link="libggml-base.so.0.0.0")
    return {"name": name, "path": f"{version}/{name}", "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def run(tmp_path: Path, check: bool = False, **args: Any) -> dict[str, Any]:
    payload = {
        "install_dir": str(tmp_path / "usr"),
        "releases_dir": str(tmp_path / "usr" / "lib" / "ollama-airgap" / "releases"),
        "state_dir": str(tmp_path / "state"),
        "bundle_root": str(tmp_path / "bundle"),
        **args,
        "_ansible_check_mode": check,
        "_ansible_diff": True,
    }
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": payload}))
    proc = subprocess.run(
        [sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, check=False, timeout=60
    )
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def version(tmp_path: Path) -> str:
    return subprocess.run([tmp_path / "usr" / "bin" / "ollama"], capture_output=True, text=True).stdout.strip()


def lib(tmp_path: Path) -> str:
    return (tmp_path / "usr" / "lib" / "ollama" / "libggml-base.so").read_text()


def test_upgrade_keeps_the_previous_release_and_rollback_returns_to_it(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    old, new = [archive(bundle, "0.14.1")], [archive(bundle, "0.35.1"), archive(bundle, "0.35.1", "rocm")]
    first = run(tmp_path, archives=old, version="0.14.1")
    assert first["changed"] and first["installed"] and first["active"]["version"] == "0.14.1", first
    assert version(tmp_path) == "ollama version is 0.14.1" and lib(tmp_path) == "ggml 0.14.1"
    assert os.path.islink(tmp_path / "usr" / "bin" / "ollama") and os.path.islink(tmp_path / "usr" / "lib" / "ollama")
    assert not run(tmp_path, archives=old, version="0.14.1")["changed"]

    planned = run(tmp_path, check=True, archives=new, version="0.35.1")
    assert planned["changed"] and version(tmp_path) == "ollama version is 0.14.1"
    assert "# active release: 0.35.1-" in planned["diff"]["after"] and planned["diff"]["before"].startswith(
        old[0]["sha256"]
    )

    up = run(tmp_path, archives=new, version="0.35.1")
    assert up["changed"] and up["previous"]["id"] == first["active"]["id"], up
    assert version(tmp_path) == "ollama version is 0.35.1"
    assert (tmp_path / "usr" / "lib" / "ollama" / "rocm" / "libggml-rocm.so").read_text() == "rocm 0.35.1"
    marker = (tmp_path / "state" / "ollama-release.sha256").read_text()
    assert marker == "".join(a["sha256"] + "\n" for a in new)
    assert up["releases"] == [first["active"]["id"], up["active"]["id"]]

    back = run(tmp_path, rollback=True)
    assert back["changed"] and back["active"]["id"] == first["active"]["id"], back
    assert version(tmp_path) == "ollama version is 0.14.1" and lib(tmp_path) == "ggml 0.14.1"
    assert not (tmp_path / "usr" / "lib" / "ollama" / "rocm").exists()
    assert not run(tmp_path, rollback=True)["changed"]  # a second rollback stays where it is
    assert len(back["releases"]) == 2  # the newer release is still kept

    forward = run(tmp_path, archives=new, version="0.35.1")
    assert forward["changed"] and not forward["installed"] and version(tmp_path) == "ollama version is 0.35.1"


def test_releases_beyond_keep_are_removed_oldest_first(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    ids = [run(tmp_path, archives=[archive(bundle, v)], version=v)["active"]["id"] for v in ("0.13.5", "0.14.1")]
    third = run(tmp_path, archives=[archive(bundle, "0.35.1")], version="0.35.1")
    assert third["removed"] == [ids[0]] and third["releases"] == [ids[1], third["active"]["id"]]
    assert sorted(os.listdir(tmp_path / "usr" / "lib" / "ollama-airgap" / "releases")) == sorted(third["releases"])
    assert run(tmp_path, archives=[archive(bundle, "0.35.1")], version="0.35.1", keep=1)["failed"]


def test_rollback_without_a_previous_release_is_one_line(tmp_path: Path) -> None:
    run(tmp_path, archives=[archive(tmp_path / "bundle", "0.14.1")], version="0.14.1")
    result = run(tmp_path, rollback=True)
    assert result["failed"] and "\n" not in result["msg"]
    assert result["msg"].startswith("ollama: no previous release to roll back to in ")


def test_an_old_style_install_is_adopted_as_the_previous_release(tmp_path: Path) -> None:
    usr = tmp_path / "usr"
    (usr / "bin").mkdir(parents=True)
    (usr / "lib" / "ollama").mkdir(parents=True)
    (usr / "bin" / "ollama").write_text("#!/bin/sh\necho 'Warning: client version is 0.13.5'\n")
    (usr / "bin" / "ollama").chmod(0o755)
    (usr / "lib" / "ollama" / "libggml-base.so").write_text("ggml 0.13.5")
    up = run(tmp_path, archives=[archive(tmp_path / "bundle", "0.14.1")], version="0.14.1")
    assert up["adopted"].startswith("0.13.5-") and up["previous"] == {"id": up["adopted"], "version": "0.13.5"}, up
    assert version(tmp_path) == "ollama version is 0.14.1"
    back = run(tmp_path, rollback=True)
    assert back["active"]["id"] == up["adopted"] and lib(tmp_path) == "ggml 0.13.5"


def test_a_broken_archive_leaves_the_active_release_and_no_partial(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    good = run(tmp_path, archives=[archive(bundle, "0.14.1")], version="0.14.1")
    broken = archive(bundle, "0.35.1")
    (bundle / broken["path"]).write_bytes(b"not gzip")
    result = run(tmp_path, archives=[broken], version="0.35.1")
    assert result["failed"] and result["msg"].startswith("ollama: unpacking ollama-linux-amd64.tgz failed")
    assert version(tmp_path) == "ollama version is 0.14.1"
    assert os.listdir(tmp_path / "usr" / "lib" / "ollama-airgap" / "releases") == [good["active"]["id"]]
