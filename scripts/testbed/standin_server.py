"""Run the ollama stand-in's `serve` on this machine (for tests that need an ollama API without a host)."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import time
import zipapp
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import requests

STANDIN_PACKAGE = Path(__file__).with_name("ollama_standin")
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
ZIP_MAIN = "import sys\n\nfrom ollama_standin.cli import main\n\nsys.exit(main())\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def zipapp_bytes(version: str) -> bytes:
    """The stand-in as one executable zipapp (`#!/usr/bin/env python3`), its version baked in as `_version.py`.

    Reproducible: members sorted, fixed timestamps, so equal versions give equal bytes.
    """
    if not re.fullmatch(r"[0-9A-Za-z.+~-]+", version):
        raise ValueError(f"invalid version {version!r}")
    members = {"__main__.py": ZIP_MAIN, "ollama_standin/_version.py": f'VERSION = "{version}"\n'}
    for source in sorted(STANDIN_PACKAGE.iterdir()):
        if source.suffix in (".py", ".md") and source.name != "_version.py":
            members[f"ollama_standin/{source.name}"] = source.read_text(encoding="utf-8")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            bundle.writestr(info, members[name])
    archive.seek(0)
    target = io.BytesIO()
    zipapp.create_archive(archive, target, interpreter="/usr/bin/env python3")
    return target.getvalue()


def write_standin(path: Path, version: str) -> Path:
    """The stand-in as a release carries it: `bin/ollama`, a zipapp with its version baked in (mode 0755)."""
    path.write_bytes(zipapp_bytes(version))
    path.chmod(0o755)
    return path


@dataclass
class Standin:
    host: str
    models: Path
    env: dict[str, str]
    log: Path
    script: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def client(self):  # type: ignore[no-untyped-def]
        import ollama

        return ollama.Client(host=self.url)

    def cli(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["/usr/bin/python3", str(self.script), *args],
            env=self.env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def stop(self) -> None:
        """End the server by its PID."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_standin(script: Path, models: Path, home: Path, log: Path, **extra_env: str) -> Standin:
    """Start `ollama serve` on a free loopback port and wait until `GET /` answers."""
    host = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")}
    env.update({"OLLAMA_HOST": host, "OLLAMA_MODELS": str(models), "HOME": str(home)}, **extra_env)
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            ["/usr/bin/python3", str(script), "serve"], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    server = Standin(host=host, models=models, env={**env, "PYTHONPATH": ""}, log=log, script=script, process=process)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://{host}/", timeout=1).text == "Ollama is running":
                return server
        except requests.ConnectionError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"stand-in did not start: {log.read_text()}")
