"""Deploy-side trust and failure: signed bundles checked on the hosts, and a host dropping off mid-play."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
import yaml

from testbed.config import OLLAMA_VERSION_TGZ, veth_name
from testbed.mirrors import Mirrors

if TYPE_CHECKING:
    from conftest import Deployment, PlaybookRunner  # tests/integration/conftest.py

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
pytestmark = pytest.mark.hosts


def signed_build(mirrors: Mirrors, tmp_path: Path, key: Path | None, name: str) -> Path:
    spec = yaml.safe_load((REPO / "bundles/demo.yaml").read_text())
    spec["ollama"]["version"] = OLLAMA_VERSION_TGZ
    spec["models"] = ["tinyqwen:0.5b"]
    spec_path = tmp_path / f"{name}.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    github = urlsplit(mirrors.release_base_url)
    out = tmp_path / f"{name}.tar"
    argv = [
        str(VENV_BIN / "bundle"), "build", str(spec_path), "-o", str(out), "--cache", str(tmp_path / "cache"), "-q",
        "--mirror", f"registry.ollama.ai={mirrors.registry_url}",
        "--mirror", f"github.com={github.scheme}://{github.netloc}",
        *(["--sign-key", str(key)] if key else []),
    ]  # fmt: skip
    subprocess.run(argv, check=True, capture_output=True)
    return out


def test_signature_is_checked_on_the_host(
    deployed: Deployment, ansible_playbook: PlaybookRunner, mirrors: Mirrors, tmp_path: Path
) -> None:
    host = deployed.hosts.hosts[-1]
    key, other = tmp_path / "signing.key", tmp_path / "other.key"
    for path in (key, other):
        subprocess.run([str(VENV_BIN / "bundle"), "keygen", str(path), "-q"], check=True)
    public = f"{key}.pub"
    limit = ["--limit", host.name]

    unsigned = signed_build(mirrors, tmp_path, None, "unsigned")
    refused = ansible_playbook("playbooks/bundle.yml", extra=limit, bundle_src=str(unsigned),
                               bundle_signing_public_key=public)  # fmt: skip
    assert refused.returncode != 0
    assert "bundle is not signed (bundle.yaml.sig missing)" in refused.output, refused.explain()

    foreign = signed_build(mirrors, tmp_path, other, "foreign")
    refused = ansible_playbook("playbooks/bundle.yml", extra=limit, bundle_src=str(foreign),
                               bundle_signing_public_key=public)  # fmt: skip
    assert refused.returncode != 0
    assert "bundle.yaml.sig does not match bundle.yaml" in refused.output, refused.explain()
    # Refused before any member was written: no archive, no staging tree (the push creates no incoming/ either).
    left = "ls -A /var/lib/ollama-airgap/incoming /var/lib/ollama-airgap/.bundle.staging-* 2>/dev/null || true"
    assert host.ssh(left).stdout.strip() == ""

    signed = signed_build(mirrors, tmp_path, key, "signed")
    accepted = ansible_playbook("playbooks/bundle.yml", extra=limit, bundle_src=str(signed),
                                bundle_signing_public_key=public)  # fmt: skip
    assert accepted.returncode == 0, accepted.explain()
    assert host.ssh("test -f /var/lib/ollama-airgap/bundle/bundle.yaml.sig", check=False).returncode == 0
    again = ansible_playbook("playbooks/bundle.yml", extra=limit, bundle_src=str(signed),
                             bundle_signing_public_key=public)  # fmt: skip
    assert again.returncode == 0 and again.recap[host.name]["changed"] == 0, again.explain()
    # Put the session's bundle back for the tests that follow.
    restored = ansible_playbook("site.yml", extra=limit)
    assert restored.returncode == 0, restored.explain()


def test_host_dropping_off_mid_play_is_reported_and_others_finish(
    deployed: Deployment, ansible_playbook: PlaybookRunner
) -> None:
    """The network link of one host goes down once the ollama phase starts: that host is reported unreachable,
    the others finish the play, and a re-run once the link is back converges."""
    first, dropped = deployed.hosts.hosts[0], deployed.hosts.hosts[-1]
    link = veth_name(dropped.index)
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(deployed.inventory), "-e", f"@{ansible_playbook.vars_file}",
            str(REPO / "site.yml")]  # fmt: skip
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_TIMEOUT": "5"}  # fmt: skip
    process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(300, process.kill)  # a hung play must fail this test, not hang the suite
    watchdog.start()
    output: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if line.startswith("PLAY [Phase: ollama]"):
                subprocess.run(["ip", "link", "set", link, "down"], check=True)
        process.wait(timeout=300)
    finally:
        watchdog.cancel()
        subprocess.run(["ip", "link", "set", link, "up"], check=True)
        if process.poll() is None:
            process.kill()
    text = "".join(output)
    from conftest import parse_recap

    recap = parse_recap(text)
    assert process.returncode != 0, text[-4000:]
    assert recap[dropped.name]["unreachable"] >= 1, text[-4000:]
    assert recap[first.name]["failed"] == 0 and recap[first.name]["unreachable"] == 0, text[-4000:]
    assert "PLAY [Phase: smoke_test]" in text and f"ok: [{first.name}]" in text.split("PLAY [Phase: smoke_test]")[1]
    deadline = time.monotonic() + 60
    while dropped.ssh("true", check=False, timeout=10).returncode != 0:
        assert time.monotonic() < deadline, "the host did not come back on the network"
        time.sleep(1)
    converged = ansible_playbook("site.yml")
    assert converged.returncode == 0, converged.explain()
    assert all(counts["changed"] == 0 for counts in converged.recap.values()), converged.explain()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"ollama_models_method": "pull"}, "ollama_models_method must be one of: create, restore, got: pull"),
        ({"smoke_test_num_predict": "many"}, "smoke_test_num_predict' is of type str"),
        ({"ollama_environment": "OLLAMA_DEBUG=1"}, "ollama_environment"),
        ({"bundle_keep_archive": "perhaps"}, "bundle_keep_archive"),
        ({"ollama_environment": {"LD_PRELOAD": "/tmp/x.so"}}, "OLLAMA_* keys"),
        ({"ollama_origins": ["*"]}, "ollama_origins_allow_any"),
    ],
)
def test_bad_inventory_values_stop_the_run_before_any_change(
    deployed: Deployment, ansible_playbook: PlaybookRunner, bad: dict, message: str
) -> None:
    host = deployed.hosts.hosts[0]
    unit = host.ssh("cat /etc/systemd/system/ollama.service.d/*.conf").stdout
    result = ansible_playbook("site.yml", extra=["--limit", host.name], **bad)
    assert result.returncode != 0
    assert message in result.output, result.explain()
    assert result.recap[host.name]["changed"] == 0 and result.recap[host.name]["failed"] == 1
    assert host.ssh("cat /etc/systemd/system/ollama.service.d/*.conf").stdout == unit


def test_rotten_file_in_the_unpacked_bundle_on_a_host_is_caught_and_healed(
    deployed: Deployment, ansible_playbook: PlaybookRunner
) -> None:
    """A flipped byte in the verified tree on a host: the record no longer matches, so the next run verifies again
    from the archive and restores the file; with the tree itself as the source, the run refuses it."""
    host = deployed.hosts.hosts[0]
    root = "/var/lib/ollama-airgap/bundle"
    blob = host.ssh(f"ls -S {root}/models/blobs | head -1").stdout.strip()
    path = f"{root}/models/blobs/{blob}"
    good = host.ssh(f"sha256sum {path}").stdout.split()[0]
    flip = f"printf '\\\\x00' | dd of={path} bs=1 seek=100 conv=notrunc status=none"
    host.ssh(flip)
    assert host.ssh(f"sha256sum {path}").stdout.split()[0] != good
    refused = ansible_playbook("playbooks/bundle.yml", extra=["--limit", host.name],
                               bundle_src=root, bundle_remote_src=True)  # fmt: skip
    assert refused.returncode != 0
    assert f"models/blobs/{blob} is altered" in refused.output, refused.explain()
    healed = ansible_playbook("site.yml", extra=["--limit", host.name])
    assert healed.returncode == 0, healed.explain()
    assert host.ssh(f"sha256sum {path}").stdout.split()[0] == good
