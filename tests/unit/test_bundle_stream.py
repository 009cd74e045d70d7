"""The streamed push (plugins/action/airgap_bundle_stream.py and its module_utils): the host-side receiver fed the
control node's tar stream in-process, then the action itself through ansible-playbook on a local connection."""

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

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / ".ansible" / "collections"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ansible_collections.ollama_airgap.deploy.plugins.module_utils import (  # noqa: E402
    airgap_bundle_receive as receiver,
)
from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_checks import (  # noqa: E402
    BundleError,
    expected_files,
)
from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_select import select  # noqa: E402
from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_send import (  # noqa: E402
    member_header,
    open_source,
    send_members,
)
from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_staging import (  # noqa: E402
    journal_path as staging_journal,
)
from stream_bundle import write_bundle  # noqa: E402

AMD64 = {"machine": "x86_64", "kfd": False, "tegra": ""}


@pytest.fixture
def bundle(tmp_path: Path) -> tuple[Path, dict[str, Any], str]:
    archive, document, manifest = write_bundle(tmp_path / "b.tar")
    return archive, document, hashlib.sha256(manifest).hexdigest()


def stream_of(archive: Path, document: dict[str, Any], send: list[tuple[str, int]]) -> bytes:
    """The bytes the control node writes into ssh for these (path, offset) members."""
    listed = expected_files(document["files"])
    read, write = os.pipe()
    source = open_source(str(archive), listed, None)
    out = bytearray()
    pid = os.fork()
    if pid == 0:  # the writer, as the action plugin writes into ssh's stdin
        os.close(read)
        send_members(write, source, send, listed)
        os._exit(0)
    os.close(write)
    while chunk := os.read(read, 1 << 20):
        out += chunk
    os.close(read)
    os.waitpid(pid, 0)
    return bytes(out)


def params(tmp_path: Path, document: dict[str, Any], digest: str, needed: list[str], **extra: Any) -> dict[str, Any]:
    dest = str(tmp_path / "host" / "bundle")
    return {"mode": "receive", "dest": dest, "state_dir": str(tmp_path / "host" / "state"), "digest": digest,
            "files": document["files"], "needed": needed, "sums_sha256": document["sha256sums_sha256"],
            "staging": receiver.staging_path(dest, digest), **extra}  # fmt: skip


def test_subset_is_the_hosts_architecture_models_and_images(bundle: tuple[Path, dict[str, Any], str]) -> None:
    _, document, _ = bundle
    paths = [f["path"] for f in document["files"]]
    chosen = select(document, paths, AMD64, {"models_include": ["beta:latest"], "images": False})
    left = chosen["left_out"]
    assert "ollama/0.35.1/ollama-linux-arm64.tgz" in left and "ollama/0.35.1/ollama-linux-amd64-rocm.tar" in left
    assert "ollama/0.35.1/ollama-linux-amd64.tar" in chosen["needed"]
    beta = next(m for m in document["models"] if m["short"] == "beta:latest")
    shared = "models/blobs/" + beta["blobs"][1].replace(":", "-")
    assert shared in chosen["needed"] and beta["manifest"] in chosen["needed"]  # shared with excluded models: sent
    assert "images/open-webui_v1.docker.tar" in left
    assert chosen["selection"]["models"] == ["beta:latest"] and chosen["selection"]["architecture"] == "amd64"
    rocm = select(document, paths, {**AMD64, "kfd": True}, {})
    assert "ollama/0.35.1/ollama-linux-amd64-rocm.tar" in rocm["needed"] and len(rocm["needed"]) == len(paths) - 1
    arm = select(document, paths, {"machine": "aarch64"}, {})
    assert "ollama/0.35.1/ollama-linux-amd64.tar" in arm["left_out"]
    kit = select({**document, "deploy_kit": {"python": ["3.11"]}}, [*paths, "deploy", "kit/kit.json"], AMD64, {})
    assert {"deploy", "kit/kit.json"} <= set(kit["left_out"]) and "deploy" not in kit["needed"]


