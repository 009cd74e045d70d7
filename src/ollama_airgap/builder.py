"""`bundle build`: resolve the spec, check free disk, fetch everything into the cache (verified), write complete
Modelfiles, and pack one archive straight from the cache."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .bundle import LOCK_NAME, Entry, manifest_bytes, pack, sums_text
from .cache import BlobCache
from .container_image import ImageArchive, ResolvedImage, image_archive, resolve_image
from .delta import BaseBundle, delta_meta, sidecar_path, split_entries
from .deploy_kit import KitOptions, assemble, find_repo, wheel_pins
from .download import Fetcher
from .errors import AirgapError, DiskSpaceError, SpecError, UnsupportedModelError, VerifyError
from .fleet_kit import fetch_depot, fleet_meta, resolve_depot
from .hashing import digest_hex, sha256_bytes, sha256_file
from .lock import Lock
from .model_meta import model_facts_meta
from .names import ModelName
from .ollama_compat import COMMAND_SINCE, check_config, is_cloud_tag, supports_command, user_agent
from .ollama_model import (
    CONFIG,
    LICENSE,
    MANIFEST,
    MESSAGES,
    MODEL,
    PARAMS,
    SYSTEM,
    TEMPLATE,
    Layer,
    Modelfile,
    ModelManifest,
    RestoreOnly,
    check_layers,
    modelfile_from_layers,
    parse_manifest,
    parse_modelfile,
)
from .ollama_release import ARCHIVE_SUFFIXES, ReleaseFetcher, ReleaseFile, asset_names
from .progress import Reporter
from .registry import OLLAMA_ACCEPT, Manifest, RegistryClient
from .release_tar import ZST, carry
from .signing import Ed25519PrivateKey, sign
from .spec import LocalModel, Spec
from .swarm_kit import p2p_entries

TAR_OVERHEAD_PER_FILE = 3 * 512
# Image layers are stored uncompressed in the docker-archive; the registry gives only compressed sizes.
IMAGE_EXPANSION_ESTIMATE = 3
DISK_MARGIN = 64 << 20
MAX_CONFIG = 4 << 20  # a model's config blob is a few hundred bytes


@dataclass
class ResolvedModel:
    name: ModelName
    source: str  # registry | local | store
    manifest: Manifest
    parsed: ModelManifest
    config: dict[str, Any] = field(default_factory=dict)
    licenses: list[str] = field(default_factory=list)
    restore_only_reason: str = ""  # set when no Modelfile can carry the model

    @property
    def manifest_path(self) -> str:
        return f"models/{self.name.manifest_path}"

    @property
    def modelfile_path(self) -> str:
        n = self.name
        return f"modelfiles/{n.host}/{n.namespace}/{n.model}/{n.tag}.Modelfile"


@dataclass
class BuildResult:
    archive: Path
    size: int
    bundle_digest: str
    lock_path: Path
    files: int
    models: list[dict[str, Any]]
    bytes_downloaded: int
    cached_blobs: int
    fetched_blobs: int
    delta_of: str = ""  # base bundle digest when this is a differential bundle
    carried_files: int = 0
    carried_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "archive": str(self.archive),
            "size": self.size,
            "bundle_digest": self.bundle_digest,
            "lock": str(self.lock_path),
            "files": self.files,
            "models": self.models,
            "bytes_downloaded": self.bytes_downloaded,
            "cached_blobs": self.cached_blobs,
            "fetched_blobs": self.fetched_blobs,
            "delta_of": self.delta_of or None,
            "carried_files": self.carried_files,
            "carried_bytes": self.carried_bytes,
        }


def blob_path(digest: str) -> str:
    return f"models/blobs/sha256-{digest_hex(digest)}"


class Builder:
    def __init__(
        self,
        spec: Spec,
        cache: BlobCache,
        reporter: Reporter,
        *,
        lock: Lock | None = None,
        jobs: int = 4,
        fetcher: Fetcher | None = None,
        sign_key: Ed25519PrivateKey | None = None,
        base: BaseBundle | None = None,
        deploy_kit: KitOptions | None = None,
    ) -> None:
        self.sign_key = sign_key
        # The deploy kit (None: --no-deploy-kit); a missing repository is refused before anything downloads.
        self.kit_options = deploy_kit
        if deploy_kit is not None and spec.deploy_kit is not None:
            pins = tuple(sorted(lock.kit_wheels.items())) if lock else ()
            repo = find_repo(deploy_kit.repo)
            self.kit_options = KitOptions(repo, deploy_kit.index_url, deploy_kit.find_links, pins)
        self.base = base  # build a differential bundle carrying only what this base lacks
        self.spec = spec
        self.cache = cache
        self.reporter = reporter
        self.lock = lock
        self.jobs = max(1, jobs)
        self.fetcher = fetcher or Fetcher()
        self.registry = RegistryClient(spec.mirror_for, self.fetcher)
        # Models are asked for as the pinned ollama asks (its User-Agent), on the build's first architecture.
        arch = "arm64" if spec.ollama.architectures[0].startswith("arm64") else "amd64"
        self.model_registry = RegistryClient(spec.mirror_for, self.fetcher, user_agent(spec.ollama.version, arch))
        self.prefetched: set[str] = set()  # config blobs fetched while resolving
        self._config_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self.releases = ReleaseFetcher(spec.mirror_for("github.com"), self.fetcher)
        if lock and lock.bundle != spec.name:
            raise SpecError(f"lock is for bundle {lock.bundle!r}, the spec is {spec.name!r}")

    # --- resolve ---------------------------------------------------------------------------------------------

    def resolve_release(self) -> tuple[bytes, list[ReleaseFile]]:
        version = self.spec.ollama.version
        if self.lock and self.lock.ollama_version != version:
            raise SpecError(
                f"{self.spec.path}: ollama.version: {version} differs from the lock's {self.lock.ollama_version}"
            )
        sums_data, sums = self.releases.sha256sums(version)
        files = []
        for arch in self.spec.ollama.architectures:
            wanted = self.spec.ollama
            for flavour in asset_names(arch, rocm=wanted.rocm, mlx=wanted.mlx, jetpack=wanted.jetpack):
                pinned = None
                if self.lock:
                    locked = (flavour + suffix for suffix in ARCHIVE_SUFFIXES)
                    pinned = next((name for name in locked if name in self.lock.release_files), None)
                    if pinned is None:
                        raise SpecError(f"{flavour} is not in the lock; build without --lock to re-resolve")
                release = self.releases.resolve(version, flavour, sums, pinned)
                if self.lock and self.lock.release_files[release.name] != release.sha256:
                    raise VerifyError(
                        f"ollama v{version} {release.name}: upstream sha256 {release.sha256} differs from the lock"
                    )
                files.append(release)
        return sums_data, files

    def resolve_registry_model(self, name: ModelName) -> ResolvedModel:
        """Manifest and config only: a cloud model, a ``requires`` newer than the pinned ollama and an unknown layer
        type are refused here, before any model blob is downloaded."""
        what = f"model {name.short}"
        if is_cloud_tag(name.tag):
            raise UnsupportedModelError(
                f"{what}: a cloud model (tag {name.tag!r}) runs on ollama.com, not on an air-gapped host; "
                "it cannot be bundled"
            )
        reference = name.tag
        if self.lock:
            if str(name) not in self.lock.models:
                raise SpecError(f"model {name.short} is not in the lock; build without --lock to re-resolve")
            reference = self.lock.models[str(name)]
        manifest = self.model_registry.manifest(name.host, name.repository, reference, OLLAMA_ACCEPT)
        parsed = parse_manifest(manifest.json(), name.short)
        config_layer = parsed.config
        if config_layer.size > MAX_CONFIG:
            raise VerifyError(f"{what}: config blob {config_layer.digest} is {config_layer.size} bytes, too large")
        with self._locks_lock:
            config_lock = self._config_locks.setdefault(config_layer.digest, threading.Lock())
        with config_lock:  # models resolved at once may share a config blob
            if not self.cache.has(config_layer.digest) or not self.cache.check(config_layer.digest, config_layer.size):
                self.model_registry.fetch_blob(
                    name.host, name.repository, config_layer.digest, config_layer.size, self.cache
                )
                self.prefetched.add(config_layer.digest)
        model = ResolvedModel(name, "registry", manifest, parsed, config=self._load_config(config_layer, what))
        self._check_model(model, what)
        return model

    def _load_config(self, layer: Layer, what: str) -> dict[str, Any]:
        try:
            loaded = json.loads(self.cache.path(layer.digest).read_bytes())
        except (OSError, ValueError):
            raise VerifyError(f"{what}: config blob {layer.digest} is not JSON") from None
        if not isinstance(loaded, dict):
            raise VerifyError(f"{what}: config blob {layer.digest} is not a JSON object")
        return loaded

    def _check_model(self, model: ResolvedModel, what: str) -> None:
        """Cloud and ``requires`` first (a too-new model's layers are expected to be new), then the layer types."""
        check_config(what, model.config, self.spec.ollama.version)
        check_layers(model.parsed, what)

    def resolve_store_model(self, store: Path, name: ModelName) -> ResolvedModel:
        path = store / name.manifest_path
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise AirgapError(f"model {name.short} not found in the ollama store {store} (no {path})") from None
        manifest = Manifest(data=data, media_type=MANIFEST, digest="sha256:" + sha256_bytes(data))
        self._check_locked(name, manifest.digest)
        what = f"model {name.short} in {store}"
        parsed = parse_manifest(manifest.json(), what)
        config_source = store / "blobs" / f"sha256-{digest_hex(parsed.config.digest)}"
        if not self.cache.has(parsed.config.digest):
            self.cache.import_file(config_source, parsed.config.digest, what)
        model = ResolvedModel(name, "store", manifest, parsed, config=self._load_config(parsed.config, what))
        self._check_model(model, what)
        for blob in parsed.blobs:
            if not self.cache.has(blob.digest):
                source = store / "blobs" / f"sha256-{digest_hex(blob.digest)}"
                self.cache.import_file(source, blob.digest, f"{name.short} in {store}")
        return model

    def resolve_local_model(self, local: LocalModel) -> ResolvedModel:
        what = f"local model {local.name.short}"
        with open(local.gguf, "rb") as handle:
            if handle.read(4) != b"GGUF":
                raise SpecError(f"{self.spec.path}: {what}: {local.gguf} is not a GGUF file")
        if local.modelfile:
            user = parse_modelfile(local.modelfile.read_text(encoding="utf-8"), str(local.modelfile))
        else:
            user = Modelfile(template=local.template, system=local.system)
            for key, value in local.parameters.items():
                user.parameters.extend((key, str(v)) for v in (value if isinstance(value, list) else [value]))
            if local.license:
                user.licenses.append(local.license)
        # Hash in place first: an unchanged GGUF that is already cached is not copied again.
        model_digest = "sha256:" + sha256_file(local.gguf)
        if not self.cache.has(model_digest):
            self.cache.import_file(local.gguf, model_digest, what)
        layers = [Layer(MODEL, model_digest, local.gguf.stat().st_size)]

        def add(media_type: str, data: bytes) -> None:
            layers.append(Layer(media_type, self.cache.put_bytes(data), len(data)))

        if user.template is not None:
            add(TEMPLATE, user.template.encode())
        if user.system is not None:
            add(SYSTEM, user.system.encode())
        for text in user.licenses:
            add(LICENSE, text.encode())
        if user.parameters:
            add(PARAMS, json.dumps(_params_json(user.parameters), sort_keys=True).encode())
        if user.messages:
            add(MESSAGES, json.dumps([{"role": r, "content": c} for r, c in user.messages]).encode())
        config: dict[str, Any] = {
            "model_format": "gguf",
            "os": "linux",
            "architecture": "amd64",
            "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
        }
        config.update({key: getattr(user, key) for key in ("renderer", "parser", "requires") if getattr(user, key)})
        config_data = json.dumps(config, sort_keys=True).encode()
        config_layer = Layer(CONFIG, self.cache.put_bytes(config_data), len(config_data))
        document = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": _layer_json(config_layer),
            "layers": [_layer_json(layer) for layer in layers],
        }
        data = json.dumps(document).encode()
        manifest = Manifest(data=data, media_type=MANIFEST, digest="sha256:" + sha256_bytes(data))
        self._check_locked(local.name, manifest.digest)
        model = ResolvedModel(local.name, "local", manifest, parse_manifest(document, what), config=config)
        self._check_model(model, what)
        return model

    def _check_locked(self, name: ModelName, digest: str) -> None:
        if self.lock and self.lock.models.get(str(name)) != digest:
            raise VerifyError(f"model {name.short}: manifest {digest} differs from the lock")

    def resolve_models(self) -> list[ResolvedModel]:
        models: list[ResolvedModel] = []
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            models.extend(pool.map(self.resolve_registry_model, self.spec.models))
        for local in self.spec.local_models:
            models.append(self.resolve_local_model(local))
        for store in self.spec.store_models:
            models.extend(self.resolve_store_model(store.path, name) for name in store.models)
        return models

    def resolve_images(self) -> list[ResolvedImage]:
        """Each image's platform manifest: from its index by tag, or straight by the lock's digest."""
        resolved = []
        for image in self.spec.images:
            pinned = None
            if self.lock:
                if str(image.ref) not in self.lock.images:
                    raise SpecError(f"image {image.ref} is not in the lock; build without --lock to re-resolve")
                pinned = self.lock.images[str(image.ref)]
            resolved.append(resolve_image(self.registry, image.ref, image.platform, pinned))
        return resolved

    # --- fetch -----------------------------------------------------------------------------------------------

    def preflight_disk(self, missing_bytes: int, archive_bytes: int, output: Path) -> None:
        """Refuse to start when the cache or the output file system cannot hold what is coming."""
        output.parent.mkdir(parents=True, exist_ok=True)
        needs: dict[int, tuple[Path, int]] = {}
        for path, size in ((self.cache.root, missing_bytes), (output.parent, archive_bytes)):
            dev = os.stat(path).st_dev
            held = needs.get(dev, (path, 0))
            needs[dev] = (held[0], held[1] + size)
        for path, need in needs.values():
            free = shutil.disk_usage(path).free
            if need + DISK_MARGIN > free:
                raise DiskSpaceError(
                    f"not enough free space in {path}: the build needs {_gib(need)} more, {_gib(free)} is free"
                )

    def fetch_all(
        self,
        releases: list[ReleaseFile],
        models: list[ResolvedModel],
        images: Sequence[ResolvedImage] = (),
    ) -> tuple[int, int]:
        """Fetch every missing blob (several at once); re-hash cached ones, healing any that rotted."""
        blobs: dict[str, tuple[int, ResolvedModel | ReleaseFile | ResolvedImage]] = {}
        for release in releases:
            blobs["sha256:" + release.sha256] = (release.size, release)
        for model in models:
            for blob in model.parsed.blobs:
                blobs.setdefault(blob.digest, (blob.size, model))
        for image in images:
            for descriptor in image.blobs:
                blobs.setdefault(descriptor.digest, (descriptor.size, image))
        cached = fetched = 0

        def one(item: tuple[str, tuple[int, ResolvedModel | ReleaseFile | ResolvedImage]]) -> bool:
            digest, (size, owner) = item
            if self.cache.has(digest) and self.cache.check(digest, size):
                return digest not in self.prefetched  # a config fetched while resolving counts as fetched
            if isinstance(owner, ReleaseFile):
                self.releases.fetch(owner, self.cache, self.reporter.task(owner.name, size))
            elif isinstance(owner, ResolvedImage):
                advance = self.reporter.task(f"{owner.ref.repository} {digest[7:19]}", size)
                self.registry.fetch_blob(owner.ref.host, owner.ref.repository, digest, size, self.cache, advance)
            elif owner.source == "registry":
                advance = self.reporter.task(f"{owner.name.short} {digest[7:19]}", size)
                name = owner.name
                self.model_registry.fetch_blob(name.host, name.repository, digest, size, self.cache, advance)
            else:
                raise VerifyError(f"{owner.name.short}: cached blob {digest} is corrupt; run the build again")
            return False

        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            for was_cached in pool.map(one, sorted(blobs.items())):
                cached += was_cached
                fetched += not was_cached
        return cached, fetched

    # --- plan and pack ---------------------------------------------------------------------------------------

    def modelfile_for(self, model: ResolvedModel) -> bytes | None:
        """The model's complete Modelfile, or None (with ``model.restore_only_reason`` set) when no Modelfile the
        pinned ollama parses can carry it."""
        depth = model.modelfile_path.count("/")
        up = "../" * depth

        def read(layer: Layer) -> bytes:
            return self.cache.path(layer.digest).read_bytes()

        model.licenses = [_first_line(read(layer)) for layer in model.parsed.of_type(LICENSE)]
        version = self.spec.ollama.version
        try:
            modelfile = modelfile_from_layers(
                model.parsed, read, lambda layer: up + blob_path(layer.digest), model.name.short, model.config
            )
            for command in sorted(modelfile.commands()):
                if not supports_command(version, command):
                    raise RestoreOnly(
                        f"its Modelfile needs {command}, which ollama {version} cannot parse "
                        f"(since {COMMAND_SINCE[command]})"
                    )
        except RestoreOnly as exc:
            model.restore_only_reason = " ".join(str(exc).split())
            return None
        header = (
            f"Modelfile for {model.name}, generated by ollama-airgap {__version__}\n"
            f"from manifest {model.manifest.digest}. Create with: ollama create {model.name.short} -f <this file>"
        )
        return modelfile.render(header).encode()

    def build(self, output: Path) -> BuildResult:
        started = int(time.time())
        sums_txt, releases = self.resolve_release()
        models = self.resolve_models()
        images = self.resolve_images()
        blob_sizes = {f"sha256:{r.sha256}": r.size for r in releases}
        for model in models:
            blob_sizes.update({b.digest: b.size for b in model.parsed.blobs})
        image_bytes = {d.digest: d.size for image in images for d in image.blobs}
        missing = sum(size for digest, size in {**blob_sizes, **image_bytes}.items() if not self.cache.has(digest))
        expanded = IMAGE_EXPANSION_ESTIMATE * sum(image_bytes.values())
        expanded += 4 * sum(r.size for r in releases if r.name.endswith(ZST))  # unpacked .tar.zst
        archive_estimate = sum(blob_sizes.values()) + expanded + TAR_OVERHEAD_PER_FILE * (len(blob_sizes) + 16)
        self.preflight_disk(missing + expanded, archive_estimate + (1 << 20), output)

        cached, fetched = self.fetch_all(releases, models, images)
        archives = [
            image_archive(image, self.cache, self.reporter.task(f"assemble {image.ref.bundle_path[7:]}", None))
            for image in images
        ]

        entries: dict[str, Entry] = {}
        version = self.spec.ollama.version
        entries[f"ollama/{version}/sha256sum.txt"] = Entry.from_bytes(f"ollama/{version}/sha256sum.txt", sums_txt)
        # .tar.zst releases travel as plain tars (hosts need no zstd), chained to the upstream digest.
        shipped = [carry(r, self.cache, self.reporter.task(f"unpack {r.name}", r.size)) for r in releases]
        entries.update((c.path, c.entry()) for c in shipped)
        model_meta = []
        for model in models:
            text = self.modelfile_for(model)
            if text is not None:
                entries[model.modelfile_path] = Entry.from_bytes(model.modelfile_path, text)
            entries[model.manifest_path] = Entry.from_bytes(model.manifest_path, model.manifest.data)
            for blob in model.parsed.blobs:
                path = blob_path(blob.digest)
                entries[path] = Entry(path, blob.size, digest_hex(blob.digest), self.cache.path(blob.digest))
            model_meta.append(self._model_meta(model))
        image_meta = []
        for image, archive in zip(images, archives, strict=True):
            path = image.ref.bundle_path
            entries[path] = Entry(path, archive.size, archive.sha256, archive.path)
            image_meta.append(_image_meta(image, archive))

        kit = assemble(self.spec.deploy_kit, self.kit_options, self.cache.root)
        if kit:
            entries.update((e.path, e) for e in kit.entries)
        github = self.spec.mirror_for("github.com")
        depot = resolve_depot(self.spec.fleet, github, self.spec.ollama.architectures, self.fetcher)
        entries.update((e.path, e) for e in fetch_depot(depot, self.fetcher, self.cache, self.reporter))
        wheel_source = self.kit_options or KitOptions()  # the deploy kit's package index serves libtorrent too
        swarm, swarm_meta = p2p_entries(
            self.spec.fleet.p2p, self.spec.ollama.architectures, self.cache.root, wheel_source.index_url,
            wheel_source.find_links,
        )  # fmt: skip
        entries.update((e.path, e) for e in swarm)
        resolved_at = self.lock.resolved_at if self.lock else started
        lock = Lock(
            bundle=self.spec.name,
            resolved_at=resolved_at,
            ollama_version=version,
            release_files={r.name: r.sha256 for r in releases},
            models={str(m.name): m.manifest.digest for m in models},
            images={str(i.ref): i.manifest.digest for i in images},
            kit_wheels=wheel_pins(kit.entries) if kit else {},
        )
        lock_data = lock.dump()
        entries[LOCK_NAME] = Entry.from_bytes(LOCK_NAME, lock_data)
        ordered = sorted(entries.values(), key=lambda e: (e.source is not None, e.path))
        meta = {
            "name": self.spec.name,
            "created_by": f"ollama-airgap {__version__}",
            "created": resolved_at,
            "ollama": {
                "version": version,
                "files": [c.meta() for c in shipped],
            },
            "models": model_meta,
            "images": image_meta,
            "lock": lock.as_dict(),
            "spec": _plain(self.spec.raw),
            **({"deploy_kit": kit.meta} if kit else {}),
            **fleet_meta(depot),
            **swarm_meta,
        }
        sums = sums_text(ordered)
        carried, carried_set = ordered, None
        if self.base is not None:
            carried, carried_set = split_entries(self.base, ordered)
            meta.update(delta_meta(self.base, carried))
        manifest = manifest_bytes(meta, ordered, sums, carried_set)
        signature = sign(manifest, self.sign_key) if self.sign_key else None
        try:
            size = pack(output, manifest, sums, carried, resolved_at, self.reporter, signature)
        finally:
            if kit:
                kit.cleanup()
        lock_path = output.with_name(output.name.removesuffix(".tar") + ".lock.yaml")
        lock_path.write_bytes(lock_data)
        sidecar_path(output).write_bytes(manifest)  # a later --base needs only this, not the archive
        return BuildResult(
            archive=output,
            size=size,
            bundle_digest=sha256_bytes(manifest),
            lock_path=lock_path,
            files=len(ordered),
            models=model_meta,
            bytes_downloaded=self.fetcher.stats.bytes_downloaded,
            cached_blobs=cached,
            fetched_blobs=fetched,
            delta_of=self.base.digest if self.base else "",
            carried_files=len(carried),
            carried_bytes=sum(e.size for e in carried),
        )

    def _model_meta(self, model: ResolvedModel) -> dict[str, Any]:
        """bundle.yaml's record of a model (keys in the shared contract: the deploy side reads them)."""
        config = model.config
        requires = config.get("requires")
        return {
            "name": str(model.name),
            "short": model.name.short,
            "source": model.source,
            "manifest": model.manifest_path,
            "manifest_digest": model.manifest.digest,
            "modelfile": None if model.restore_only_reason else model.modelfile_path,
            "size": model.parsed.size,
            "blobs": [b.digest for b in model.parsed.blobs],
            "family": config.get("model_family", ""),
            "parameter_size": config.get("model_type", ""),
            "quantization": config.get("file_type", ""),
            "licenses": model.licenses,
            **model_facts_meta(model.parsed, config, self.cache.path, self.spec.ollama.version),
            "requires": requires.removeprefix("v") if isinstance(requires, str) else "",
            "restore_only": bool(model.restore_only_reason),
            "restore_only_reason": model.restore_only_reason,
        }


