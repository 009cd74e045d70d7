"""The benchmark's upstream: the test bed's real docker-registry and nginx, plus big model blobs pushed into them.

A big blob is a tiny valid GGUF (header, vocabulary, tensors) followed by random bytes up to the wanted size, so
the registry, `bundle build` and the ollama stand-in all take it for a model, while no real GGUF of gigabytes is
generated. It is pushed as the model layer of ``bench/big:<label>`` (with a config and a template layer) and the
registry's own stored copy is hard-linked into nginx's web root, so the same bytes are served both ways without
a third copy on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from testbed import config as testbed_config
from testbed.gguf_models import write_tiny_gguf
from testbed.mirrors import Mirrors, start_mirrors
from testbed.nginx import ASSET_PREFIX
from testbed.registry import CONFIG_V1, MANIFEST_V2, MEDIA_MODEL, MEDIA_TEMPLATE, ZEPHYR_TEMPLATE, RegistryPusher

REPOSITORY = "bench/big"
RANDOM_CHUNK = 16 << 20
OLLAMA_VERSION = testbed_config.OLLAMA_VERSION_ZST


def parse_size(text: str) -> int:
    """ "100M", "1G", "2G", "4G" (binary units) or a plain byte count."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def size_label(size: int) -> str:
    for unit, factor in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


@dataclass(frozen=True)
class BigModel:
    size: int
    tag: str
    digest: str  # sha256:<hex> of the model layer
    registry_file: Path  # the registry's stored copy (the bytes both servers send)
    blob_url: str  # GET on the registry
    nginx_url: str  # the same bytes from nginx

    @property
    def name(self) -> str:
        return f"{REPOSITORY}:{self.tag}"

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]


class Bed:
    """Mirrors + big models under ``work_dir``; ``close()`` stops the servers by PID and deletes everything."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.mirrors: Mirrors = start_mirrors(work_dir / "mirrors")
        self.pusher = RegistryPusher(self.mirrors.registry_url)
        self.models: dict[int, BigModel] = {}
        self._tiny_gguf = write_tiny_gguf(work_dir / "tiny.gguf", name="Bench Big", seed=7)

    def close(self) -> None:
        try:
            self.mirrors.stop()
        finally:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    # --- blobs ---

    def model(self, size: int) -> BigModel:
        """The big model of ``size`` bytes, generated and pushed on first use."""
        if size not in self.models:
            self.models[size] = self._push(size)
        return self.models[size]

    def _write_blob(self, path: Path, size: int) -> str:
        hasher = hashlib.sha256()
        head = self._tiny_gguf.read_bytes()[:size]
        with open(path, "wb", buffering=0) as out:
            out.write(head)
            hasher.update(head)
            left = size - len(head)
            while left:
                chunk = os.urandom(min(RANDOM_CHUNK, left))
                out.write(chunk)
                hasher.update(chunk)
                left -= len(chunk)
        return "sha256:" + hasher.hexdigest()

    def _push(self, size: int) -> BigModel:
        tag = size_label(size).lower()
        source = self.work_dir / f"blob-{tag}.gguf"
        digest = self._write_blob(source, size)
        self.pusher.push_blob(REPOSITORY, digest, source)
        source.unlink()  # the registry holds its own copy now
        template = ZEPHYR_TEMPLATE.encode()
        template_digest = "sha256:" + hashlib.sha256(template).hexdigest()
        self.pusher.push_blob(REPOSITORY, template_digest, template)
        layers = [
            {"mediaType": MEDIA_MODEL, "digest": digest, "size": size},
            {"mediaType": MEDIA_TEMPLATE, "digest": template_digest, "size": len(template)},
        ]
        config = json.dumps(
            {
                "model_format": "gguf",
                "model_family": "llama",
                "model_families": ["llama"],
                "model_type": size_label(size),
                "file_type": "Q8_0",
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
            },
            separators=(",", ":"),
        ).encode()
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        self.pusher.push_blob(REPOSITORY, config_digest, config)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_V2,
                "config": {"mediaType": CONFIG_V1, "digest": config_digest, "size": len(config)},
                "layers": layers,
            },
            separators=(",", ":"),
        ).encode()
        self.pusher.put_manifest(REPOSITORY, tag, manifest)

        hex_digest = digest.split(":", 1)[1]
        registry_file = (
            self.mirrors.registry.data_dir / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest / "data"
        )
        if registry_file.stat().st_size != size:
            raise RuntimeError(f"registry stored {registry_file} with an unexpected size")
        # nginx's asset location maps <prefix>/<owner>/<repo>/<tag>/<asset> to <root>/<owner>/<repo>/releases/...
        web_dir = self.mirrors.releases.root / "bench" / "blobs" / "releases" / "download" / "v0"
        web_dir.mkdir(parents=True, exist_ok=True)
        linked = web_dir / hex_digest
        if not linked.exists():
            os.link(registry_file, linked)
        return BigModel(
            size=size,
            tag=tag,
            digest=digest,
            registry_file=registry_file,
            blob_url=f"{self.mirrors.registry_url}/v2/{REPOSITORY}/blobs/{digest}",
            nginx_url=f"{self.mirrors.releases_server.url}{ASSET_PREFIX}/bench/blobs/v0/{hex_digest}",
        )

    # --- `bundle build` inputs ---

    def mirror_args(self) -> list[str]:
        github = urlsplit(self.mirrors.release_base_url)
        return [
            "--mirror",
            f"registry.ollama.ai={self.mirrors.registry_url}",
            "--mirror",
            f"github.com={github.scheme}://{github.netloc}",
        ]

    def mirror_map(self) -> dict[str, str]:
        github = urlsplit(self.mirrors.release_base_url)
        return {"registry.ollama.ai": self.mirrors.registry_url, "github.com": f"{github.scheme}://{github.netloc}"}

    def write_spec(self, model: BigModel, architectures: tuple[str, ...] = ("amd64",)) -> Path:
        spec = {
            "name": f"bench-{model.tag}",
            "ollama": {"version": OLLAMA_VERSION, "architectures": list(architectures)},
            "models": [model.name],
        }
        path = self.work_dir / f"bench-{model.tag}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path
