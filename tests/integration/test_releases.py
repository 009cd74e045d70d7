"""Today's ollama release archives end to end: the test bed's nginx release mirror -> `bundle build` with overlays ->
the ollama role on the test bed's systemd hosts (base archive, then the -rocm / -mlx overlays on top, symlinks kept).

The release shapes imitate ollama's scripts/build_linux.sh and scripts/deduplicate_cuda_libs.sh (see
scripts/testbed/releases.py); the hosts are real systemd hosts reached over ssh.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
import requests
import yaml
import zstandard

from testbed.config import OLLAMA_VERSION_CURRENT, OLLAMA_VERSION_ZST
from testbed.hosts import Host, TestHosts
from testbed.mirrors import Mirrors
from testbed.releases import parse_checksums

if TYPE_CHECKING:
    from conftest import PlaybookResult, PlaybookRunner  # tests/integration/conftest.py

LIB = "/usr/local/lib/ollama"
OVERLAY_SPEC = {
    "name": "current",
    "ollama": {
        "version": OLLAMA_VERSION_CURRENT,
        "architectures": ["amd64", "arm64"],
        "rocm": True,
        "mlx": True,
        "jetpack": [5, 6],
    },
    "models": ["tinyllama:latest"],
}
ARCHIVES = [
    "ollama-linux-amd64.tar.zst",
    "ollama-linux-amd64-rocm.tar.zst",
    "ollama-linux-amd64-mlx.tar.zst",
    "ollama-linux-arm64.tar.zst",
    "ollama-linux-arm64-jetpack5.tar.zst",
    "ollama-linux-arm64-jetpack6.tar.zst",
]
# Symlink chains every amd64 host must have after the base archive (path below LIB -> link text).
BASE_LINKS = {
    "libggml-base.so": "libggml-base.so.0",
    "libggml-base.so.0": "libggml-base.so.0.9.7",
    "cuda_v12/libcudart.so": "libcudart.so.12",
    "cuda_v12/libcudart.so.12": "libcudart.so.12.8.90",
    "cuda_v13/libcublas.so": "libcublas.so.13",
    "cuda_v13/libcublas.so.13": "libcublas.so.13.1.0.3",
}
MLX_LINKS = {"mlx_cuda_v13/libcublas.so.13": "../cuda_v13/libcublas.so.13"}
ROCM_LINKS = {"rocm_v7_2/libhipblas.so": "libhipblas.so.3", "rocm_v7_2/libhipblas.so.3": "libhipblas.so.3.0.0"}


def _get(url: str) -> bytes:
    response = requests.get(url, timeout=30)
    response.raise_for_status()
    return response.content


def _members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(zstandard.ZstdDecompressor().decompress(data)), mode="r:") as archive:
        return {member.name: member for member in archive.getmembers()}


# --- the release mirror ------------------------------------------------------------------------------------------


def test_current_release_is_shaped_like_upstream(mirrors: Mirrors) -> None:
    base = f"{mirrors.release_base_url}/v{OLLAMA_VERSION_CURRENT}"
    sums_text = _get(f"{base}/sha256sum.txt").decode()
    assert sorted(line.split("  ")[1] for line in sums_text.splitlines()) == sorted(f"./{n}" for n in ARCHIVES)
    members: dict[str, dict[str, tarfile.TarInfo]] = {}
    for name, digest in parse_checksums(sums_text).items():
        data = _get(f"{base}/{name}")
        assert hashlib.sha256(data).hexdigest() == digest
        assert len(data) < 64 << 10  # tiny: the layout matters, not the bytes
        members[name] = _members(data)
        assert all(m.uid == m.gid == 0 for m in members[name].values())

    amd64 = members["ollama-linux-amd64.tar.zst"]
    assert amd64["bin/ollama"].isfile() and amd64["bin/ollama"].mode == 0o755
    assert {"lib/ollama/llama-server", "lib/ollama/vulkan/libggml-vulkan.so"} <= set(amd64)
    assert not any(name.startswith(("./", "lib/ollama/rocm", "lib/ollama/mlx")) for name in amd64)
    for path, target in BASE_LINKS.items():
        assert amd64[f"lib/ollama/{path}"].issym() and amd64[f"lib/ollama/{path}"].linkname == target
    assert amd64["lib/ollama/cuda_v13/libcublas.so.13.1.0.3"].isfile()

    rocm = members["ollama-linux-amd64-rocm.tar.zst"]  # tar c lib/ollama/rocm_v*: no lib/ or lib/ollama/ member
    assert "lib/ollama/rocm_v7_2/libggml-hip.so" in rocm
    assert all(name.startswith("lib/ollama/rocm_v7_2") for name in rocm)
    mlx = members["ollama-linux-amd64-mlx.tar.zst"]
    for path, target in MLX_LINKS.items():
        assert mlx[f"lib/ollama/{path}"].issym() and mlx[f"lib/ollama/{path}"].linkname == target
    assert "lib/ollama/cuda_v13/libcublas.so.13" not in mlx  # only the base archive has the link target

    arm64 = members["ollama-linux-arm64.tar.zst"]
    assert "bin/ollama" in arm64 and not any("jetpack" in n for n in arm64)
    for n in (5, 6):  # build_linux.sh: tar c ./lib/ollama/cuda_jetpackN
        jetpack = members[f"ollama-linux-arm64-jetpack{n}.tar.zst"]
        assert f"./lib/ollama/cuda_jetpack{n}/libggml-cuda.so" in jetpack
        assert all(name.startswith(f"./lib/ollama/cuda_jetpack{n}") for name in jetpack)


# --- the bundle --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def current_bundle(mirrors: Mirrors, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import build_bundle  # tests/integration/conftest.py

    tmp = tmp_path_factory.mktemp("current")
    spec = tmp / "current.yaml"
    spec.write_text(yaml.safe_dump(OVERLAY_SPEC))
    return build_bundle(mirrors, spec, tmp / "current.tar", tmp / "cache")


def test_bundle_carries_base_and_overlays_checked_against_sha256sum(mirrors: Mirrors, current_bundle: Path) -> None:
    upstream_text = _get(f"{mirrors.release_base_url}/v{OLLAMA_VERSION_CURRENT}/sha256sum.txt")
    upstream = parse_checksums(upstream_text.decode())
    with tarfile.open(current_bundle) as bundle:
        meta = yaml.safe_load(bundle.extractfile("bundle.yaml").read())  # type: ignore[union-attr]
        assert bundle.extractfile(f"ollama/{OLLAMA_VERSION_CURRENT}/sha256sum.txt").read() == upstream_text  # type: ignore[union-attr]
        files = meta["ollama"]["files"]
        # Base first, then its overlays, per architecture: the order a host unpacks them in. Each .tar.zst travels
        # as its plain tar (hosts need no zstd), chained to the upstream digest (issue 13).
        assert [f["upstream_archive"] for f in files] == ARCHIVES
        assert [f["name"] for f in files] == [name.removesuffix(".zst") for name in ARCHIVES]
        for entry in files:
            data = bundle.extractfile(entry["path"]).read()  # type: ignore[union-attr]
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
            assert entry["upstream_sha256"] == upstream[entry["upstream_archive"]]
            compressed = _get(f"{mirrors.release_base_url}/v{OLLAMA_VERSION_CURRENT}/{entry['upstream_archive']}")
            assert zstandard.ZstdDecompressor().decompressobj().decompress(compressed) == data
    assert meta["lock"]["ollama"]["files"] == {name: upstream[name] for name in ARCHIVES}


def test_lock_rebuild_pins_every_overlay(mirrors: Mirrors, current_bundle: Path, tmp_path: Path) -> None:
    """--lock resolves the base and overlay archives by their locked names: the same bundle, byte for byte."""
    lock = current_bundle.with_name("current.lock.yaml")
    assert sorted(yaml.safe_load(lock.read_text())["ollama"]["files"]) == sorted(ARCHIVES)
    github = urlsplit(mirrors.release_base_url)
    rebuilt = tmp_path / "again.tar"
    argv = [
        str(Path(sys.executable).parent / "bundle"), "build", str(current_bundle.with_name("current.yaml")),
        "--cache", str(tmp_path / "cache"), "-o", str(rebuilt), "-q", "--lock", str(lock),
        "--mirror", f"registry.ollama.ai={mirrors.registry_url}",
        "--mirror", f"github.com={github.scheme}://{github.netloc}",
    ]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert rebuilt.read_bytes() == current_bundle.read_bytes()


# --- the hosts ---------------------------------------------------------------------------------------------------


def _links(host: Host, links: dict[str, str]) -> dict[str, str]:
    command = "; ".join(f"printf '%s\\n' \"$(readlink {LIB}/{path})\"" for path in links)
    return dict(zip(links, host.ssh(command).stdout.splitlines(), strict=True))


def _exists(host: Host, path: str) -> bool:
    return host.ssh(f"test -e {path}", check=False).returncode == 0


def _deploy(runner: PlaybookRunner, bundle: Path, *extra: str, **extra_vars: object) -> PlaybookResult:
    return runner(
        "playbooks/bundle.yml", "playbooks/ollama.yml", extra=list(extra), bundle_src=str(bundle), **extra_vars
    )


@pytest.mark.hosts
def test_deploy_unpacks_overlays_on_top_keeping_symlinks(
    test_hosts: TestHosts, ansible_playbook: PlaybookRunner, current_bundle: Path, built_bundles: dict[str, Path]
) -> None:
    plain, amd = test_hosts.hosts[0], test_hosts.hosts[1]
    names = [plain.name, amd.name]
    amd.ssh("touch /dev/kfd")  # what amdgpu's compute device looks like to ollama_rocm: auto
    try:
        first = _deploy(ansible_playbook, current_bundle)
        assert first.returncode == 0, first.explain()
        for host in (plain, amd):
            assert OLLAMA_VERSION_CURRENT in host.ssh("/usr/local/bin/ollama --version 2>&1").stdout
            assert _links(host, BASE_LINKS) == BASE_LINKS
            assert _links(host, MLX_LINKS) == MLX_LINKS  # the -mlx overlay, unpacked over the base
            resolved = host.ssh(f"readlink -e {LIB}/mlx_cuda_v13/libcublas.so.13").stdout.strip()
            # {LIB} links to the active release's lib/ollama (roles/ollama keeps releases side by side).
            assert resolved == host.ssh(f"readlink -e {LIB}").stdout.strip() + "/cuda_v13/libcublas.so.13.1.0.3"
            assert host.ssh(f"head -c 60 {resolved}").stdout.startswith("PLACEHOLDER libcublas.so.13.1.0.3")
            assert _exists(host, f"{LIB}/llama-server") and _exists(host, f"{LIB}/vulkan/libggml-vulkan.so")
            assert not _exists(host, f"{LIB}/cuda_jetpack5")  # arm64 variants never land on amd64
            assert host.ssh(f"find {LIB} ! -user root | wc -l").stdout.strip() == "0"
        assert _links(amd, ROCM_LINKS) == ROCM_LINKS and _exists(amd, f"{LIB}/rocm_v7_2/libggml-hip.so")
        assert not _exists(plain, f"{LIB}/rocm_v7_2")  # no AMD GPU: no ROCm overlay

        again = _deploy(ansible_playbook, current_bundle)
        assert again.returncode == 0 and again.changed() == dict.fromkeys(names, 0), again.explain()

        # The AMD GPU goes away: --check --diff says the release would change there (and only there), changes
        # nothing; the real run then reinstalls without the ROCm overlay.
        amd.ssh("rm -f /dev/kfd")
        check = _deploy(ansible_playbook, current_bundle, "--check", "--diff")
        assert check.returncode == 0, check.explain()
        assert check.changed()[plain.name] == 0 and check.changed()[amd.name] > 0, check.explain()
        assert "ollama-release.sha256" in check.output
        assert _exists(amd, f"{LIB}/rocm_v7_2/libggml-hip.so")
        real = _deploy(ansible_playbook, current_bundle)
        assert real.returncode == 0 and real.changed()[amd.name] > 0 and real.changed()[plain.name] == 0
        assert not _exists(amd, f"{LIB}/rocm_v7_2") and _links(amd, MLX_LINKS) == MLX_LINKS

        # Asking for ROCm explicitly, and for the -mlx overlay not at all.
        forced = _deploy(ansible_playbook, current_bundle, "--limit", plain.name, ollama_rocm=True, ollama_mlx=False)
        assert forced.returncode == 0, forced.explain()
        assert _exists(plain, f"{LIB}/rocm_v7_2/libggml-hip.so") and not _exists(plain, f"{LIB}/mlx_cuda_v13")
    finally:
        amd.ssh("rm -f /dev/kfd", check=False)
        # Back to the demo release every other deploy test expects; the old lib/ollama goes first, as install.sh.
        back = _deploy(ansible_playbook, built_bundles[OLLAMA_VERSION_ZST])
    assert back.returncode == 0, back.explain()
    for host in (plain, amd):
        assert OLLAMA_VERSION_ZST in host.ssh("/usr/local/bin/ollama --version 2>&1").stdout
        assert not _exists(host, f"{LIB}/mlx_cuda_v13") and not _exists(host, f"{LIB}/rocm_v7_2")


@pytest.mark.hosts
def test_required_overlay_missing_from_bundle_is_refused(
    test_hosts: TestHosts, ansible_playbook: PlaybookRunner, built_bundles: dict[str, Path]
) -> None:
    host = test_hosts.hosts[0]
    result = _deploy(ansible_playbook, built_bundles[OLLAMA_VERSION_ZST], "--limit", host.name, ollama_rocm=True)
    assert result.returncode != 0
    assert (
        f"ollama: {host.name} asks for the rocm overlay (ollama_rocm) but the bundle demo has no "
        "ollama-linux-amd64-rocm archive; build it with the spec's ollama.rocm"
    ) in result.output, result.explain()


@pytest.mark.hosts
def test_jetpack_variant_chosen_from_nv_tegra_release(
    test_hosts: TestHosts, ansible_playbook: PlaybookRunner, current_bundle: Path
) -> None:
    """install.sh's rule (R36 -> jetpack6), on an amd64 host made to look like a Jetson: --check shows the plan."""
    host = test_hosts.hosts[0]
    host.ssh(
        "echo '# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64' >/etc/nv_tegra_release"
    )
    try:
        result = _deploy(ansible_playbook, current_bundle, "--limit", host.name, "--check", _ollama_arch="arm64")
    finally:
        host.ssh("rm -f /etc/nv_tegra_release", check=False)
    assert result.returncode == 0, result.explain()
    planned = [line for line in result.output.splitlines() if "; archives: " in line]
    assert planned, result.explain()
    assert any("ollama-linux-arm64.tar" in line for line in planned), result.explain()
    assert any("ollama-linux-arm64-jetpack6.tar" in line for line in planned), result.explain()
    assert not any("jetpack5" in line or "amd64" in line for line in planned), result.explain()