def _first_line(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace").strip()
    return text.splitlines()[0] if text else ""


def _image_meta(image: ResolvedImage, archive: ImageArchive) -> dict[str, Any]:
    """bundle.yaml's record of an image: what the deploy side loads and checks (image ID = config digest)."""
    return {
        "reference": str(image.ref),
        "name": image.ref.name,
        "repo_tags": archive.repo_tags,
        "platform": image.platform,
        "digest": image.manifest.digest,
        "config_digest": archive.config_digest,
        "image_id": archive.config_digest,
        "layers": archive.diff_ids,
        "path": image.ref.bundle_path,
        "size": archive.size,
        "sha256": archive.sha256,
    }


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB"


def _layer_json(layer: Layer) -> dict[str, Any]:
    return {"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}


def _params_json(parameters: list[tuple[str, str]]) -> dict[str, Any]:
    """Modelfile PARAMETER strings to the params layer's JSON types (stop is always a list)."""
    out: dict[str, Any] = {}
    for name, raw in parameters:
        value: Any = raw
        if raw in ("true", "false"):
            value = raw == "true"
        else:
            for convert in (int, float):
                try:
                    value = convert(raw)
                    break
                except ValueError:
                    continue
        if name == "stop":
            out.setdefault("stop", []).append(raw)
        else:
            out[name] = value
    return out


def _plain(value: Any) -> Any:
    """The spec as plain YAML types (paths and the like as strings) for the bundle manifest's echo."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
