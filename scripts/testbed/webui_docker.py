"""A real dockerd (Debian's docker.io) on this machine, private to the test: its own data root, exec root and socket,
no iptables or bridge changes (the role's units use the host network). For the open_webui role's docker unit."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/bin/docker"


@dataclass
class Dockerd:
    root: Path
    process: subprocess.Popen[bytes]

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": f"unix://{self.root}/docker.sock"}

    def docker(self, *args: str, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DOCKER, *args], env=self.env, capture_output=True, text=True, check=check, **kwargs)  # type: ignore[call-overload, no-any-return]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        subprocess.run(["umount", "-R", str(self.root / "data")], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def unavailable_reason() -> str | None:
    for binary in (DOCKERD, DOCKER):
        if not Path(binary).exists():
            return f"{binary} missing (apt-get install docker.io; scripts/setup.sh does)"
    return None


def start_dockerd(root: Path, timeout: float = 60) -> Dockerd:
    root.mkdir(parents=True, exist_ok=True)
    argv = [DOCKERD, f"--data-root={root}/data", f"--exec-root={root}/exec", f"--host=unix://{root}/docker.sock",
            f"--pidfile={root}/docker.pid", "--iptables=false", "--ip6tables=false", "--bridge=none"]  # fmt: skip
    with (root / "dockerd.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    daemon = Dockerd(root, process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if daemon.docker("info", check=False).returncode == 0:
            return daemon
        time.sleep(0.5)
    daemon.stop()
    raise RuntimeError(f"dockerd did not start: {(root / 'dockerd.log').read_text()[-3000:]}")


RENDER = """\
- name: Render the open_webui role's docker unit and environment file
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: The role's preflight (engine, image, names)
      ansible.builtin.include_role:
        name: open_webui
        tasks_from: preflight.yml
        public: true
    - name: The role's environment file
      ansible.builtin.include_role:
        name: open_webui
        tasks_from: environment.yml
    - name: The role's docker unit
      ansible.builtin.template:
        src: "{{ repo }}/roles/open_webui/templates/open-webui-docker.service.j2"
        dest: "{{ unit_path }}"
        mode: "0644"
    - name: Stop here (the role's handler would restart a unit this machine does not run)
      ansible.builtin.meta: end_play
"""


def render_unit(work: Path, repo: Path, python: str, variables: dict[str, object]) -> Path:
    """The role's own tasks render the docker unit (open_webui_engine: docker) and its environment file."""
    import yaml

    (work / "render.yml").write_text(RENDER)
    unit = work / "open-webui.service"
    settings = {"ansible_python_interpreter": python, "repo": str(repo), "unit_path": str(unit), **variables}
    (work / "vars.yml").write_text(yaml.safe_dump(settings))
    bin_dir = Path(python).parent
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(repo / "roles"), "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false"}  # fmt: skip
    argv = [
        str(bin_dir / "ansible-playbook"),
        "-i",
        "localhost,",
        str(work / "render.yml"),
        "-e",
        f"@{work / 'vars.yml'}",
    ]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-4000:] + proc.stderr[-2000:])
    return unit


def unit_command(unit: Path, key: str) -> list[str]:
    """The argv of ExecStart= (or another Exec key) of a rendered unit, continuation lines joined."""
    import shlex

    text = unit.read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith(f"{key}="))
    return shlex.split(line.split("=", 1)[1].lstrip("-"))