def test_receive_verifies_swaps_and_records_the_subset(
    bundle: tuple[Path, dict[str, Any], str], tmp_path: Path
) -> None:
    archive, document, digest = bundle
    needed = [f["path"] for f in document["files"] if not f["path"].startswith("images/")]
    p = params(tmp_path, document, digest, needed, subset={"images": False})
    result = receiver.receive(io.BufferedReader(io.BytesIO(stream_of(archive, document, [(n, 0) for n in needed]))), p)
    assert result["files"] == len(needed) and result["received_bytes"] == sum(
        f["size"] for f in document["files"] if f["path"] in needed
    )
    dest = Path(p["dest"])
    assert not (dest / "images").exists() and (dest / "bundle.yaml").is_file()
    record = json.loads(Path(result["record"]).read_text())
    assert record["subset"] == {"images": False} and len(record["files"]) == len(needed) + 2
    assert not Path(p["staging"]).exists() and not Path(staging_journal(p["staging"])).exists()
    probe = receiver.probe({**p, "mode": "probe"})
    assert probe["current"] and set(needed) <= set(probe["recorded_paths"]) and probe["machine"] == os.uname().machine


def test_broken_stream_resumes_with_only_the_rest(bundle: tuple[Path, dict[str, Any], str], tmp_path: Path) -> None:
    archive, document, digest = bundle
    needed = [f["path"] for f in document["files"]]
    sizes = {f["path"]: f["size"] for f in document["files"]}
    big = max(needed, key=lambda n: sizes[n])
    order = [big, *[n for n in needed if n != big]]  # the big member first, so the cut falls inside it
    full = stream_of(archive, document, [(n, 0) for n in order])
    cut = len(full) // 2
    p = params(tmp_path, document, digest, needed)
    with pytest.raises(BundleError, match=f"{big}: the stream ended after"):
        receiver.receive(io.BufferedReader(io.BytesIO(full[:cut])), p)
    assert not Path(p["dest"]).exists()
    probe = receiver.probe({**p, "mode": "probe"})
    have = probe["partial"][big]
    assert 0 < have < sizes[big] and not probe["current"]
    rest = [(big, have), *[(n, 0) for n in order[1:]]]
    result = receiver.receive(
        io.BufferedReader(io.BytesIO(stream_of(archive, document, rest))), {**p, "resume": {big: have}}
    )
    assert result["received_bytes"] == sum(sizes.values()) - have
    assert (Path(p["dest"]) / big).stat().st_size == sizes[big]


def test_corrupt_member_is_named_and_dropped(bundle: tuple[Path, dict[str, Any], str], tmp_path: Path) -> None:
    archive, document, digest = bundle
    needed = [f["path"] for f in document["files"]]
    data = bytearray(stream_of(archive, document, [(n, 0) for n in needed]))
    victim = needed[-1]
    at = data.index(member_header(victim, next(f["size"] for f in document["files"] if f["path"] == victim), 1)[:100])
    data[at + 512 + 3] ^= 0xFF
    p = params(tmp_path, document, digest, needed)
    with pytest.raises(BundleError, match=f"^{victim} is altered \\(sha256 [0-9a-f]{{64}}, expected"):
        receiver.receive(io.BufferedReader(io.BytesIO(bytes(data))), p)
    assert not (Path(p["staging"]) / victim).exists() and not Path(p["dest"]).exists()


def test_hostile_member_is_refused_before_a_byte_is_written(
    bundle: tuple[Path, dict[str, Any], str], tmp_path: Path
) -> None:
    archive, document, digest = bundle
    listed = expected_files(document["files"])
    source = open_source(str(archive), listed, None)
    escape = tarfile.TarInfo("../../escaped")
    escape.size = 4
    meta = b"".join(
        member_header(name, len(data), 1) + data + bytes(-len(data) % 512)
        for name, data in ((n, source.meta[n]) for n in ("bundle.yaml", "SHA256SUMS"))
    )
    stream = meta + escape.tobuf(tarfile.PAX_FORMAT) + b"evil".ljust(512, b"\0") + bytes(1024)
    p = params(tmp_path, document, digest, list(listed))
    with pytest.raises(BundleError, match="path escapes the bundle"):
        receiver.receive(io.BufferedReader(io.BytesIO(stream)), p)
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "host" / "escaped").exists()


