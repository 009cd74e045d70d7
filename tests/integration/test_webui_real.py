"""The real Open WebUI (open-webui==0.12.4 from PyPI), configured only by the open_webui role, inside the air gap.

The application runs from a cached venv (testbed.webui_venv: why not an image, and its figures), with the environment
file that the role's own tasks render (roles/open_webui/tasks/environment.yml) for a bundle built by the real
`bundle build` (chat models + nomic-embed-text), in a network namespace with no route out, under a connect()
recorder (testbed.webui_real). ollama is the stand-in serving the bundle's models directory, behind a recording proxy.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml

from testbed import config, webui_real, webui_venv
from testbed.mirrors import Mirrors
from testbed.standin_server import write_standin

pytestmark = pytest.mark.hosts

REPO = Path(__file__).resolve().parents[2]
DEFAULTS = yaml.safe_load((REPO / "roles" / "open_webui" / "defaults" / "main.yml").read_text())
CHAT_MODEL = "tinyllama:latest"
EMBED_MODEL = "nomic-embed-text:latest"
DOCUMENT = (
    "Field notes of the Halvorsen expedition.\n"
    "The expedition's base camp was set up at the Quillfjord glacier on 14 March.\n"
    "The radio operator was named Ingrid Solbakken and the cook was named Arvid Lunde.\n"
)


@pytest.fixture(scope="session")
def webui_venv_build(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One venv for every test (built once under the test bed cache; CI's first run pays for it)."""
    log = tmp_path_factory.mktemp("webui-venv") / "build.log"
    info = webui_venv.ensure_venv(log)
    print(f"\n[webui] venv {'cached' if info['cached'] else 'built'}: {json.dumps(info)}")
    return info


