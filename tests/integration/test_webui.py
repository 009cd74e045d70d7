"""The open_webui role on the test bed's systemd hosts, with a real container run by podman under systemd.

The image is the test bed's Open WebUI stand-in (testbed/webui_image.py: Debian's python3 plus a small server that
answers /health and calls ollama's /api/version and /api/tags at start, as Open WebUI does), pushed to the test
bed registry as ghcr.io/open-webui/open-webui:test and carried in the bundle by the real `bundle build`.

Containers inside the systemd-nspawn hosts: the hosts' cgroup file system is read-only and their root is overlayfs,
and nspawn's seccomp filter refuses keyring system calls. The hosts store images with podman's vfs driver
(/etc/containers/storage.conf of the test bed root file system), and the inventory below runs the unit's podman with
--cgroups=disabled and the cgroupfs manager (no cgroup writes at all) and a containers.conf for the unit alone with
keyring = false. All three are documented role variables; nothing in the role is test-specific.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from testbed import webui_docker, webui_image
from testbed.hosts import Host, TestHosts
from testbed.mirrors import Mirrors
from testbed.webui_image import PushedImage, push_webui_image

if TYPE_CHECKING:
    from conftest import PlaybookResult, PlaybookRunner  # tests/integration/conftest.py

pytestmark = pytest.mark.hosts

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
BUNDLE_ROOT = "/var/lib/ollama-airgap/bundle"
IMAGE = "ghcr.io/open-webui/open-webui:test"
ARCHIVE = f"{BUNDLE_ROOT}/images/open-webui_test.docker.tar"
SECRET = "/etc/open-webui/secret_key"
PODMAN = "podman --cgroup-manager=cgroupfs"
EMBED_MODEL = "nomic-embed-text:latest"


@pytest.fixture(scope="module")
def webui_bundle(mirrors: Mirrors, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The demo bundle plus the WebUI stand-in image, built by the real `bundle build`."""
    tmp = tmp_path_factory.mktemp("webui-bundle")
    image: PushedImage = push_webui_image(mirrors.registry_url, tmp / "image")
    spec = yaml.safe_load((REPO / "bundles" / "demo.yaml").read_text())
    spec["ollama"]["architectures"] = ["amd64"]
    spec["images"] = [IMAGE]
    spec["models"] = [*spec["models"], EMBED_MODEL]  # the role picks it for RAG (RAG_EMBEDDING_ENGINE=ollama)
    (tmp / "webui.yaml").write_text(yaml.safe_dump(spec))
    github = mirrors.release_base_url.split("/ollama/ollama/")[0]
    argv = [
        str(VENV_BIN / "bundle"), "build", str(tmp / "webui.yaml"), "--cache", str(tmp / "cache"),
        "-o", str(tmp / "webui.tar"), "-q",
        "--mirror", f"registry.ollama.ai={mirrors.registry_url}", "--mirror", f"github.com={github}",
        "--mirror", f"ghcr.io={mirrors.registry_url}",
    ]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    vars_file = tmp / "webui-vars.yml"
    # The nspawn hosts' podman settings come from the test bed's inventory (testbed.hosts.NSPAWN_HOST_VARS).
    vars_file.write_text(yaml.safe_dump({"bundle_src": str(tmp / "webui.tar")}))
    return {"archive": tmp / "webui.tar", "image": image, "vars": vars_file, "tmp": tmp}


@pytest.fixture(scope="module")
def webui_deployed(test_hosts: TestHosts, ansible_playbook: PlaybookRunner, webui_bundle: dict) -> PlaybookResult:
    result = ansible_playbook("site.yml", extra=["-e", f"@{webui_bundle['vars']}"])
    assert result.returncode == 0, result.explain()
    return result


def health(host: Host) -> str:
    return host.ssh("curl -s --max-time 5 http://127.0.0.1:3000/health || true").stdout


