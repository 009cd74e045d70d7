"""plugins/action/airgap_bundle.py: state=inspected on a local connection reads bundle.yaml in the controller's own
process (no module start per host) and answers what the module answers; any other state still runs the module."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stream_bundle import write_bundle  # noqa: E402

MODULE = REPO / "plugins" / "modules" / "airgap_bundle.py"


def play(
    tmp_path: Path, tasks_args: list[dict[str, Any]], python: str, env: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Each args dict as one airgap_bundle task on localhost (connection local, modules run by ``python``); their
    registered results, written out by a second play with a working Python."""
    tasks = [{"name": f"t{i}", "ollama_airgap.deploy.airgap_bundle": args, "register": f"r{i}", "ignore_errors": True}
             for i, args in enumerate(tasks_args)]  # fmt: skip
    results = "{{ [" + ", ".join(f"r{i}" for i in range(len(tasks_args))) + "] | to_json }}"
    keep = {"name": "Keep", "ansible.builtin.copy": {"content": results, "dest": str(tmp_path / "results.json"),
            "mode": "0600"}}  # fmt: skip
    base = {"hosts": "localhost", "connection": "local", "gather_facts": False}
    document = [{**base, "vars": {"ansible_python_interpreter": python}, "tasks": tasks},
                {**base, "vars": {"ansible_python_interpreter": sys.executable}, "tasks": [keep]}]  # fmt: skip
    (tmp_path / "play.yml").write_text(yaml.safe_dump(document))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", **(env or {})}
    argv = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,", str(tmp_path / "play.yml")]
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return list(json.loads((tmp_path / "results.json").read_text()))


def module_answer(tmp_path: Path, args: dict[str, Any]) -> dict[str, Any]:
    (tmp_path / "args.json").write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = {**os.environ, "PYTHONPATH": str(REPO / ".ansible" / "collections")}
    proc = subprocess.run([sys.executable, str(MODULE), str(tmp_path / "args.json")], capture_output=True, text=True,
                          env=env, check=False)  # fmt: skip
    return dict(json.loads(proc.stdout))


def test_inspected_in_process_answers_as_the_module(tmp_path: Path) -> None:
    archive, _, manifest = write_bundle(tmp_path / "b.tar")
    digest = hashlib.sha256(manifest).hexdigest()
    missing = tmp_path / "nowhere.tar"
    wanted = [
        {"state": "inspected", "src": str(archive)},
        {"state": "inspected", "src": str(archive), "manifest_sha256": "0" * 64},
        {"state": "inspected", "src": str(missing)},
        {"state": "inspected", "src": str(archive), "manifest_sha256": "NOT-HEX"},
        {"state": "query", "dest": str(tmp_path / "root"), "manifest_sha256": digest, "state_dir": str(tmp_path)},
    ]
    # With /bin/false as the modules' Python no module can start: only the in-process reads succeed.
    inspected, wrong, absent, bad, query = play(tmp_path, wanted, "/bin/false")
    assert not inspected.get("failed"), inspected
    assert (inspected["digest"], inspected["kind"], inspected["size"]) == (digest, "archive", archive.stat().st_size)
    assert inspected["manifest_text"] == manifest.decode()
    alone = module_answer(tmp_path, wanted[0])
    assert {k: alone[k] for k in ("digest", "kind", "size", "manifest_text")} == {
        k: inspected[k] for k in ("digest", "kind", "size", "manifest_text")
    }
    assert wrong["failed"] and "bundle.yaml is not the expected bundle" in wrong["msg"]
    assert wrong["msg"] == module_answer(tmp_path, wanted[1])["msg"]
    assert absent["failed"] and absent["msg"] == f"{missing}: cannot read it (No such file or directory)"
    assert absent["msg"] == module_answer(tmp_path, wanted[2])["msg"]
    assert bad["failed"] and "\n" not in bad["msg"] and bad["msg"] == module_answer(tmp_path, wanted[3])["msg"]
    assert query["failed"] and "current" not in query, "state=query must run the module on its host"
    # Without pipelining the module is copied into a remote tmp directory: nothing of it may stay behind.
    remote_tmp = tmp_path / "remote-tmp"
    (after,) = play(tmp_path, wanted[-1:], sys.executable, {"ANSIBLE_PIPELINING": "False",
                                                            "ANSIBLE_REMOTE_TMP": str(remote_tmp)})  # fmt: skip
    assert after["current"] is False and not after.get("failed")
    assert remote_tmp.is_dir() and not any(remote_tmp.iterdir()), "the module's tmp directory was left behind"