@pytest.fixture(scope="module")
def real_bundle(mirrors: Mirrors, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle with chat models and the embedding model, built by the real `bundle build`, unpacked."""
    tmp = tmp_path_factory.mktemp("webui-real-bundle")
    spec = {
        "name": "webui-real",
        "ollama": {"version": config.OLLAMA_VERSION_ZST, "architectures": ["amd64"]},
        "models": [CHAT_MODEL, "tinyqwen:0.5b", EMBED_MODEL],
    }
    (tmp / "spec.yaml").write_text(yaml.safe_dump(spec))
    github = urlsplit(mirrors.release_base_url)
    argv = [
        str(Path(sys.executable).parent / "bundle"),
        "build",
        str(tmp / "spec.yaml"),
        "--cache",
        str(tmp / "cache"),
        "-o",
        str(tmp / "bundle.tar"),
        "-q",
        "--mirror",
        f"registry.ollama.ai={mirrors.registry_url}",
        "--mirror",
        f"github.com={github.scheme}://{github.netloc}",
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    root = tmp / "bundle"
    with tarfile.open(tmp / "bundle.tar") as tar:
        tar.extractall(root, filter="data")
    return root


@pytest.fixture(scope="module")
def real_webui(
    webui_venv_build: dict[str, Any], real_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[webui_real.RealWebUI]:
    work = tmp_path_factory.mktemp("webui-real")
    manifest = yaml.safe_load((real_bundle / "bundle.yaml").read_text())
    # Inventory variables of this "host": the namespace's address (the test reaches it over the veth), the data and
    # configuration directories under the test's folder. Everything else is the role's defaults.
    variables = {
        "open_webui_config_dir": str(work / "etc"),
        "open_webui_data_dir": str(work / "data"),
        "open_webui_bind_address": webui_real.NS_ADDR,
        "open_webui_port": webui_real.WEBUI_PORT,
    }
    env_file = webui_real.render_environment(work, manifest, variables)
    standin = write_standin(work / "ollama", config.OLLAMA_VERSION_ZST)
    webui_real.netns_up()
    web = None
    try:
        timeout = float(DEFAULTS["open_webui_start_timeout"])
        web = webui_real.start(work, env_file, real_bundle / "models", standin, timeout)
        print(f"\n[webui] /ready after {web.ready_after_s} s")
        yield web
    finally:
        if web is not None:
            web.stop()
        webui_real.netns_down()


@pytest.fixture(scope="module")
def token(real_webui: webui_real.RealWebUI) -> str:
    password = (Path(real_webui.work) / "etc" / "admin_password").read_text().strip()
    reply = requests.post(
        f"{real_webui.url}/api/v1/auths/signin",
        json={"email": DEFAULTS["open_webui_admin_email"], "password": password},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["role"] == "admin"
    return str(body["token"])


def api(web: webui_real.RealWebUI, token: str, method: str, path: str, **kwargs: Any) -> Any:
    reply = requests.request(
        method, f"{web.url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=120, **kwargs
    )
    assert reply.status_code == 200, f"{method} {path}: {reply.status_code} {reply.text[:2000]}"
    return reply.json()


def test_role_environment_and_namespace(real_webui: webui_real.RealWebUI, real_bundle: Path) -> None:
    env = real_webui.env
    assert env["RAG_EMBEDDING_ENGINE"] == "ollama" and env["RAG_EMBEDDING_MODEL"] == EMBED_MODEL
    assert env["OFFLINE_MODE"] == "true" and env["HF_HUB_OFFLINE"] == "1" and env["ENABLE_OPENAI_API"] == "false"
    assert env["ENABLE_PIP_INSTALL_FRONTMATTER_REQUIREMENTS"] == "false" and env["ENABLE_SIGNUP"] == "false"
    assert env["OLLAMA_BASE_URL"] == "http://127.0.0.1:11434"
    for name in ("secret_key", "admin_password", "open-webui.env"):
        assert (real_webui.work / "etc" / name).stat().st_mode & 0o777 == 0o600
    assert "default" not in webui_real.routes()  # no route out
    assert real_webui.ready_after_s <= DEFAULTS["open_webui_start_timeout"]


def test_admin_signs_in_and_signup_is_off(real_webui: webui_real.RealWebUI, token: str) -> None:
    config_ = requests.get(f"{real_webui.url}/api/config", timeout=30).json()
    assert config_["features"]["enable_signup"] is False
    reply = requests.post(
        f"{real_webui.url}/api/v1/auths/signup",
        json={"name": "x", "email": "x@example.com", "password": "x" * 12},
        timeout=30,
    )
    assert reply.status_code in (403, 401), reply.text


def test_ollama_models_are_the_bundles(real_webui: webui_real.RealWebUI, token: str, real_bundle: Path) -> None:
    manifest = yaml.safe_load((real_bundle / "bundle.yaml").read_text())
    tags = api(real_webui, token, "GET", "/ollama/api/tags")
    assert sorted(m["name"] for m in tags["models"]) == sorted(m["short"] for m in manifest["models"])


def test_chat_completion_reaches_ollama(real_webui: webui_real.RealWebUI, token: str) -> None:
    before = len(real_webui.ollama_requests())
    body = {"model": CHAT_MODEL, "stream": False, "messages": [{"role": "user", "content": "Say hello."}]}
    answer = api(real_webui, token, "POST", "/api/chat/completions", json=body)
    assert answer["choices"][0]["message"]["content"]
    chats = [r for r in real_webui.ollama_requests()[before:] if r["path"] == "/api/chat"]
    assert chats and chats[0]["body"]["model"] == CHAT_MODEL
    assert chats[0]["body"]["messages"][-1]["content"] == "Say hello."
    ps = requests.get(f"{real_webui.url}/ollama/api/ps", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert ps.status_code == 200 and CHAT_MODEL in [m["name"] for m in ps.json()["models"]], ps.text


def test_rag_answers_with_ollama_embeddings(real_webui: webui_real.RealWebUI, token: str) -> None:
    before = len(real_webui.ollama_requests())
    uploaded = api(
        real_webui, token, "POST", "/api/v1/files/", files={"file": ("expedition.txt", DOCUMENT.encode(), "text/plain")}
    )
    file_id = uploaded["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = api(real_webui, token, "GET", f"/api/v1/files/{file_id}/process/status")
        if status.get("status") in ("completed", "failed"):
            break
        time.sleep(1)
    assert status.get("status") == "completed", status
    knowledge = api(
        real_webui, token, "POST", "/api/v1/knowledge/create", json={"name": "expedition", "description": "field notes"}
    )
    api(real_webui, token, "POST", f"/api/v1/knowledge/{knowledge['id']}/file/add", json={"file_id": file_id})
    result = api(
        real_webui,
        token,
        "POST",
        "/api/v1/retrieval/query/collection",
        json={"collection_names": [knowledge["id"]], "query": "Who was the radio operator?", "k": 3},
    )
    documents = [doc for docs in result["documents"] for doc in docs]
    assert any("Ingrid Solbakken" in doc for doc in documents), result
    embeds = [r for r in real_webui.ollama_requests()[before:] if r["path"] in ("/api/embed", "/api/embeddings")]
    assert embeds, "no embedding request reached ollama"
    assert {r["body"]["model"] for r in embeds} == {EMBED_MODEL}
    texts = json.dumps([r["body"] for r in embeds])
    assert "Ingrid Solbakken" in texts and "radio operator" in texts  # the document, then the query


def test_recorder_sees_attempts_out(real_webui: webui_real.RealWebUI) -> None:
    """The recorder's control: inside the namespace, a TCP connect to this machine's end of the veth and a DNS
    look-up (resolv.conf names the same address) are recorded as attempts out; nothing leaves this machine."""
    trace = real_webui.work / "logs" / "control.trace"
    probe = (
        "import socket\n"
        f"try: socket.create_connection(('{webui_real.HOST_ADDR}', 9), timeout=2)\nexcept OSError: pass\n"
        "try: socket.getaddrinfo('huggingface.co', 443)\nexcept OSError: pass\n"
    )
    argv = ["ip", "netns", "exec", webui_real.NETNS, *webui_real.recorder_argv(trace), "/usr/bin/python3", "-c", probe]
    subprocess.run(argv, check=True, timeout=60)
    seen = webui_real.attempts(trace)
    assert ("AF_INET", webui_real.HOST_ADDR, 9) in seen, seen
    assert ("AF_INET", webui_real.HOST_ADDR, 53) in seen, seen


def test_nothing_tried_to_reach_the_internet(real_webui: webui_real.RealWebUI, token: str) -> None:
    """Runs last: the whole session's connect() calls, from start to the RAG query."""
    targets = real_webui.connect_targets()
    assert ("AF_INET", "127.0.0.1", webui_real.OLLAMA_PORT) in targets, targets  # the recorder works
    outside = sorted({t for t in targets if t[1] == "?" or not ipaddress.ip_address(t[1]).is_loopback})
    assert not outside, f"Open WebUI tried to connect out of the air gap: {outside}"
