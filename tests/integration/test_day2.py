"""Day-2 operations on the test bed's systemd hosts: upgrade 0.14.1 → 0.35.1 keeping the previous release,
playbooks/rollback.yml, the GPU pre-flight (a stand-in nvidia-smi printing the tests/fixtures/nvidia-smi outputs),
ollama_models_prune, and playbooks/uninstall.yml leaving only the models and Open WebUI's data.

Both hosts run the whole sequence with the demo models and the Open WebUI stand-in image (as test_webui.py builds
it). At the end the hosts get the session's 0.14.1 demo bundle back, as the other test modules expect.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from testbed.config import OLLAMA_VERSION_CURRENT, OLLAMA_VERSION_ZST
from testbed.hosts import Host, TestHosts
from testbed.mirrors import Mirrors
from testbed.webui_image import push_webui_image

if TYPE_CHECKING:
    from conftest import PlaybookResult, PlaybookRunner  # tests/integration/conftest.py

pytestmark = pytest.mark.hosts

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
FIXTURES = REPO / "tests" / "fixtures" / "nvidia-smi"
RELEASES = "/usr/local/lib/ollama-airgap/releases"
MODELS = "/usr/share/ollama/.ollama/models"
WEBUI_IMAGE = "ghcr.io/open-webui/open-webui:test"
PODMAN = "podman --cgroup-manager=cgroupfs"
FAKE_SMI = "/opt/airgap-test-gpu/nvidia-smi"
DEMO_MODELS = {"tinyllama:latest", "tinyqwen:0.5b", "acme/tiny-assistant:v1"}


@dataclass
class Day2:
    hosts: list[Host]
    bundles: dict[str, Path]  # ollama version → bundle with the demo models and the WebUI image
    run: PlaybookRunner
    first: PlaybookResult
    mirrors: Mirrors
    tmp: Path

    def deploy(
        self, version: str, *playbooks: str, extra: tuple[str, ...] = (), **extra_vars: object
    ) -> PlaybookResult:
        return self.run(*(playbooks or ("site.yml",)), extra=extra, bundle_src=str(self.bundles[version]), **extra_vars)


def api(host: Host, path: str) -> Any:
    return json.loads(host.ssh(f"curl -sf --max-time 30 http://127.0.0.1:11434{path}").stdout)


def served(host: Host) -> dict[str, str]:
    """/api/tags: model name → digest."""
    return {model["name"]: model["digest"] for model in api(host, "/api/tags")["models"]}


def releases(host: Host) -> list[str]:
    return host.ssh(f"ls -1 {RELEASES}").stdout.split()


def active(host: Host) -> str:
    bin_target = host.ssh("readlink -f /usr/local/bin/ollama").stdout.strip()
    lib_target = host.ssh("readlink -f /usr/local/lib/ollama").stdout.strip()
    release = bin_target.removeprefix(RELEASES + "/").split("/")[0]
    assert lib_target == f"{RELEASES}/{release}/lib/ollama", (bin_target, lib_target)
    return release


def store_listing(host: Host) -> str:
    return host.ssh(f"cd {MODELS} && find . -type f -printf '%P %s\\n' | sort").stdout


def assert_unchanged(result: PlaybookResult, hosts: list[Host]) -> None:
    assert result.returncode == 0, result.explain()
    for host in hosts:
        counts = result.recap.get(host.name, {})
        assert counts.get("changed") == 0 and counts.get("failed") == 0, result.explain()


def build(mirrors: Mirrors, tmp: Path, version: str, drop: str = "") -> Path:
    spec = yaml.safe_load((REPO / "bundles" / "demo.yaml").read_text())
    spec["ollama"] = {"version": version, "architectures": ["amd64"]}
    spec["images"] = [WEBUI_IMAGE]
    spec["models"] = [name for name in spec["models"] if name != drop]
    version = f"{version}{'-without-' + drop.replace(':', '_') if drop else ''}"
    (tmp / f"day2-{version}.yaml").write_text(yaml.safe_dump(spec))
    github = mirrors.release_base_url.split("/ollama/ollama/")[0]
    argv = [
        str(VENV_BIN / "bundle"), "build", str(tmp / f"day2-{version}.yaml"), "--cache", str(tmp / "cache"),
        "-o", str(tmp / f"day2-{version}.tar"), "-q",
        "--mirror", f"registry.ollama.ai={mirrors.registry_url}", "--mirror", f"github.com={github}",
        "--mirror", f"ghcr.io={mirrors.registry_url}",
    ]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return tmp / f"day2-{version}.tar"


@pytest.fixture(scope="module")
def day2(
    mirrors: Mirrors,
    test_hosts: TestHosts,
    ansible_playbook: PlaybookRunner,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Day2]:
    tmp = tmp_path_factory.mktemp("day2")
    push_webui_image(mirrors.registry_url, tmp / "image")
    bundles = {version: build(mirrors, tmp, version) for version in (OLLAMA_VERSION_ZST, OLLAMA_VERSION_CURRENT)}
    first = ansible_playbook("site.yml", bundle_src=str(bundles[OLLAMA_VERSION_ZST]))
    assert first.returncode == 0, first.explain()
    try:
        yield Day2(test_hosts.hosts, bundles, ansible_playbook, first, mirrors, tmp)
    finally:
        for host in test_hosts.hosts:
            host.ssh(f"rm -rf {FAKE_SMI.rsplit('/', 1)[0]} /dev/nvidia0 /dev/nvidiactl /dev/nvidia-uvm", check=False)
        back = ansible_playbook("site.yml")  # the session's 0.14.1 demo bundle
        assert back.returncode == 0, back.explain()


def test_upgrade_keeps_the_previous_release_and_every_model(day2: Day2) -> None:
    before = {host.name: served(host) for host in day2.hosts}
    old = {host.name: active(host) for host in day2.hosts}
    for host in day2.hosts:
        assert set(before[host.name]) == DEMO_MODELS
        assert api(host, "/api/version")["version"] == OLLAMA_VERSION_ZST
        assert old[host.name].startswith(f"{OLLAMA_VERSION_ZST}-")

    up = day2.deploy(OLLAMA_VERSION_CURRENT)
    assert up.returncode == 0 and all(up.changed()[h.name] > 0 for h in day2.hosts), up.explain()
    for host in day2.hosts:
        assert api(host, "/api/version")["version"] == OLLAMA_VERSION_CURRENT
        assert served(host) == before[host.name]  # same models, same digests
        new = active(host)
        assert new.startswith(f"{OLLAMA_VERSION_CURRENT}-")
        assert sorted(releases(host)) == sorted([old[host.name], new])  # the previous release is kept whole
        assert host.ssh(f"test -x {RELEASES}/{old[host.name]}/bin/ollama", check=False).returncode == 0
        assert host.ssh(f"find {RELEASES} ! -user root | wc -l").stdout.strip() == "0"
    assert "ollama 0.35.1 active" in up.output

    assert_unchanged(day2.deploy(OLLAMA_VERSION_CURRENT), day2.hosts)
    assert_unchanged(day2.deploy(OLLAMA_VERSION_CURRENT, extra=("--check", "--diff")), day2.hosts)


def test_rollback_restores_the_previous_release_with_every_model(day2: Day2) -> None:
    before = {host.name: served(host) for host in day2.hosts}
    kept = {host.name: releases(host) for host in day2.hosts}

    planned = day2.run("playbooks/rollback.yml", extra=("--check", "--diff"))
    assert planned.returncode == 0 and all(planned.changed()[h.name] > 0 for h in day2.hosts), planned.explain()
    assert f"# active release: {OLLAMA_VERSION_ZST}-" in planned.output
    assert all(api(h, "/api/version")["version"] == OLLAMA_VERSION_CURRENT for h in day2.hosts)  # nothing changed

    back = day2.run("playbooks/rollback.yml")
    assert back.returncode == 0, back.explain()
    for host in day2.hosts:
        assert api(host, "/api/version")["version"] == OLLAMA_VERSION_ZST
        assert OLLAMA_VERSION_ZST in host.ssh("/usr/local/bin/ollama --version 2>&1").stdout
        assert active(host).startswith(f"{OLLAMA_VERSION_ZST}-")
        assert served(host) == before[host.name]
        assert releases(host) == kept[host.name]  # the newer release stays for the way forward
        reply = host.ssh(
            "curl -sf --max-time 60 http://127.0.0.1:11434/api/generate "
            '-d \'{"model": "tinyllama:latest", "prompt": "hi", "stream": false, '
            '"options": {"num_predict": 4}}\''
        )
        assert json.loads(reply.stdout)["done"] is True
    assert_unchanged(day2.run("playbooks/rollback.yml"), day2.hosts)

    forward = day2.deploy(OLLAMA_VERSION_CURRENT)  # the bundle's release again, without unpacking it twice
    assert forward.returncode == 0, forward.explain()
    for host in day2.hosts:
        assert api(host, "/api/version")["version"] == OLLAMA_VERSION_CURRENT
        assert served(host) == before[host.name] and releases(host) == kept[host.name]


def put_fake_nvidia_smi(host: Host, fixture: str) -> None:
    files = {"nvidia-smi": FIXTURES / "nvidia-smi"} | {
        f"fixture/{path.name}": path for path in sorted((FIXTURES / fixture).iterdir())
    }
    place = FAKE_SMI.rsplit("/", 1)[0]
    commands = [f"rm -rf {place}", f"mkdir -p {place}/fixture"]
    for name, path in files.items():
        data = base64.b64encode(path.read_bytes()).decode()
        commands.append(f"echo {data} | base64 -d > {place}/{name}")
    commands.append(f"chmod 755 {FAKE_SMI}")
    host.ssh(" && ".join(commands))


def test_gpu_preflight_refuses_a_missing_or_too_old_driver(day2: Day2) -> None:
    host, cpu_host = day2.hosts[0], day2.hosts[1]
    phases = ("playbooks/bundle.yml", "playbooks/ollama.yml")
    limit = ("--limit", host.name)
    settled = day2.deploy(OLLAMA_VERSION_CURRENT, *phases, extra=limit)  # where the tests above leave it
    assert settled.returncode == 0, settled.explain()
    state = (active(host), host.ssh("systemctl show -p MainPID --value ollama").stdout)
    refusals = {
        "rtx4090-535": (
            "NVIDIA driver 535.104.05 is too old for GPU 0 NVIDIA GeForce RTX 4090 (compute capability 8.9): ollama "
            "needs 550 or newer (install it from your offline driver repository; this role never installs drivers)"
        ),
        "no-driver": (
            f"NVIDIA driver not loaded: {FAKE_SMI} -q -x failed (NVIDIA-SMI has failed because it couldn't "
            "communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.); "
            "install or load driver 550 or newer offline; this role never installs drivers"
        ),
    }
    for fixture, problem in refusals.items():
        put_fake_nvidia_smi(host, fixture)
        for require in ({"ollama_require_gpu": True}, {"smoke_test_require_gpu": True}):
            result = day2.deploy(OLLAMA_VERSION_CURRENT, *phases, extra=limit, ollama_nvidia_smi=FAKE_SMI, **require)
            assert result.returncode != 0 and result.recap[host.name]["failed"] == 1, result.explain()
            assert f"ollama: {host.name} fails the GPU pre-flight: {problem}" in result.output, result.explain()
            assert result.recap[host.name]["changed"] == 0
        # Without require_gpu the host only gets the report.
        report = day2.deploy(OLLAMA_VERSION_CURRENT, *phases, extra=limit, ollama_nvidia_smi=FAKE_SMI)
        assert report.returncode == 0 and report.recap[host.name]["changed"] == 0, report.explain()
        assert f"GPU pre-flight on {host.name}: " in report.output and problem in report.output
    assert (active(host), host.ssh("systemctl show -p MainPID --value ollama").stdout) == state  # untouched

    # A supported GPU with its device nodes passes with require_gpu once the render group exists (the test bed's
    # minbase hosts have no udev, so no render group); a host without any GPU is refused.
    put_fake_nvidia_smi(host, "h100-570")
    host.ssh("touch /dev/nvidiactl /dev/nvidia-uvm /dev/nvidia0 /dev/nvidia1")
    added_render = host.ssh("getent group render", check=False).returncode != 0
    try:
        if added_render:
            refused = day2.deploy(
                OLLAMA_VERSION_CURRENT, *phases, extra=limit, ollama_nvidia_smi=FAKE_SMI, ollama_require_gpu=True
            )
            assert refused.returncode != 0, refused.explain()
            groups = "group(s) render missing: the service user cannot open the GPU devices"
            assert f"ollama: {host.name} fails the GPU pre-flight: {groups}" in refused.output
            host.ssh("groupadd --system render")
        ready = day2.deploy(
            OLLAMA_VERSION_CURRENT, *phases, extra=limit, ollama_nvidia_smi=FAKE_SMI, ollama_require_gpu=True
        )
        assert ready.returncode == 0, ready.explain()
        assert f"GPU pre-flight on {host.name}: NVIDIA driver 570.133.20 (CUDA 12.8): " in ready.output
        assert "NVIDIA H100 80GB HBM3 cc 9.0: ready" in ready.output
    finally:
        host.ssh("rm -f /dev/nvidiactl /dev/nvidia-uvm /dev/nvidia0 /dev/nvidia1", check=False)
        if added_render:
            host.ssh("groupdel render", check=False)
    cpu = day2.deploy(OLLAMA_VERSION_CURRENT, *phases, extra=("--limit", cpu_host.name), ollama_require_gpu=True)
    assert cpu.returncode != 0, cpu.explain()
    refusal = "fails the GPU pre-flight: no GPU found (no NVIDIA driver or GPU): models run on the CPU"
    assert f"ollama: {cpu_host.name} {refusal}" in cpu.output


def test_prune_removes_only_the_models_the_bundle_no_longer_lists(day2: Day2) -> None:
    dropped = "tinyqwen:0.5b"
    smaller = build(day2.mirrors, day2.tmp, OLLAMA_VERSION_CURRENT, drop=dropped)
    for host in day2.hosts:  # a model made by hand, not by this project: prune must leave it
        host.ssh("printf 'FROM tinyllama:latest\\nSYSTEM hand made\\n' > /root/Modelfile.hand && "
                 "/usr/local/bin/ollama create handmade:v1 -f /root/Modelfile.hand")  # fmt: skip
    before = {host.name: served(host) for host in day2.hosts}
    kept = day2.run("site.yml", bundle_src=str(smaller))  # prune is off by default
    assert kept.returncode == 0, kept.explain()
    assert all(served(h) == before[h.name] for h in day2.hosts)

    planned = day2.run("site.yml", extra=("--check", "--diff"), bundle_src=str(smaller), ollama_models_prune=True)
    assert planned.returncode == 0 and all(planned.changed()[h.name] > 0 for h in day2.hosts), planned.explain()
    assert all(served(h) == before[h.name] for h in day2.hosts)

    pruned = day2.run("site.yml", bundle_src=str(smaller), ollama_models_prune=True)
    assert pruned.returncode == 0, pruned.explain()
    for host in day2.hosts:
        left = served(host)
        assert dropped not in left and "handmade:v1" in left, left
        assert left == {name: digest for name, digest in before[host.name].items() if name != dropped}
        records = host.ssh("ls /var/lib/ollama-airgap/models").stdout.split()
        assert not any("tinyqwen" in name for name in records), records
    assert_unchanged(day2.run("site.yml", bundle_src=str(smaller), ollama_models_prune=True), day2.hosts)

    back = day2.deploy(OLLAMA_VERSION_CURRENT, ollama_models_prune=True)  # the full bundle brings it back
    assert back.returncode == 0, back.explain()
    for host in day2.hosts:
        assert set(served(host)) == DEMO_MODELS | {"handmade:v1"}
        host.ssh("/usr/local/bin/ollama rm handmade:v1")


def test_uninstall_leaves_only_the_models_and_the_data(day2: Day2) -> None:
    stores = {host.name: store_listing(host) for host in day2.hosts}
    for host in day2.hosts:
        assert host.ssh("systemctl is-active open-webui").stdout.strip() == "active"
        host.ssh("echo keep-me > /var/lib/open-webui/webui.db")

    planned = day2.run("playbooks/uninstall.yml", extra=("--check", "--diff"))
    assert planned.returncode == 0 and all(planned.changed()[h.name] > 0 for h in day2.hosts), planned.explain()
    assert all("Ollama is running" in h.ssh("curl -s http://127.0.0.1:11434/").stdout for h in day2.hosts)

    gone = day2.run("playbooks/uninstall.yml")
    assert gone.returncode == 0, gone.explain()
    names = r"\( -iname '*ollama*' -o -iname '*open-webui*' -o -iname '*open_webui*' \)"
    prune = r"\( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp -o -path /var/tmp \) -prune"
    for host in day2.hosts:
        left = host.ssh(f"find / -xdev {prune} -o {names} -print | sort").stdout.split()
        outside = [p for p in left if not p.startswith(("/usr/share/ollama", "/var/lib/open-webui"))]
        assert outside == [], outside
        # What stays: the store (same files), the service account owning it, and Open WebUI's data.
        assert store_listing(host) == stores[host.name]
        assert host.ssh("cat /var/lib/open-webui/webui.db").stdout == "keep-me\n"
        assert host.ssh("id -u ollama", check=False).returncode == 0
        for path in (
            "/usr/local/bin/ollama", "/usr/local/lib/ollama", "/usr/local/lib/ollama-airgap", "/var/lib/ollama-airgap",
            "/etc/systemd/system/ollama.service", "/etc/systemd/system/ollama.service.d", "/etc/open-webui",
            "/etc/systemd/system/open-webui.service",
        ):  # fmt: skip
            assert host.ssh(f"test -e {path} || test -L {path}", check=False).returncode != 0, path
        units = host.ssh("systemctl list-unit-files --no-legend 'ollama*' 'open-webui*'", check=False).stdout
        assert units.strip() == "", units
        assert host.ssh(f"{PODMAN} ps -a --format '{{{{.Names}}}}'").stdout.strip() == ""
        assert "open-webui" not in host.ssh(f"{PODMAN} images --format '{{{{.Repository}}}}'").stdout
    assert_unchanged(day2.run("playbooks/uninstall.yml"), day2.hosts)

    # Asked to, it removes the models, the service account and the data too.
    host = day2.hosts[1]
    everything = day2.run(
        "playbooks/uninstall.yml",
        extra=("--limit", host.name),
        ollama_uninstall_models=True,
        open_webui_uninstall_data=True,
    )
    assert everything.returncode == 0, everything.explain()
    assert host.ssh(f"find / -xdev {prune} -o {names} -print").stdout.strip() == ""
    assert host.ssh("id -u ollama", check=False).returncode != 0
