"""Helpers shared by the deploy tests: a bundle's bundle.yaml, and ollama's API called on a test host."""

from __future__ import annotations

import json
import shlex
import tarfile
from pathlib import Path
from typing import Any

import yaml

from testbed.hosts import Host


def bundle_yaml(archive: Path) -> dict[str, Any]:
    with tarfile.open(archive) as tar:
        member = tar.extractfile("bundle.yaml")
        assert member is not None
        return yaml.safe_load(member.read())


def api(host: Host, path: str, body: dict[str, Any] | None = None) -> Any:
    data = f"-d {shlex.quote(json.dumps(body))}" if body is not None else ""
    return json.loads(host.ssh(f"curl -sf --max-time 60 {data} http://127.0.0.1:11434{path}").stdout)
