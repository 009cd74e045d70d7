"""Open WebUI: the image loaded is the bundle's, the unit runs it with the offline settings, the secret is kept
private, the port is published only where the inventory says, GET /ready answers, and the admin (password from the
0600 file the role generated) signs in and sees exactly the bundle's models through Open WebUI's ollama API.
Skipped on hosts without an open-webui unit (bundles without the image, or hosts where the role was not run)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import Expected

DEFAULTS_FILE = Path(__file__).resolve().parents[2] / "roles" / "open_webui" / "defaults" / "main.yml"
OFFLINE = {
    "OFFLINE_MODE": "true",
    "HF_HUB_OFFLINE": "1",
    "ENABLE_OPENAI_API": "false",
    "ENABLE_PERSISTENT_CONFIG": "false",
}
AUTO_UPDATE_FLAGS = ("RAG_EMBEDDING_MODEL_AUTO_UPDATE", "RAG_RERANKING_MODEL_AUTO_UPDATE", "WHISPER_MODEL_AUTO_UPDATE")


@pytest.fixture(scope="module")
def webui(host: Any, expected: Expected) -> dict[str, Any]:
    """The role's settings for this host (role defaults under the inventory / extra vars)."""
    settings: dict[str, Any] = {
        key: value
        for key, value in (yaml.safe_load(DEFAULTS_FILE.read_text()) if DEFAULTS_FILE.exists() else {}).items()
        if not (isinstance(value, str) and "{{" in value)
    }
    settings.update({k: v for k, v in expected.settings.items() if k.startswith("open_webui_")})
    settings.setdefault("open_webui_service_name", "open-webui")
    unit = settings["open_webui_service_name"]
    if host.run(f"systemctl cat {shlex.quote(unit)}.service").rc != 0:
        pytest.skip(f"no {unit} unit on this host")
    images = [i for i in expected.bundle.get("images") or [] if i.get("name") == settings["open_webui_image_name"]]
    assert images, f"the {unit} unit exists but the bundle has no {settings['open_webui_image_name']} image"
    settings["image"] = images[0]
    settings["engine"] = "podman" if host.exists("podman") else "docker"
    return settings


def _env_file(host: Any, webui: dict[str, Any]) -> dict[str, str]:
    content = host.file(f"{webui['open_webui_config_dir']}/open-webui.env").content_string
    return dict(line.split("=", 1) for line in content.splitlines() if "=" in line and not line.startswith("#"))


def test_unit_enabled_active_and_restarting(host: Any, webui: dict[str, Any]) -> None:
    service = host.service(webui["open_webui_service_name"])
    assert service.is_running and service.is_enabled
    restart = host.run(f"systemctl show -p Restart --value {webui['open_webui_service_name']}").stdout.strip()
    assert restart == "on-failure"


def test_running_image_is_the_bundles(host: Any, webui: dict[str, Any]) -> None:
    global_args = " ".join(shlex.quote(a) for a in webui.get("open_webui_podman_global_args") or [])
    engine = f"{webui['engine']} {global_args}" if webui["engine"] == "podman" else webui["engine"]
    out = host.run(f"{engine} inspect --format '{{{{.Image}}}}' {shlex.quote(webui['open_webui_container_name'])}")
    assert out.rc == 0, out.stderr
    assert out.stdout.strip().removeprefix("sha256:") == webui["image"]["image_id"].removeprefix("sha256:")


def test_secret_and_environment_are_private(host: Any, webui: dict[str, Any]) -> None:
    config_dir = webui["open_webui_config_dir"]
    for name in ("secret_key", "admin_password", "open-webui.env"):
        path = host.file(f"{config_dir}/{name}")
        assert path.exists and path.user == "root" and path.mode == 0o600, f"{path.path} must be 0600 root"
    secret = host.file(f"{config_dir}/secret_key").content_string.strip()
    assert len(secret) >= 32
    env = _env_file(host, webui)
    assert env["WEBUI_SECRET_KEY"] == secret
    assert env["WEBUI_ADMIN_PASSWORD"] == host.file(f"{config_dir}/admin_password").content_string.strip()
    assert env.get("ENABLE_SIGNUP") == "false" or webui.get("open_webui_enable_signup")