def playbook(tmp_path: Path, archive: Path, document: dict[str, Any], digest: str, *extra: str) -> dict[str, Any]:
    """Run the action once on a local connection; its result."""
    (tmp_path / "vars.json").write_text(json.dumps({"manifest": document, "digest": digest}))
    host = tmp_path / "host"
    stream = {"src": str(archive), "dest": str(host / "bundle"), "state_dir": str(host / "state"),
              "manifest": "{{ manifest }}", "manifest_sha256": "{{ digest }}", "select": {"images": False}}  # fmt: skip
    keep = {"content": "{{ r | to_json }}", "dest": str(tmp_path / "result.json"), "mode": "0600"}
    tasks = [{"name": "Stream", "register": "r", "ollama_airgap.deploy.airgap_bundle_stream": stream},
             {"name": "Keep", "ansible.builtin.copy": keep, "check_mode": False}]  # fmt: skip
    play = {"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": tasks,
            "vars_files": [str(tmp_path / "vars.json")]}  # fmt: skip
    (tmp_path / "play.yml").write_text(yaml.safe_dump([play]))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    argv = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,", str(tmp_path / "play.yml"),
            "-e", f"ansible_python_interpreter={sys.executable}"]  # fmt: skip
    proc = subprocess.run([*argv, *extra], cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return dict(json.loads((tmp_path / "result.json").read_text()))


def test_action_check_mode_sends_nothing_then_streams_then_changes_nothing(
    bundle: tuple[Path, dict[str, Any], str], tmp_path: Path
) -> None:
    archive, document, digest = bundle
    checked = playbook(tmp_path, archive, document, digest, "--check", "--diff")
    assert checked["changed"] and checked["sent_bytes"] == 0 and checked["would_send_bytes"] > 0
    assert "would send" in checked["msg"] and not (tmp_path / "host" / "bundle").exists()
    first = playbook(tmp_path, archive, document, digest)
    assert first["changed"] and first["sent_bytes"] == checked["would_send_bytes"] == first["received_bytes"]
    assert first["subset"]["images"] is False and "images/open-webui_v1.docker.tar" in first["left_out"]
    again = playbook(tmp_path, archive, document, digest)
    assert not again["changed"] and again["sent_bytes"] == 0 and again["hashed_bytes"] == 0


def test_subset_tree_verified_in_place_names_a_rotten_file(
    bundle: tuple[Path, dict[str, Any], str], tmp_path: Path
) -> None:
    """airgap_bundle (bundle_remote_src, the tree as its own source) checks the part the record says the host got."""
    archive, document, digest = bundle
    needed = [f["path"] for f in document["files"] if not f["path"].startswith("images/")]
    p = params(tmp_path, document, digest, needed, subset={"images": False})
    receiver.receive(io.BufferedReader(io.BytesIO(stream_of(archive, document, [(n, 0) for n in needed]))), p)
    blob = max(needed, key=lambda n: next(f["size"] for f in document["files"] if f["path"] == n))
    with open(Path(p["dest"]) / blob, "r+b") as handle:
        handle.seek(100)
        handle.write(b"\0")
    args = {"state": "present", "src": p["dest"], "dest": p["dest"], "state_dir": p["state_dir"],
            "manifest_sha256": digest, "files": document["files"],
            "sums_sha256": document["sha256sums_sha256"]}  # fmt: skip
    (tmp_path / "args.json").write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = {**os.environ, "PYTHONPATH": str(REPO / ".ansible" / "collections")}
    module = REPO / "plugins" / "modules" / "airgap_bundle.py"
    proc = subprocess.run([sys.executable, str(module), str(tmp_path / "args.json")], capture_output=True, text=True,
                          env=env, check=False)  # fmt: skip
    assert f"{blob} is altered (sha256 " in json.loads(proc.stdout)["msg"], proc.stdout
