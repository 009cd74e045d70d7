"""testinfra suite: prove a host runs what its bundle and its Ansible variables say, with secure defaults.

    PATH=.venv/bin:$PATH pytest tests/infra --hosts=ansible://ollama_hosts --ansible-inventory=INVENTORY

Expected settings come from the host's Ansible variables (``host.ansible.get_variables()``: inventory, group_vars,
host_vars), then ``--ansible-extra-vars FILE`` (the ``-e @FILE`` given to ansible-playbook), over the roles'
defaults. What to find installed comes from bundle.yaml on the host (under ``bundle_root``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

# The roles beside this suite; the deploy kit points OLLAMA_AIRGAP_ROLES at its installed collection's roles.
ROLES = Path(os.environ.get("OLLAMA_AIRGAP_ROLES") or Path(__file__).resolve().parents[2] / "roles")
DEFAULT_PORT = 11434
# Fallbacks for role defaults that are templates (or when the roles are not next to this suite).
FALLBACKS: dict[str, Any] = {
    "bundle_root": "/var/lib/ollama-airgap/bundle",
    "bundle_state_dir": "/var/lib/ollama-airgap",
    "ollama_host": "127.0.0.1:11434",
    "ollama_origins": [],
    "ollama_origins_allow_any": False,
    "ollama_models_dir": "/usr/share/ollama/.ollama/models",
    "ollama_user": "ollama",
    "ollama_group": "ollama",
    "ollama_home": "/usr/share/ollama",
    "ollama_extra_groups": ["render", "video"],
    "ollama_environment": {},
    "ollama_no_cloud": True,
    "ollama_install_dir": "/usr/local",
    "ollama_models_method": "create",
    "ollama_models_overrides": {},
    "ollama_models_include": [],
    "smoke_test_prompt": "Why is the sky blue? Answer in one sentence.",
    "smoke_test_num_predict": 8,
    "smoke_test_embed_input": "The sky is blue because of Rayleigh scattering.",
}
ROLE_NAMES = ("bundle", "ollama", "ollama_models", "smoke_test")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--ansible-extra-vars",
        action="append",
        default=[],
        metavar="FILE",
        help="YAML vars file given to ansible-playbook with -e @FILE (may be repeated)",
    )


def _templated(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def role_defaults() -> dict[str, Any]:
    """Literal values of the roles' defaults/main.yml (templated ones fall back to FALLBACKS)."""
    merged = dict(FALLBACKS)
    for role in ROLE_NAMES:
        path = ROLES / role / "defaults" / "main.yml"
        if path.exists():
            values = yaml.safe_load(path.read_text()) or {}
            merged.update({key: value for key, value in values.items() if not _templated(value)})
    return merged


def parse_ollama_host(value: str) -> tuple[str, int]:
    """OLLAMA_HOST → (bind address, port), as ollama reads it ("" host = every interface)."""
    text = value.strip()
    port = DEFAULT_PORT
    for scheme, scheme_port in (("http://", 80), ("https://", 443)):
        if text.startswith(scheme):
            text, port = text[len(scheme) :], scheme_port
    text = text.split("/", 1)[0]
    if text.startswith("["):
        address, _, rest = text[1:].partition("]")
        return address, int(rest[1:]) if rest.startswith(":") else port
    if text.count(":") == 1:
        address, _, number = text.partition(":")
        return address, int(number) if number else port
    return text, port


def connect_address(address: str) -> str:
    """Where a client on the host reaches a server bound to address."""
    if address in ("", "0.0.0.0"):
        return "127.0.0.1"
    if address == "::":
        return "[::1]"
    return f"[{address}]" if ":" in address else address


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


_API_SCRIPT = """
import json, sys, urllib.request, urllib.error
method, url, body, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
data = body.encode() if body else None
request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(request, timeout=timeout) as response:
        print(json.dumps({"status": response.status, "body": response.read().decode()}))
except urllib.error.HTTPError as err:
    print(json.dumps({"status": err.code, "body": err.read().decode()}))
"""


