"""Network faults, bit rot and a full disk, driven by a real fault source in front of the real registry.

Each case ends in a correct recovery or a one-line error that names the thing, with a non-zero exit and nothing
left behind that looks complete.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from testbed.faultproxy import Fault, FaultProxy, fault_proxy
from testbed.mirrors import Mirrors

pytestmark = pytest.mark.mirrors

MODEL = "tinyllama:1.1b"
BUNDLE = str(Path(sys.executable).with_name("bundle"))


@pytest.fixture
def proxy(mirrors: Mirrors) -> Iterator[FaultProxy]:
    with fault_proxy(mirrors.registry_url) as started:
        yield started


def spec_file(tmp_path: Path, models: list[str] | None = None) -> Path:
    path = tmp_path / "spec.yaml"
    spec = {"name": "faults", "ollama": {"version": "0.14.1"}, "models": models or [MODEL]}
    path.write_text(yaml.safe_dump(spec))
    return path


def build_argv(mirrors: Mirrors, proxy: FaultProxy, tmp_path: Path, cache: Path, out: Path, *extra: str) -> list[str]:
    """`bundle build` of the spec with the registry behind the fault proxy and releases straight from nginx."""
    github = urlsplit(mirrors.release_base_url)
    return [
        BUNDLE, "build", str(spec_file(tmp_path)), "--cache", str(cache), "-o", str(out),
        "--mirror", f"registry.ollama.ai={proxy.url}", "--mirror", f"github.com={github.scheme}://{github.netloc}",
        *extra,
    ]  # fmt: skip


def run_build(
    mirrors: Mirrors, proxy: FaultProxy, tmp_path: Path, *extra: str, cache: str = "cache", out: str = "out.tar"
) -> subprocess.CompletedProcess[str]:
    argv = build_argv(mirrors, proxy, tmp_path, tmp_path / cache, tmp_path / out, "--json", *extra)
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


def gguf_digest(mirrors: Mirrors, model: str = MODEL) -> tuple[str, int]:
    blob = mirrors.catalog[model].layer("application/vnd.ollama.image.model")
    return blob.digest, blob.size


def blob_requests(proxy: FaultProxy, digest: str) -> list:
    return [hit for hit in proxy.log if hit.path.endswith(f"/blobs/{digest}") and hit.method == "GET"]


def test_truncated_response_is_resumed_with_range(mirrors: Mirrors, proxy: FaultProxy, tmp_path: Path) -> None:
    digest, size = gguf_digest(mirrors)
    proxy.add(Fault(f"/blobs/{digest}", "truncate", after_bytes=size // 3))
    result = run_build(mirrors, proxy, tmp_path)
    assert result.returncode == 0, result.stderr
    hits = blob_requests(proxy, digest)
    assert hits[-1].range_header == f"bytes={size // 3}-", [(h.fault, h.range_header) for h in hits]
    model_bytes = sum(b.size for b in mirrors.catalog[MODEL].blobs()) + len(mirrors.catalog[MODEL].manifest)
    assert proxy.bytes_served <= model_bytes, "only the missing part of the cut blob was fetched again"


def test_5xx_and_429_are_retried_honouring_retry_after(mirrors: Mirrors, proxy: FaultProxy, tmp_path: Path) -> None:
    digest, _ = gguf_digest(mirrors)
    entry = mirrors.catalog[MODEL]
    proxy.add(Fault(f"/manifests/{entry.tag}", "status", status=500))
    proxy.add(Fault(f"/blobs/{entry.config.digest}", "status", status=502))
    proxy.add(Fault(f"/blobs/{digest}", "status", status=429, retry_after="2"))
    result = run_build(mirrors, proxy, tmp_path)
    assert result.returncode == 0, result.stderr
    hits = blob_requests(proxy, digest)
    throttled = next(i for i, h in enumerate(hits) if h.fault == "status")
    assert hits[throttled + 1].at - hits[throttled].at >= 1.9, "Retry-After: 2 was not honoured"


def test_retries_are_bounded(mirrors: Mirrors, proxy: FaultProxy, tmp_path: Path) -> None:
    proxy.add(Fault("/manifests/", "status", status=503, times=1000))
    result = run_build(mirrors, proxy, tmp_path, "--retries", "3")
    assert result.returncode == 4
    assert result.stderr.count("\n") == 1
    assert "gave up after 3 attempts (HTTP 503)" in result.stderr and "tinyllama" in result.stderr
    assert len([h for h in proxy.log if "/manifests/" in h.path]) == 3
    assert not (tmp_path / "out.tar").exists()


def test_stalled_mirror_times_out_then_retries(mirrors: Mirrors, proxy: FaultProxy, tmp_path: Path) -> None:
    digest, _ = gguf_digest(mirrors)
    proxy.add(Fault(f"/blobs/{digest}", "stall", seconds=6))
    started = time.monotonic()
    result = run_build(mirrors, proxy, tmp_path, "--timeout", "1")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 30
    assert len(blob_requests(proxy, digest)) >= 2


def test_corrupted_transfer_is_rejected_and_not_cached(mirrors: Mirrors, proxy: FaultProxy, tmp_path: Path) -> None:
    digest, size = gguf_digest(mirrors)
    proxy.add(Fault(f"/blobs/{digest}", "corrupt", after_bytes=size // 2))
    result = run_build(mirrors, proxy, tmp_path)
    assert result.returncode == 3
    assert f"blob {digest}: digest mismatch" in result.stderr
    assert not (tmp_path / "cache/blobs/sha256" / digest[7:]).exists()
    assert not (tmp_path / "cache/partial" / digest[7:]).exists()
    assert run_build(mirrors, proxy, tmp_path).returncode == 0


def test_kill_9_mid_blob_resumes_without_refetching(mirrors: Mirrors, proxy: FaultProxy, tmp_path: Path) -> None:
    digest, size = gguf_digest(mirrors)
    proxy.add(Fault(f"/blobs/{digest}", "throttle", rate=max(size // 4, 64 * 1024), times=1))
    process = subprocess.Popen(
        build_argv(mirrors, proxy, tmp_path, tmp_path / "cache", tmp_path / "out.tar", "-q"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    partial = tmp_path / "cache/partial" / digest[7:]
    deadline = time.monotonic() + 60
    while not (partial.exists() and partial.stat().st_size > size // 3):
        assert time.monotonic() < deadline and process.poll() is None, "the build ended before it could be killed"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    kept = partial.stat().st_size
    assert 0 < kept < size
    proxy.clear()
    result = run_build(mirrors, proxy, tmp_path)
    assert result.returncode == 0, result.stderr
    served_again = sum(1 for _ in blob_requests(proxy, digest)) and proxy.bytes_served
    refetched = [h for h in blob_requests(proxy, digest) if h.range_header]
    assert refetched and refetched[0].range_header == f"bytes={kept}-"
    blob_bytes_again = served_again - sum(b.size for b in mirrors.catalog[MODEL].blobs() if b.digest != digest)
    overlap = blob_bytes_again - (size - kept)
    assert overlap < size * 0.10, f"re-downloaded {overlap} bytes already fetched before the kill"
    print(f"kill -9 at {kept}/{size} bytes; re-run fetched {blob_bytes_again} bytes of that blob (overlap {overlap})")


def test_rotten_cached_blob_is_caught_and_healed(mirrors: Mirrors, proxy: FaultProxy, tmp_path: Path) -> None:
    assert run_build(mirrors, proxy, tmp_path).returncode == 0
    digest, _ = gguf_digest(mirrors)
    cached = tmp_path / "cache/blobs/sha256" / digest[7:]
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0x10
    cached.write_bytes(bytes(data))
    result = run_build(mirrors, proxy, tmp_path, out="healed.tar")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["fetched_blobs"] == 1
    assert subprocess.run([BUNDLE, "verify", str(tmp_path / "healed.tar"), "-q"], check=False).returncode == 0
    assert cached.read_bytes() == mirrors.catalog[MODEL].layer("application/vnd.ollama.image.model").path.read_bytes()


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=80m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_before_download_is_refused(
    mirrors: Mirrors, proxy: FaultProxy, small_fs: Path, tmp_path: Path
) -> None:
    filler = small_fs / "filler"
    subprocess.run(["fallocate", "-l", "70m", str(filler)], check=True)
    result = run_build(mirrors, proxy, tmp_path, cache=str(small_fs / "cache"))
    assert result.returncode == 5
    assert f"not enough free space in {small_fs / 'cache'}" in result.stderr
    assert not any((small_fs / "cache/partial").iterdir())
    # Only the models' config blobs (a few hundred bytes, read for `requires` before anything else) were asked for.
    configs = {entry.config.digest for entry in mirrors.catalog}
    assert not [h for h in proxy.log if "/blobs/" in h.path and h.path.rsplit("/", 1)[-1] not in configs]


def test_disk_full_mid_download_then_freed(mirrors: Mirrors, proxy: FaultProxy, small_fs: Path, tmp_path: Path) -> None:
    digest, size = gguf_digest(mirrors)
    proxy.add(Fault(f"/blobs/{digest}", "throttle", rate=max(size // 3, 64 * 1024)))
    cache = small_fs / "cache"
    process = subprocess.Popen(
        build_argv(mirrors, proxy, tmp_path, cache, tmp_path / "out.tar", "-q"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    partial = cache / "partial" / digest[7:]
    deadline = time.monotonic() + 60
    while not (partial.exists() and partial.stat().st_size > 0):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.02)
    filler = small_fs / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M"], capture_output=True, check=False)  # to ENOSPC
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 5, stderr
    assert stderr.count("\n") == 1 and f"no space left on the device holding {partial}" in stderr
    assert not (cache / "blobs/sha256" / digest[7:]).exists(), "nothing that looks complete"
    assert not (tmp_path / "out.tar").exists()
    filler.unlink()
    proxy.clear()
    result = run_build(mirrors, proxy, tmp_path, cache=str(cache))
    assert result.returncode == 0, result.stderr
