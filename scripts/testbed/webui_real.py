"""The real Open WebUI (testbed.webui_venv) with the open_webui role's environment, in a namespace with no route out.

- The environment file is rendered by the role itself (`include_role: open_webui, tasks_from: environment.yml`
  on localhost, with the role's defaults, the bundle's bundle.yaml and the test's inventory variables) and given to
  the process as its whole environment (`env -i`), plus what the container layout gives the image: DATA_DIR is the
  role's data directory (the image mounts it at /app/backend/data, its DATA_DIR).
- Network: namespace `oatb-webui` with `lo` and one veth to this machine (10.213.9.2/30 <-> 10.213.9.1), no default
  route: anything but loopback and that link fails with ENETUNREACH. Its resolv.conf names 10.213.9.1, so a DNS
  look-up is a visible connection attempt too.
- Recorder: Open WebUI runs under `strace -f -e trace=connect`; every connect() of every thread and child, whatever it
  targets and whether it succeeds, lands in the trace (`connect_targets`).
- ollama: the stand-in serves the bundle's models on 127.0.0.1:11435 inside the namespace; a recording proxy on
  127.0.0.1:11434 (the role's OLLAMA_BASE_URL) logs every request (method, path, JSON body) and forwards it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
import yaml

from testbed import webui_venv

REPO = Path(__file__).resolve().parents[2]
NETNS = "oatb-webui"
VETH_HOST, VETH_NS = "oatb-wv0", "oatb-wv1"
HOST_ADDR, NS_ADDR = "10.213.9.1", "10.213.9.2"
WEBUI_PORT = 8080
OLLAMA_PORT, STANDIN_PORT = 11434, 11435
PLAYBOOK = """\
- name: Render the open_webui role's environment file
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: The role's environment tasks
      ansible.builtin.include_role:
        name: open_webui
        tasks_from: environment.yml
    - name: Stop here (the role's handler would restart a unit this machine does not run)
      ansible.builtin.meta: end_play
"""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def netns_up() -> None:
    """The namespace with lo and a /30 link to this machine, and no default route."""
    netns_down()
    _ip("netns", "add", NETNS)
    _ip("link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_NS, "netns", NETNS)
    _ip("addr", "add", f"{HOST_ADDR}/30", "dev", VETH_HOST)
    _ip("link", "set", VETH_HOST, "up")
    _ip("-n", NETNS, "addr", "add", f"{NS_ADDR}/30", "dev", VETH_NS)
    _ip("-n", NETNS, "link", "set", VETH_NS, "up")
    _ip("-n", NETNS, "link", "set", "lo", "up")
    etc = Path("/etc/netns") / NETNS  # `ip netns exec` bind-mounts these over /etc
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text(f"nameserver {HOST_ADDR}\n")


def netns_down() -> None:
    if NETNS in _ip("netns", "list", check=False).stdout.split():
        _ip("netns", "del", NETNS, check=False)
    _ip("link", "del", VETH_HOST, check=False)
    etc = Path("/etc/netns") / NETNS
    if etc.exists():
        for child in etc.iterdir():
            child.unlink()
        etc.rmdir()


def routes() -> str:
    return _ip("-n", NETNS, "route", "show", "table", "all").stdout


def render_environment(work: Path, bundle_manifest: dict[str, Any], variables: dict[str, Any]) -> Path:
    """Run the role's environment.yml on localhost; returns the environment file it wrote."""
    vars_file = work / "render-vars.yml"
    settings = {"ansible_python_interpreter": sys.executable, "bundle_manifest": bundle_manifest, **variables}
    vars_file.write_text(yaml.safe_dump(settings))
    playbook = work / "render-env.yml"
    playbook.write_text(PLAYBOOK)
    venv_bin = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
    }
    argv = [str(venv_bin / "ansible-playbook"), "-i", "localhost,", str(playbook), "-e", f"@{vars_file}"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"rendering the environment failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    return Path(variables["open_webui_config_dir"]) / "open-webui.env"


def read_env_file(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


# --- the recording proxy (run as `python -m testbed.webui_real proxy LISTEN_PORT UPSTREAM_PORT LOG`) ---


def _proxy_main(listen: int, upstream: int, log_path: Path) -> None:
    log = log_path.open("a", buffering=1)

    class Proxy(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            try:
                parsed: Any = json.loads(body) if body else None
            except ValueError:
                parsed = None
            log.write(json.dumps({"method": self.command, "path": self.path, "body": parsed}) + "\n")
            conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=300)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            conn.request(self.command, self.path, body=body or None, headers=headers)
            reply = conn.getresponse()
            data = reply.read()
            self.send_response(reply.status)
            for name, value in reply.getheaders():
                if name.lower() not in ("transfer-encoding", "content-length", "connection", "date", "server"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            conn.close()

        do_GET = do_POST = do_HEAD = do_DELETE = _forward

    ThreadingHTTPServer(("127.0.0.1", listen), Proxy).serve_forever()


# --- the running application ---

# Every socket address strace prints for the traced calls (connect, and sendto/sendmsg with an address: UDP
# without connect): family, port, IPv4 or IPv6 address.
SOCKADDR = re.compile(
    r"\{sa_family=(?P<family>AF_INET6?)(?:, sin6?_port=htons\((?P<port>\d+)\))?"
    r"(?:, (?:sin_addr=inet_addr\(\"(?P<v4>[^\"]+)\"\)"
    r"|sin6_flowinfo=[^,]*, inet_pton\(AF_INET6, \"(?P<v6>[^\"]+)\"\)))?"
)


def recorder_argv(trace: Path) -> list[str]:
    """strace options of the connection-attempt recorder (whole process tree, one trace file)."""
    return ["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-s", "0", "-o", str(trace)]


def attempts(trace: Path) -> list[tuple[str, str, int]]:
    """(family, address, port) of every IP destination in a recorder trace."""
    text = trace.read_text(errors="replace") if trace.exists() else ""
    return [(m["family"], m["v4"] or m["v6"] or "?", int(m["port"] or 0)) for m in SOCKADDR.finditer(text)]


@dataclass
class RealWebUI:
    work: Path
    env: dict[str, str]
    url: str
    trace: Path
    proxy_log: Path
    standin_log: Path
    webui_log: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ready_after_s: float = 0.0

    def connect_targets(self) -> list[tuple[str, str, int]]:
        """(family, address, port) of every IP connection attempt (connect, sendto/sendmsg) of the process tree."""
        return attempts(self.trace)

    def ollama_requests(self) -> list[dict[str, Any]]:
        lines = self.proxy_log.read_text().splitlines() if self.proxy_log.exists() else []
        return [json.loads(line) for line in lines]

    def stop(self) -> None:
        """End every process by its PID. strace (6.1 has no --kill-on-exit) would detach and leave Open WebUI
        running if it were ended first: its tracees get SIGTERM first, and strace exits after them."""
        for process in reversed(self.processes):
            if process.poll() is not None:
                continue
            children = _children(process.pid)
            for pid in children or [process.pid]:
                _signal(pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                for pid in [*_children(process.pid), process.pid]:
                    _signal(pid, signal.SIGKILL)
                process.wait()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def start(work: Path, env_file: Path, models_dir: Path, standin: Path, timeout: float) -> RealWebUI:
    """Stand-in, proxy and Open WebUI in the namespace; waits for GET /ready (200) at most `timeout` seconds."""
    env = read_env_file(env_file)
    data_dir = Path(env.get("DATA_DIR") or work / "data")
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    url = f"http://{env['HOST']}:{env['PORT']}"
    web = RealWebUI(
        work,
        env,
        url,
        logs / "connect.trace",
        logs / "ollama-requests.jsonl",
        logs / "standin.log",
        logs / "open-webui.log",
    )
    nsexec = ["ip", "netns", "exec", NETNS]
    home = work / "home"
    home.mkdir(exist_ok=True)
    standin_env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "OLLAMA_HOST": f"127.0.0.1:{STANDIN_PORT}",
        "OLLAMA_MODELS": str(models_dir),
    }
    with web.standin_log.open("wb") as out:
        web.processes.append(
            subprocess.Popen(
                [*nsexec, "/usr/bin/python3", str(standin), "serve"],
                env=standin_env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        )
    proxy_argv = [
        sys.executable,
        "-m",
        "testbed.webui_real",
        "proxy",
        str(OLLAMA_PORT),
        str(STANDIN_PORT),
        str(web.proxy_log),
    ]
    proxy_env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    web.processes.append(subprocess.Popen([*nsexec, *proxy_argv], env=proxy_env))
    # Exactly the role's environment file; DATA_DIR is where the container mounts the role's data directory.
    app_env = {
        "PATH": f"{webui_venv.VENV_DIR / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        **env,
        "DATA_DIR": str(data_dir),
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        *nsexec,
        *recorder_argv(web.trace),
        str(webui_venv.open_webui_bin()),
        "serve",
        "--host",
        env["HOST"],
        "--port",
        env["PORT"],
    ]
    started = time.monotonic()
    with web.webui_log.open("wb") as out:
        web.processes.append(subprocess.Popen(argv, env=app_env, cwd=work, stdout=out, stderr=subprocess.STDOUT))
    while time.monotonic() - started < timeout:
        if web.processes[-1].poll() is not None:
            break
        try:
            if requests.get(f"{url}/ready", timeout=3).status_code == 200:
                web.ready_after_s = round(time.monotonic() - started, 1)
                return web
        except requests.RequestException:
            pass
        time.sleep(1)
    web.stop()
    raise RuntimeError(f"Open WebUI not ready after {timeout:.0f} s:\n{web.webui_log.read_text()[-6000:]}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["proxy"]:
        _proxy_main(int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
