"""Big blobs in parallel ranged parts, against the real docker-registry and nginx behind the fault proxy, which caps
each connection as a CDN does. Small sizes keep it fast: an 8 MiB blob in 8 parts of 1 MiB."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from ollama_airgap.cache import BlobCache
from ollama_airgap.download import Fetcher, RetryPolicy
from ollama_airgap.errors import VerifyError
from ollama_airgap.ranged import RangedConfig, state_path
from ollama_airgap.registry import RegistryClient
from testbed.faultproxy import Fault, FaultProxy, Hit, fault_proxy
from testbed.mirrors import Mirrors
from testbed.nginx import ASSET_PREFIX
from testbed.registry import RegistryPusher

pytestmark = pytest.mark.mirrors

MIB = 1 << 20
SIZE = 8 * MIB
PARTS = 8
CONFIG = RangedConfig(parts=PARTS, threshold=4 * MIB, part_size=MIB)
REPOSITORY = "ranged/blob"
BUNDLE = str(Path(sys.executable).with_name("bundle"))


@dataclass(frozen=True)
class Blob:
    digest: str
    registry_url: str  # the proxy's base URL is put in front by the tests
    nginx_path: str

    @property
    def hex(self) -> str:
        return self.digest[7:]


@pytest.fixture(scope="module")
def blob(mirrors: Mirrors) -> Blob:
    """8 MiB of seeded random bytes pushed to the registry, and the registry's own copy linked into nginx's root."""
    data = random.Random(14).randbytes(SIZE)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    RegistryPusher(mirrors.registry_url).push_blob(REPOSITORY, digest, data)
    hex_digest = digest[7:]
    stored = mirrors.registry.data_dir / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest / "data"
    web_dir = mirrors.releases.root / "ranged" / "blobs" / "releases" / "download" / "v0"
    web_dir.mkdir(parents=True, exist_ok=True)
    if not (web_dir / hex_digest).exists():
        os.link(stored, web_dir / hex_digest)
    return Blob(digest, f"/v2/{REPOSITORY}/blobs/{digest}", f"{ASSET_PREFIX}/ranged/blobs/v0/{hex_digest}")


@pytest.fixture
def registry_proxy(mirrors: Mirrors) -> Iterator[FaultProxy]:
    with fault_proxy(mirrors.registry_url) as started:
        yield started


@pytest.fixture
def nginx_proxy(mirrors: Mirrors) -> Iterator[FaultProxy]:
    with fault_proxy(mirrors.releases_server.url) as started:
        yield started


def fetcher(parts: RangedConfig = CONFIG) -> Fetcher:
    return Fetcher(RetryPolicy(backoff=0.05, read_timeout=10), parts)


def part_ranges(config: RangedConfig = CONFIG, size: int = SIZE) -> list[str]:
    return [f"bytes={p.offset}-{p.offset + p.size - 1}" for p in config.plan(size)]


def ranged_gets(proxy: FaultProxy, path: str) -> list[Hit]:
    return [h for h in proxy.log if h.method == "GET" and h.path.endswith(path) and h.range_header != "bytes=0-0"]


def fetch_registry(proxy: FaultProxy, blob: Blob, cache: BlobCache, client: Fetcher | None = None) -> Path:
    registry = RegistryClient(lambda _host: proxy.url, client or fetcher())
    return registry.fetch_blob("registry.ollama.ai", REPOSITORY, blob.digest, SIZE, cache)


def test_registry_blob_in_parallel_parts_under_a_per_connection_cap(
    registry_proxy: FaultProxy, blob: Blob, tmp_path: Path
) -> None:
    registry_proxy.cap(conn_rate=2 * MIB)  # one stream would take 4 s
    started = time.monotonic()
    path = fetch_registry(registry_proxy, blob, BlobCache(tmp_path))
    elapsed = time.monotonic() - started
    assert hashlib.sha256(path.read_bytes()).hexdigest() == blob.hex
    hits = ranged_gets(registry_proxy, blob.registry_url)
    assert sorted(h.range_header or "" for h in hits) == sorted(part_ranges())
    assert all(h.status == 206 for h in hits)
    assert elapsed < 2.0, f"8 parts at 2 MiB/s each took {elapsed:.2f} s (one stream: 4 s)"
    assert not state_path(BlobCache(tmp_path).partial(blob.digest)).exists()


def test_nginx_in_parts_and_a_dropped_connection_resumes_its_part(
    nginx_proxy: FaultProxy, blob: Blob, tmp_path: Path
) -> None:
    third = part_ranges()[3].split("=")[1].split("-")[0]
    nginx_proxy.add(Fault(blob.nginx_path, "truncate", after_bytes=300_000, range_prefix=f"bytes={third}-"))
    out = tmp_path / "blob"
    client = fetcher()
    client.download(nginx_proxy.url + blob.nginx_path, out, sha256=blob.hex, size=SIZE, what="nginx blob")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == blob.hex
    ranges = [h.range_header for h in ranged_gets(nginx_proxy, blob.nginx_path)]
    resumed = f"bytes={int(third) + 300_000}-{int(third) + MIB - 1}"
    assert sorted(ranges) == sorted([*part_ranges(), resumed]), ranges
    assert nginx_proxy.bytes_served == SIZE + 1, "only the cut part's missing bytes were asked again (+1 probe byte)"
    assert client.stats.retries == 1


def test_restart_fetches_only_the_missing_parts(registry_proxy: FaultProxy, blob: Blob, tmp_path: Path) -> None:
    """kill -9 while half the parts are done: the next run asks only for the rest, from where each stopped."""
    for n, wanted in enumerate(part_ranges()):
        if n >= PARTS // 2:
            registry_proxy.add(Fault(blob.registry_url, "throttle", rate=64 * 1024, range_prefix=wanted))
    cache = tmp_path / "cache"
    code = (
        "import sys; from pathlib import Path; from ollama_airgap.cache import BlobCache\n"
        "from ollama_airgap.download import Fetcher\n"
        "from ollama_airgap.ranged import RangedConfig; from ollama_airgap.registry import RegistryClient;"
        f"f = Fetcher(ranged=RangedConfig({PARTS}, {4 * MIB}, {MIB}))\n"
        f"c = RegistryClient(lambda h: {registry_proxy.url!r}, f)\n"
        f"c.fetch_blob('registry.ollama.ai', {REPOSITORY!r}, {blob.digest!r}, {SIZE}, BlobCache(Path(sys.argv[1])))"
    )
    process = subprocess.Popen([sys.executable, "-c", code, str(cache)])
    state = state_path(BlobCache(cache).partial(blob.digest))
    deadline = time.monotonic() + 30
    recorded: list[list[int]] = []
    while True:
        assert time.monotonic() < deadline and process.poll() is None, "the download ended before it was killed"
        if state.exists():
            recorded = json.loads(state.read_text())["parts"]
            if sum(1 for _, size, done in recorded if done == size) == PARTS // 2 and all(d for *_, d in recorded):
                break
        time.sleep(0.05)
    process.kill()
    process.wait()
    recorded = json.loads(state.read_text())["parts"]
    registry_proxy.clear()
    path = fetch_registry(registry_proxy, blob, BlobCache(cache))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == blob.hex
    again = sorted(h.range_header or "" for h in ranged_gets(registry_proxy, blob.registry_url))
    missing = sorted(f"bytes={o + d}-{o + s - 1}" for o, s, d in recorded if d < s)
    assert again == missing, "complete parts were not asked again, the others from where they stopped"
    # Bytes sent for this run's requests (threads still serving the killed process may add to bytes_served).
    sent = sum(h.sent for h in registry_proxy.log if h.path.endswith(blob.registry_url))
    assert sent == sum(s - d for _, s, d in recorded) + 1


@pytest.mark.parametrize("where", ["probe", "part"])
def test_server_ignoring_range_falls_back_to_one_stream(
    nginx_proxy: FaultProxy, blob: Blob, tmp_path: Path, where: str
) -> None:
    prefix = "bytes=0-0" if where == "probe" else part_ranges()[2]
    nginx_proxy.add(Fault(blob.nginx_path, "ignore_range", range_prefix=prefix))
    out = tmp_path / "blob"
    fetcher().download(nginx_proxy.url + blob.nginx_path, out, sha256=blob.hex, size=SIZE, what="nginx blob")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == blob.hex
    assert not state_path(out).exists()
    if where == "probe":
        assert [(h.status, h.sent) for h in nginx_proxy.log] == [(200, SIZE)], "the 200 is used as the one stream"
    else:
        statuses = [h.status for h in nginx_proxy.log if h.range_header == prefix]
        assert statuses == [200], "the part answered without its range"
        # The rest comes in one stream from the contiguous prefix done so far; that prefix may still be empty
        # when the ignored part answers first, and then the stream asks for the whole blob without Range.
        last = nginx_proxy.log[-1]
        start = int(last.range_header.removeprefix("bytes=").removesuffix("-")) if last.range_header else 0
        assert last.range_header is None or last.range_header == f"bytes={start}-", "one open-ended stream"
        assert (last.status, last.sent) == ((206 if start else 200), SIZE - start), "the rest came in that stream"


def test_corrupt_part_is_caught_and_nothing_kept(registry_proxy: FaultProxy, blob: Blob, tmp_path: Path) -> None:
    registry_proxy.add(Fault(blob.registry_url, "corrupt", after_bytes=1000, range_prefix=part_ranges()[5]))
    cache = BlobCache(tmp_path)
    with pytest.raises(VerifyError) as caught:
        fetch_registry(registry_proxy, blob, cache)
    message = str(caught.value)
    assert "\n" not in message and f"blob {blob.digest}: digest mismatch" in message
    assert not cache.partial(blob.digest).exists() and not state_path(cache.partial(blob.digest)).exists()
    assert not cache.has(blob.digest)
    fetch_registry(registry_proxy, blob, cache)
    assert cache.check(blob.digest, SIZE)


def test_bundle_build_splits_the_model_blob(mirrors: Mirrors, registry_proxy: FaultProxy, tmp_path: Path) -> None:
    """The CLI: parts from the environment, progress quiet off a TTY, --json as before; a corrupt part exits 3."""
    entry = mirrors.catalog["tinyllama:1.1b"]
    layer = entry.layer("application/vnd.ollama.image.model")
    config = RangedConfig(parts=4, threshold=layer.size // 2, part_size=max(1, layer.size // 8))
    assert config.splits(layer.size)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "ranged", "ollama": {"version": "0.14.1"}, "models": ["tinyllama:1.1b"]}))
    github = mirrors.release_base_url.split("/ollama/")[0]
    argv = [
        BUNDLE, "build", str(spec), "--cache", str(tmp_path / "cache"), "-o", str(tmp_path / "out.tar"), "--json",
        "--mirror", f"registry.ollama.ai={registry_proxy.url}", "--mirror", f"github.com={github}",
        "--part-threshold", str(config.threshold),
    ]  # fmt: skip
    env = {**os.environ, "OLLAMA_AIRGAP_PARTS": "4", "OLLAMA_AIRGAP_PART_SIZE": str(config.part_size)}
    path = f"/blobs/{layer.digest}"
    registry_proxy.add(Fault(path, "corrupt", after_bytes=10, range_prefix=part_ranges(config, layer.size)[1]))
    failed = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert failed.returncode == 3 and failed.stderr.count("\n") == 1, failed.stderr
    assert f"blob {layer.digest}: digest mismatch" in failed.stderr
    registry_proxy.clear()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and json.loads(result.stdout)["ok"] is True
    ranges = sorted(h.range_header or "" for h in ranged_gets(registry_proxy, path))
    assert ranges == sorted(part_ranges(config, layer.size))


def test_expired_direct_url_is_resolved_again(nginx_proxy: FaultProxy, blob: Blob, tmp_path: Path) -> None:
    """GitHub-style 302 to a signed asset URL: a 403 there sends the parts back to the release URL for a fresh one."""
    release = f"/ranged/blobs/releases/download/v0/{blob.hex}"
    expired = part_ranges()[4]
    nginx_proxy.add(Fault(blob.nginx_path, "status", status=403, range_prefix=expired))
    out = tmp_path / "blob"
    fetcher().download(nginx_proxy.url + release, out, sha256=blob.hex, size=SIZE, what="release blob")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == blob.hex
    asked = [(h.path.split("?")[0], h.status) for h in nginx_proxy.log if h.range_header == expired]
    assert asked == [(blob.nginx_path, 403), (release, 302), (blob.nginx_path, 206)], asked
