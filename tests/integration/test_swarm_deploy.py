"""Peer-to-peer fleet mode: a depot and four hosts booted onto the session's test bed, ``bundle_transport=p2p``.

The bundle is built with ``fleet: {p2p: true}``: it carries libtorrent's manylinux wheel (from the local PyPI, a
copy of PyPI's file), which the depot and the hosts unpack with zipfile. playbooks/bundle.yml loads the bundle onto
the depot, which makes the torrent and seeds it; the four hosts fetch from the depot and from each other
(airgap_swarm_fetch), the peers are stopped, and each host verifies and swaps the tree in. Then: a re-run changes
nothing and starts no peer; the depot unreachable mid-play fails the host that needs the bundle with one line
naming it, leaves its bundle root as it was, and a re-run converges, recovering a corrupt piece left on its disk.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from testbed.config import OLLAMA_VERSION_ZST
from testbed.hosts import NSPAWN_HOST_VARS, SSH_KEY, Host, TestHosts
from testbed.mirrors import Mirrors

if TYPE_CHECKING:
    from conftest import PlaybookResult, PlaybookRunner

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.hosts
ROOT = "/var/lib/ollama-airgap/bundle"
SWARM = "/var/lib/ollama-airgap/swarm"
MODELS = ["tinyqwen:0.5b", "tinyllama:latest"]
DEPOT_PORT = 6882


@dataclass
class Swarm:
    depot: Host
    hosts: list[Host]
    bundle: Path
    digest: str
    run: PlaybookRunner


def write_inventory(path: Path, depot: Host, hosts: list[Host]) -> Path:
    def entry(host: Host) -> dict[str, str]:
        return {
            "ansible_host": host.address, "ansible_user": "root", "ansible_ssh_private_key_file": str(SSH_KEY),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            "ansible_python_interpreter": "/usr/bin/python3",
        }  # fmt: skip

    groups = {"ollama_airgap_depot": [depot], "ollama_hosts": hosts}
    children = {name: {"hosts": {h.name: entry(h) for h in members}} for name, members in groups.items()}
    path.write_text(yaml.safe_dump({"all": {"vars": NSPAWN_HOST_VARS, "children": children}}))
    return path


def member(archive: Path, name: str) -> bytes:
    with tarfile.open(archive) as tar:
        handle = tar.extractfile(name)
        assert handle is not None
        return handle.read()


@pytest.fixture(scope="module")
def swarm(test_hosts: TestHosts, mirrors: Mirrors, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swarm]:
    from conftest import PlaybookRunner, build_bundle
    from ollama_airgap.swarm_kit import INDEX_ENV, LIBTORRENT_REQUIREMENT
    from testbed.pypi_mirror import cached_wheels, start_pypi_mirror

    tmp = tmp_path_factory.mktemp("swarm")
    spec = yaml.safe_load((REPO / "bundles/demo.yaml").read_text())
    spec.update(name="swarm", models=MODELS, fleet={"p2p": True})
    spec["ollama"].update(version=OLLAMA_VERSION_ZST, architectures=["amd64"])
    (tmp / "swarm.yaml").write_text(yaml.safe_dump(spec))
    index = start_pypi_mirror(tmp / "pypi", cached_wheels([LIBTORRENT_REQUIREMENT]))
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(INDEX_ENV, index.index_url)
            bundle = build_bundle(mirrors, tmp / "swarm.yaml", tmp / "swarm.tar", tmp / "cache")
    finally:
        index.stop()
    with tarfile.open(bundle) as tar:
        assert any(n.startswith("p2p/wheels/libtorrent-") for n in tar.getnames())
    digest = subprocess.run(["sha256sum"], input=member(bundle, "bundle.yaml"), capture_output=True, check=True)
    started = time.monotonic()
    depot, *hosts = test_hosts.add(5)
    print(f"\n[swarm] 5 more hosts up in {time.monotonic() - started:.1f} s")
    inventory = write_inventory(tmp / "inventory.yml", depot, hosts)
    settings = {
        "bundle_src": str(bundle), "bundle_transport": "p2p", "bundle_p2p_stall_timeout": 10,
        "bundle_p2p_depot_upload_limit": 4 << 20,  # the hosts must serve each other to finish soon
    }  # fmt: skip
    (tmp / "vars.yml").write_text(yaml.safe_dump(settings))
    yield Swarm(depot, hosts, bundle, digest.stdout.split()[0].decode(), PlaybookRunner(inventory, tmp / "vars.yml"))
    unblock(depot)


def ok(result: PlaybookResult) -> PlaybookResult:
    assert result.returncode == 0, result.explain()
    return result


def block(host: Host, port: int) -> None:
    """Drop every packet to ``port`` in the host's network namespace: its seeder is unreachable, SSH still works."""
    rules = f"add table inet swarmtest\nadd chain inet swarmtest in {{ type filter hook input priority 0 ; }}\n" \
            f"add rule inet swarmtest in tcp dport {port} drop\n"  # fmt: skip
    subprocess.run(["ip", "netns", "exec", host.netns, "nft", "-f", "-"], input=rules, text=True, check=True)