@dataclass
class Expected:
    """What this host should look like."""

    settings: dict[str, Any]
    explicit: set[str]  # variable names set by the inventory or extra vars (not role defaults)
    bundle: dict[str, Any]
    records: dict[str, dict[str, Any]]  # import records on the host, by short model name

    def __getitem__(self, name: str) -> Any:
        return self.settings[name]

    @property
    def bind(self) -> tuple[str, int]:
        return parse_ollama_host(str(self["ollama_host"]))

    @property
    def api_url(self) -> str:
        address, port = self.bind
        return f"http://{connect_address(address)}:{port}"

    @property
    def binary(self) -> str:
        return f"{self['ollama_install_dir']}/bin/ollama"

    def models(self) -> list[dict[str, Any]]:
        """Bundle models the deploy imports, each with its import method and ``capabilities`` (bundle.yaml's list;
        ``[completion]`` for bundles built before it was recorded, then ``capabilities_recorded`` is false)."""
        include = self["ollama_models_include"] or []
        chosen = [m for m in self.bundle["models"] if not include or m["short"] in include or m["name"] in include]
        method_set = {"ollama_models_method", "ollama_models_overrides"} & self.explicit
        result = []
        for model in chosen:
            overrides = self["ollama_models_overrides"] or {}
            override = overrides.get(model["short"]) or overrides.get(model["name"]) or {}
            method = override.get("method") or self["ollama_models_method"]
            if not method_set and model["short"] in self.records:
                method = self.records[model["short"]].get("method", method)  # what the deploy recorded
            if model.get("restore_only"):
                method = "restore"  # no Modelfile carries it: the deploy restores it whatever the settings say
            recorded = isinstance(model.get("capabilities"), list)
            capabilities = list(model["capabilities"]) if recorded else ["completion"]
            result.append({**model, "method": method, "capabilities": capabilities, "capabilities_recorded": recorded})
        return result

    def smoke_models(self) -> list[dict[str, Any]]:
        """The models the smoke test tries (smoke_test_models, which defaults to ollama_models_include)."""
        chosen = self["smoke_test_models"] if "smoke_test_models" in self.explicit else self["ollama_models_include"]
        return [m for m in self.models() if not chosen or m["short"] in chosen or m["name"] in chosen]


@pytest.fixture(scope="module")
def expected(host: Any, request: pytest.FixtureRequest) -> Expected:
    settings = role_defaults()
    explicit: dict[str, Any] = {}
    for name, value in host.ansible.get_variables().items():
        if not _templated(value):
            explicit[name] = value
    for path in request.config.getoption("--ansible-extra-vars"):
        explicit.update(yaml.safe_load(Path(path.lstrip("@")).read_text()) or {})
    settings.update(explicit)
    bundle_file = host.file(f"{settings['bundle_root']}/bundle.yaml")
    assert bundle_file.exists, f"no bundle.yaml under bundle_root {settings['bundle_root']}: deploy the bundle first"
    bundle = yaml.safe_load(bundle_file.content_string)
    records: dict[str, dict[str, Any]] = {}
    listing = host.run(f"cat {shlex.quote(settings['bundle_state_dir'])}/models/*.json 2>/dev/null")
    decoder = json.JSONDecoder()
    text, position = listing.stdout, 0
    while (position := _skip_space(text, position)) < len(text):
        record, position = decoder.raw_decode(text, position)
        records[record.get("short", "")] = record
    return Expected(settings, set(explicit), bundle, records)


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


@pytest.fixture(scope="module")
def api(host: Any, expected: Expected) -> Any:
    """api(method, path, body=None) → (status, parsed JSON or text), called on the host itself."""

    def call(method: str, path: str, body: Any = None, timeout: float = 120) -> tuple[int, Any]:
        payload = json.dumps(body) if body is not None else ""
        command = " ".join(
            shlex.quote(part)
            for part in ("python3", "-c", _API_SCRIPT, method, expected.api_url + path, payload, str(timeout))
        )
        result = host.run(command)
        assert result.rc == 0, f"{method} {path} on the host failed: {result.stderr}"
        answer = json.loads(result.stdout)
        try:
            return answer["status"], json.loads(answer["body"])
        except ValueError:
            return answer["status"], answer["body"]

    return call


@pytest.fixture(scope="module")
def unit(host: Any) -> dict[str, str]:
    """`systemctl show ollama` properties."""
    output = host.check_output("systemctl show ollama --no-pager")
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