def wait_healthy(host: Host, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if json.loads(health(host) or "{}").get("status") is True:
            return
        time.sleep(1)
    journal = host.ssh("journalctl -u open-webui -n 30 --no-pager", check=False).stdout
    raise AssertionError(f"{host.name}: Open WebUI does not answer /health after {timeout:.0f} s\n{journal}")


def unit_state(host: Host) -> dict[str, str]:
    props = host.ssh(
        "systemctl show open-webui -p ActiveState -p ActiveEnterTimestamp -p InvocationID -p UnitFileState "
        "-p Restart -p MainPID"
    ).stdout
    state = dict(line.split("=", 1) for line in props.splitlines() if "=" in line)
    started = host.ssh(f"{PODMAN} inspect --format '{{{{.State.StartedAt}}}}' open-webui", check=False)
    state["container_started"] = started.stdout.strip()
    return state


def test_webui_runs_offline_and_reaches_ollama(
    webui_deployed: PlaybookResult, test_hosts: TestHosts, webui_bundle: dict
) -> None:
    image_id = webui_bundle["image"].platforms["linux/amd64"].config_digest.removeprefix("sha256:")
    for host in test_hosts.hosts:
        assert json.loads(health(host)) == {"status": True}
        state = unit_state(host)
        assert state["ActiveState"] == "active" and state["UnitFileState"] == "enabled"
        assert state["Restart"] == "on-failure"
        # The container runs the bundle's image, by its ID (= the registry's config digest).
        running = host.ssh(f"{PODMAN} inspect --format '{{{{.Image}}}}' open-webui").stdout.strip()
        assert running == image_id
        config = json.loads(host.ssh("curl -s --max-time 5 http://127.0.0.1:3000/api/config").stdout)
        # It reached ollama over OLLAMA_BASE_URL at start-up (GET /api/version and /api/tags) and saw the models.
        assert config["ollama_base_url"] == "http://127.0.0.1:11434"
        assert config["startup_probe"]["ok"] is True, config
        assert "tinyllama:latest" in config["startup_probe"]["models"]
        journal = host.ssh("journalctl -u open-webui --no-pager").stdout
        assert "reachable at http://127.0.0.1:11434: /api/tags lists" in journal
        assert config["offline"] == {
            "OFFLINE_MODE": "true",
            "HF_HUB_OFFLINE": "1",
            "ENABLE_OPENAI_API": "false",
            "ENABLE_PERSISTENT_CONFIG": "false",
            "ENABLE_VERSION_UPDATE_CHECK": "false",
            "RAG_EMBEDDING_MODEL_AUTO_UPDATE": "false",
            "RAG_RERANKING_MODEL_AUTO_UPDATE": "false",
            "WHISPER_MODEL_AUTO_UPDATE": "false",
        }
        env_lines = host.ssh("cat /etc/open-webui/open-webui.env").stdout.splitlines()
        env = dict(line.split("=", 1) for line in env_lines if "=" in line)
        assert (env["RAG_EMBEDDING_ENGINE"], env["RAG_EMBEDDING_MODEL"]) == ("ollama", EMBED_MODEL)
        assert env["ENABLE_SIGNUP"] == "false" and env["ENABLE_PIP_INSTALL_FRONTMATTER_REQUIREMENTS"] == "false"
        assert host.ssh("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:3000/ready").stdout == "200"
        # The secret: generated, 0600 root, and what the container got.
        assert host.ssh(f"stat -c '%a %U' {SECRET} /etc/open-webui/open-webui.env").stdout.split("\n")[:2] == [
            "600 root",
            "600 root",
        ]
        secret = host.ssh(f"cat {SECRET}").stdout.strip()
        assert len(secret) == 48
        assert config["secret_key_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
        # Published on the inventory's bind address only (default loopback).
        listening = host.ssh("ss -Hltn 'sport = :3000'").stdout
        assert "127.0.0.1:3000" in listening and "0.0.0.0:3000" not in listening
        # The data directory persists on the host.
        assert host.ssh("test -s /var/lib/open-webui/starts.json && echo yes").stdout.strip() == "yes"


def test_infra_suite_checks_open_webui(
    webui_deployed: PlaybookResult, ansible_playbook: PlaybookRunner, webui_bundle: dict
) -> None:
    """tests/infra/test_open_webui.py against the deployed hosts, as users run it against their fleet."""
    argv = [
        str(VENV_BIN / "pytest"), "tests/infra/test_open_webui.py", "-q", "--hosts=ansible://ollama_hosts",
        f"--ansible-inventory={ansible_playbook.inventory}",
        f"--ansible-extra-vars={ansible_playbook.vars_file}", f"--ansible-extra-vars={webui_bundle['vars']}",
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-3000:]


def test_second_deploy_is_a_no_op(
    webui_deployed: PlaybookResult, test_hosts: TestHosts, ansible_playbook: PlaybookRunner, webui_bundle: dict
) -> None:
    before = {host.name: (unit_state(host), host.ssh(f"cat {SECRET}").stdout) for host in test_hosts.hosts}
    result = ansible_playbook(
        "playbooks/bundle.yml", "playbooks/open_webui.yml", extra=["-e", f"@{webui_bundle['vars']}"]
    )
    assert result.returncode == 0, result.explain()
    assert set(result.changed().values()) == {0}, result.explain()
    for host in test_hosts.hosts:
        # No re-load, no restart: the same unit invocation, the same container start, the same secret.
        assert (unit_state(host), host.ssh(f"cat {SECRET}").stdout) == before[host.name]
    # And --check --diff on the deployed hosts changes nothing.
    checked = ansible_playbook(
        "playbooks/bundle.yml",
        "playbooks/open_webui.yml",
        extra=["-e", f"@{webui_bundle['vars']}", "--check", "--diff"],
    )
    assert checked.returncode == 0, checked.explain()
    assert set(checked.changed().values()) == {0}, checked.explain()


def test_secret_survives_redeploy_after_a_lost_env_file(
    webui_deployed: PlaybookResult, test_hosts: TestHosts, ansible_playbook: PlaybookRunner, webui_bundle: dict
) -> None:
    host = test_hosts.hosts[0]
    secret = host.ssh(f"cat {SECRET}").stdout
    host.ssh("rm -f /etc/open-webui/open-webui.env")
    result = ansible_playbook(
        "playbooks/bundle.yml",
        "playbooks/open_webui.yml",
        extra=["-e", f"@{webui_bundle['vars']}", "--limit", host.name],
    )
    assert result.returncode == 0, result.explain()
    assert host.ssh(f"cat {SECRET}").stdout == secret
    wait_healthy(host)
    config = json.loads(host.ssh("curl -s --max-time 5 http://127.0.0.1:3000/api/config").stdout)
    assert config["secret_key_sha256"] == hashlib.sha256(secret.strip().encode()).hexdigest()
    assert config["starts"] >= 2  # restarted with the same data directory


def test_unit_comes_back_after_reboot(webui_deployed: PlaybookResult, test_hosts: TestHosts) -> None:
    host = test_hosts.hosts[-1]
    before = unit_state(host)
    test_hosts.reboot(host)
    wait_healthy(host)
    after = unit_state(host)
    assert after["ActiveState"] == "active"
    assert after["InvocationID"] != before["InvocationID"]
    config = json.loads(host.ssh("curl -s --max-time 5 http://127.0.0.1:3000/api/config").stdout)
    assert config["startup_probe"]["ok"] is True, config  # ollama came back too and was reached


def test_corrupt_image_archive_is_refused_before_load(
    webui_deployed: PlaybookResult, test_hosts: TestHosts, ansible_playbook: PlaybookRunner, webui_bundle: dict
) -> None:
    """Only the role's own check stands between a rotted archive and `podman load` here: the bundle facts come
    from the bundle's bundle.yaml directly, so the bundle role's (recorded) verification is not re-run."""
    host = test_hosts.hosts[0]
    image_id = webui_bundle["image"].platforms["linux/amd64"].config_digest.removeprefix("sha256:")
    with tarfile.open(webui_bundle["archive"]) as tar:
        manifest = yaml.safe_load(tar.extractfile("bundle.yaml").read())  # type: ignore[union-attr]
    facts = webui_bundle["tmp"] / "facts.yml"
    facts.write_text(yaml.safe_dump({"bundle_root": BUNDLE_ROOT, "bundle_manifest": manifest}))
    host.ssh(f"systemctl stop open-webui && {PODMAN} rmi -f {image_id}")
    host.ssh(f"cp -p {ARCHIVE} /root/image.bak")
    # Flip one byte in the middle of the archive.
    host.ssh(
        f"python3 -c \"f=open('{ARCHIVE}','r+b'); f.seek(8192); b=f.read(1); f.seek(8192); f.write(bytes([b[0]^255]))\""
    )
    try:
        result = ansible_playbook(
            "playbooks/open_webui.yml",
            extra=["-e", f"@{webui_bundle['vars']}", "-e", f"@{facts}", "--limit", host.name],
        )
        assert result.returncode != 0
        assert "refusing to load it" in result.output, result.explain()
        assert "TASK [ollama_airgap.deploy.open_webui : Load the image archive]" not in result.output
        assert host.ssh(f"{PODMAN} image exists {image_id}", check=False).returncode != 0
    finally:
        host.ssh(f"mv /root/image.bak {ARCHIVE}")
    # With the archive intact again, the role loads and starts it.
    healed = ansible_playbook(
        "playbooks/open_webui.yml", extra=["-e", f"@{webui_bundle['vars']}", "-e", f"@{facts}", "--limit", host.name]
    )
    assert healed.returncode == 0, healed.explain()
    assert "TASK [ollama_airgap.deploy.open_webui : Load the image archive]" in healed.output
    wait_healthy(host)


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webui_docker.Dockerd]:
    reason = webui_docker.unavailable_reason()
    if reason:
        pytest.skip(reason)
    daemon = webui_docker.start_dockerd(Path("/var/tmp/oatb-dockerd"))
    yield daemon
    daemon.stop()


@pytest.mark.parametrize("rag", ["ollama", "image"])
def test_docker_unit_with_a_real_dockerd(
    dockerd: webui_docker.Dockerd, rag: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The role's docker unit, rendered by the role for open_webui_engine: docker, run by Debian's dockerd.

    The image is the stand-in plus a file baked under /app/backend/data/cache (as the real image bakes its models).
    rag=ollama bind-mounts the host data directory (the cache is hidden: the trap, harmless with ollama embeddings);
    rag=image mounts the named volume, which docker seeds from the image, so the baked cache is there.
    systemd is not PID 1 on this machine, so the unit's ExecStart/ExecStop lines are run as they are written."""
    base = tmp_path / "image"
    base.mkdir()
    layer = webui_image.build_layer()
    imported = subprocess.run(
        [webui_docker.DOCKER, "import", "--change", 'CMD ["/usr/bin/python3", "/app/webui_standin.py"]', "-",
         "localhost/webui-standin:base"], input=layer, env=dockerd.env, capture_output=True, check=True,
    )  # fmt: skip
    assert imported.stdout.startswith(b"sha256:")
    (base / "cache").mkdir()
    (base / "cache" / "baked-model").write_text("all-MiniLM-L6-v2\n")
    (base / "Dockerfile").write_text("FROM localhost/webui-standin:base\nCOPY cache /app/backend/data/cache/\n")
    dockerd.docker("build", "-q", "-t", "localhost/webui-standin:baked", str(base), timeout=300)
    image_id = dockerd.docker("image", "inspect", "--format", "{{.Id}}", "localhost/webui-standin:baked").stdout.strip()
    work = tmp_path / "role"
    work.mkdir()
    variables = {
        "open_webui_engine": "docker",
        "open_webui_rag_embedding": rag,
        "open_webui_data_volume": f"oatb-webui-{rag}",
        "open_webui_config_dir": str(work / "etc"),
        "open_webui_data_dir": str(work / "data"),
        "open_webui_port": 3998,
        "bundle_manifest": {
            "images": [{"name": "ghcr.io/open-webui/open-webui", "reference": IMAGE, "image_id": image_id,
                        "path": "images/x.docker.tar", "size": 0, "sha256": ""}],
            "models": [{"short": EMBED_MODEL, "capabilities": ["embedding"]}],
        },
    }  # fmt: skip
    (work / "data").mkdir()
    unit = webui_docker.render_unit(work, REPO, sys.executable, variables)
    start = webui_docker.unit_command(unit, "ExecStart")
    assert start[:2] == ["/usr/bin/docker", "run"] and start[-1] == image_id.removeprefix("sha256:")
    mount = f"oatb-webui-{rag}:/app/backend/data" if rag == "image" else f"{work / 'data'}:/app/backend/data"
    assert start[start.index("--volume") + 1] == mount
    with (tmp_path / "run.log").open("wb") as log:
        running = subprocess.Popen(start, env=dockerd.env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        ready = ""
        while time.monotonic() < deadline and ready != "200":
            ready = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:3998/ready"],
                                   capture_output=True, text=True, check=False).stdout  # fmt: skip
            time.sleep(0.5)
        assert ready == "200", (tmp_path / "run.log").read_text()
        pid = dockerd.docker("inspect", "--format", "{{.State.Pid}}", "open-webui").stdout.strip()
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
        assert status["NoNewPrivs"].strip() == "1" and status["Seccomp"].strip() == "2"
        baked_file = "/app/backend/data/cache/baked-model"
        read = f"import os; p = '{baked_file}'; print(open(p).read() if os.path.exists(p) else '-')"
        baked = dockerd.docker("exec", "open-webui", "/usr/bin/python3", "-c", read).stdout.strip()
        # image: seeded into the named volume; ollama: hidden by the bind mount of the (empty) host directory.
        assert baked == ("all-MiniLM-L6-v2" if rag == "image" else "-")
        env = dict(line.split("=", 1) for line in (work / "etc" / "open-webui.env").read_text().splitlines()
                   if "=" in line and not line.startswith("#"))  # fmt: skip
        assert ("RAG_EMBEDDING_ENGINE" in env) == (rag == "ollama")
    finally:
        subprocess.run(webui_docker.unit_command(unit, "ExecStop"), env=dockerd.env, capture_output=True, check=False)
        running.wait(timeout=60)
        dockerd.docker("volume", "rm", "-f", f"oatb-webui-{rag}", check=False)