def unblock(host: Host) -> None:
    subprocess.run(["ip", "netns", "exec", host.netns, "nft", "delete", "table", "inet", "swarmtest"],
                   capture_output=True, check=False)  # fmt: skip


def peer_status(host: Host, digest: str, unit: str = "ollama-airgap-swarm") -> dict[str, int]:
    text = host.ssh(f"cat {SWARM}/{unit}-{digest[:16]}.status.json").stdout
    return dict(json.loads(text))


def no_peer_running(host: Host) -> bool:
    probe = host.ssh("systemctl is-active ollama-airgap-swarm ollama-airgap-swarm-seed", check=False)
    return "active\n" not in probe.stdout.replace("inactive", "")


def test_p2p_deploys_four_hosts(swarm: Swarm) -> None:
    result = ok(swarm.run("playbooks/bundle.yml"))
    print(f"\n[swarm] bundle.yml p2p to 4 hosts: {result.seconds:.1f} s")
    uploaded = 0
    for host in swarm.hosts:
        assert host.ssh(f"sha256sum {ROOT}/bundle.yaml").stdout.split()[0] == swarm.digest
        assert host.ssh(f"test -f /var/lib/ollama-airgap/verified/{swarm.digest}.json", check=False).returncode == 0
        assert host.ssh("ls /var/lib/ollama-airgap/incoming").stdout.strip() == ""  # fetched files removed
        uploaded += peer_status(host, swarm.digest)["uploaded"]
        assert no_peer_running(host)
    assert no_peer_running(swarm.depot)
    assert uploaded > 0  # the hosts served each other, not only the depot


def test_rerun_changes_nothing(swarm: Swarm) -> None:
    result = ok(swarm.run("playbooks/bundle.yml"))
    assert all(result.recap[h.name]["changed"] == 0 for h in swarm.hosts), result.explain()
    assert all(no_peer_running(h) for h in [swarm.depot, *swarm.hosts])


def test_depot_gone_fails_one_line_then_rerun_converges(swarm: Swarm) -> None:
    victim = swarm.hosts[0]
    before = victim.ssh(f"stat -c %i {ROOT}/bundle.yaml").stdout
    victim.ssh("rm -f /var/lib/ollama-airgap/verified/*.json")  # the host must fetch the bundle again
    block(swarm.depot, DEPOT_PORT)
    try:
        result = swarm.run("playbooks/bundle.yml")
    finally:
        unblock(swarm.depot)
    assert result.returncode != 0
    assert f"swarm: {victim.name}: no data for 10 s from the depot or the peers" in result.output, result.explain()
    assert victim.ssh(f"stat -c %i {ROOT}/bundle.yaml").stdout == before  # nothing half-installed
    assert all(no_peer_running(h) for h in [swarm.depot, *swarm.hosts])
    # A corrupt piece left on the host's disk: the re-run checks what is there and fetches that piece again.
    incoming = f"/var/lib/ollama-airgap/incoming/p2p-{swarm.digest[:16]}/bundle"
    big = victim.ssh(f"cd {ROOT} && find . -type f -size +1M -printf '%s %P\\n' | sort -n | tail -1").stdout.split()[1]
    victim.ssh(f"mkdir -p {incoming} && cp -a {ROOT}/. {incoming}/ && printf 'X' | dd of={incoming}/{big} bs=1 "
               "seek=4096 conv=notrunc status=none")  # fmt: skip
    again = ok(swarm.run("playbooks/bundle.yml"))
    assert again.recap[victim.name]["changed"] > 0
    assert (
        victim.ssh(f"sha256sum {ROOT}/{big}").stdout.split()[0]
        == victim.ssh(f"grep -F ' {big}' {ROOT}/SHA256SUMS").stdout.split()[0]
    )
    status = peer_status(victim, swarm.digest)
    assert 0 < status["downloaded"] < status["wanted"], status  # only the bad piece came over the wire
    # The depot's seeding runs once, delegated to the depot, and Ansible counts its change on whichever play host
    # comes first in the inventory; on the other hosts themselves nothing changes.
    others = tuple(f"changed: [{h.name}]" for h in swarm.hosts[1:])
    assert not [line for line in again.output.splitlines() if line.strip().startswith(others)], again.explain()