def test_offline_settings(host: Any, webui: dict[str, Any]) -> None:
    env = _env_file(host, webui)
    for name, value in OFFLINE.items():
        assert env.get(name) == value, f"{name} should be {value}"
    for name in AUTO_UPDATE_FLAGS:
        assert env.get(name) == "false", f"{name} should be false (no downloads offline)"
    assert env.get("OLLAMA_BASE_URL", "").startswith("http")
    assert env.get("ENABLE_PIP_INSTALL_FRONTMATTER_REQUIREMENTS") == "false"


def _url(webui: dict[str, Any]) -> str:
    bind, port = webui["open_webui_bind_address"], int(webui["open_webui_port"])
    return f"http://{'127.0.0.1' if bind in ('0.0.0.0', '::') else bind}:{port}"


def test_ready_and_bind_address(host: Any, webui: dict[str, Any]) -> None:
    """GET /ready: 200 once Open WebUI has started and its database answers (/health is static)."""
    bind, port = webui["open_webui_bind_address"], int(webui["open_webui_port"])
    answer = host.run(f"curl -s --max-time 5 -o /dev/null -w '%{{http_code}}' {_url(webui)}/ready")
    assert answer.rc == 0 and answer.stdout.strip() == "200", answer.stdout
    listening = host.run(f"ss -Hltn 'sport = :{port}'").stdout
    assert f"{bind}:{port}" in listening or (bind == "::" and f"[::]:{port}" in listening)
    if bind not in ("0.0.0.0", "::"):
        assert f"0.0.0.0:{port}" not in listening, f"port {port} is published on every interface"


def test_admin_lists_the_bundles_models(host: Any, webui: dict[str, Any], expected: Expected) -> None:
    """Sign in as the role's admin (POST /api/v1/auths/signin), then GET /ollama/api/tags with the token."""
    password = host.file(f"{webui['open_webui_config_dir']}/admin_password").content_string.strip()
    email = _env_file(host, webui)["WEBUI_ADMIN_EMAIL"]
    signin = host.run(
        f"curl -s --max-time 30 -H 'Content-Type: application/json' --data-binary @- {_url(webui)}/api/v1/auths/signin "
        f"<<'EOF'\n{json.dumps({'email': email, 'password': password})}\nEOF"
    )
    assert signin.rc == 0, signin.stderr
    token = json.loads(signin.stdout)["token"]
    tags = host.run(f"curl -s --max-time 30 -H 'Authorization: Bearer {token}' {_url(webui)}/ollama/api/tags")
    assert tags.rc == 0, tags.stderr
    names = sorted(m["name"] for m in json.loads(tags.stdout)["models"])
    assert names == sorted(m["short"] for m in expected.bundle.get("models") or [])


def test_data_directory(host: Any, webui: dict[str, Any]) -> None:
    data = host.file(webui["open_webui_data_dir"])
    assert data.is_directory and data.user == "root" and data.mode & 0o077 == 0


def test_container_is_confined(host: Any, webui: dict[str, Any]) -> None:
    """Hardening (issue 16; docs/hardening.md), as the kernel sees the container's main process: no capabilities
    (unless given back), no_new_privs, a seccomp filter, a read-only root; the unit itself has NoNewPrivileges."""
    global_args = " ".join(shlex.quote(a) for a in webui.get("open_webui_podman_global_args") or [])
    engine = f"{webui['engine']} {global_args}" if webui["engine"] == "podman" else webui["engine"]
    out = host.run(f"{engine} inspect --format '{{{{.State.Pid}}}}' {shlex.quote(webui['open_webui_container_name'])}")
    assert out.rc == 0, out.stderr
    pid = int(out.stdout.strip())
    status = dict(
        line.split(":", 1) for line in host.file(f"/proc/{pid}/status").content_string.splitlines() if ":" in line
    )
    if not webui.get("open_webui_cap_add"):
        assert int(status["CapEff"].strip(), 16) == 0 and int(status["CapBnd"].strip(), 16) == 0, status["CapBnd"]
    assert status["NoNewPrivs"].strip() == "1" and status["Seccomp"].strip() == "2"
    if webui.get("open_webui_read_only", True):
        root = next(line for line in host.file(f"/proc/{pid}/mountinfo").content_string.splitlines()
                    if line.split()[4] == "/")  # fmt: skip
        assert "ro" in root.split()[5].split(","), f"container root is writable: {root}"
    unit = webui["open_webui_service_name"]
    assert host.run(f"systemctl show -p NoNewPrivileges --value {unit}").stdout.strip() == "yes"
