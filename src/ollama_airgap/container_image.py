"""Container images without docker: resolve a reference (platform picked from an image index), fetch its blobs
with the shared registry client into the shared cache, and assemble a ``docker-archive`` tar that both
``docker load`` and ``podman load`` accept.

The archive is the classic ``docker save`` layout::

    manifest.json        [{"Config": "<config hex>.json", "RepoTags": ["ghcr.io/open-webui/open-webui:v0.6.5"],
                           "Layers": ["<diff_id hex>/layer.tar", ...]}]
    <config hex>.json    the image config, byte for byte as the registry served it (so the image ID is the same)
    <diff_id hex>/layer.tar   each layer UNCOMPRESSED, checked in-stream against the config's rootfs.diff_ids

Layers are written uncompressed because that is what ``docker save`` writes and what every loader reads; registry
layers (gzip, zstd) are decompressed from the cache straight into the archive, never held in memory. The finished
archive is itself a content-addressed cache file, assembled once per (manifest digest, tags) and reused.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .cache import BlobCache
from .errors import VerifyError
from .hashing import CHUNK, DIGEST_RE, digest_hex, sha256_bytes, sha256_file
from .progress import Advance
from .registry import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    IMAGE_ACCEPT,
    OCI_INDEX,
    OCI_MANIFEST,
    Manifest,
    RegistryClient,
)

DEFAULT_PLATFORM = "linux/amd64"
DOCKER_HUB = "docker.io"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
HOST_RE = re.compile(
    r"^(?:localhost|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+|[A-Za-z0-9.-]+:[0-9]+|\[[0-9a-fA-F:]+\](?::[0-9]+)?)$"
)
PLATFORM_RE = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?$")
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True)
class ImageReference:
    """``host/repository[:tag][@sha256:digest]``, normalised the way docker does (docker.io/library/...)."""

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        text = f"{self.host}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    @property
    def name(self) -> str:
        return f"{self.host}/{self.repository}"

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def repo_tags(self) -> list[str]:
        """RepoTags of the archive: the tag as written (a digest-only reference loads untagged)."""
        return [f"{self.name}:{self.tag}"] if self.tag else []

    @property
    def bundle_path(self) -> str:
        label = self.tag or digest_hex(self.digest or "")[:12]
        return f"images/{self.repository.rsplit('/', 1)[-1]}_{label}.docker.tar"


def parse_image_reference(text: str) -> ImageReference:
    """Parse and validate an image reference; raises ValueError naming what is wrong."""
    if not text or text != text.strip() or any(c.isspace() for c in text):
        raise ValueError(f"{text!r} is not an image reference")
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not DIGEST_RE.match(digest):
            raise ValueError(f"{text!r}: digest must be sha256:<64 hex digits>")
    first, _, remainder = rest.partition("/")
    if remainder and (HOST_RE.match(first) and ("." in first or ":" in first or first == "localhost")):
        host, path = first, remainder
    else:
        host, path = DOCKER_HUB, rest
    tag = None
    last_slash = path.rfind("/")
    if ":" in path[last_slash + 1 :]:
        path, tag = path.rsplit(":", 1)
        if not TAG_RE.match(tag):
            raise ValueError(f"{text!r}: invalid tag {tag!r}")
    if host == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not REPOSITORY_RE.match(path):
        raise ValueError(f"{text!r}: invalid repository {path!r} (lower-case letters, digits, '.', '_', '-', '/')")
    if tag is None and digest is None:
        tag = "latest"
    return ImageReference(host=host, repository=path, tag=tag, digest=digest)


def parse_platform(text: str) -> tuple[str, str, str | None]:
    if not PLATFORM_RE.match(text):
        raise ValueError(f"{text!r} is not a platform like linux/amd64 or linux/arm64/v8")
    parts = text.split("/")
    return parts[0], parts[1], parts[2] if len(parts) > 2 else None


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int


@dataclass
class ResolvedImage:
    ref: ImageReference
    platform: str
    manifest: Manifest  # the platform's image manifest (pinned in the lock)
    index_digest: str | None  # the index / manifest list it was picked from, when there was one
    config: Descriptor
    layers: list[Descriptor]

    @property
    def blobs(self) -> list[Descriptor]:
        return [self.config, *self.layers]


def _descriptor(value: Any, what: str) -> Descriptor:
    if not isinstance(value, dict):
        raise VerifyError(f"{what}: malformed descriptor")
    digest, size = value.get("digest"), value.get("size")
    if not isinstance(digest, str) or not DIGEST_RE.match(digest) or not isinstance(size, int) or size < 0:
        raise VerifyError(f"{what}: descriptor without a sha256 digest and size")
    return Descriptor(str(value.get("mediaType", "")), digest, size)


def _matches(entry: dict[str, Any], platform: str) -> bool:
    os_name, arch, variant = parse_platform(platform)
    plat = entry.get("platform") or {}
    if plat.get("os") != os_name or plat.get("architecture") != arch:
        return False
    got = plat.get("variant")
    if variant is None or got is None:
        return True
    return bool(got == variant)


def select_platform(index: dict[str, Any], platform: str, what: str) -> Descriptor:
    """The entry of an OCI index / docker manifest list for ``platform`` (attestation entries are skipped)."""
    entries = [e for e in index.get("manifests") or [] if isinstance(e, dict)]
    for entry in entries:
        if _matches(entry, platform):
            return _descriptor(entry, f"{what} [{platform}]")
    offered = sorted(
        "/".join(filter(None, (p.get("os"), p.get("architecture"), p.get("variant"))))
        for e in entries
        if isinstance(p := e.get("platform"), dict) and p.get("os") != "unknown"
    )
    raise VerifyError(f"{what}: no image for {platform} (the index offers {', '.join(offered) or 'nothing'})")


def resolve_image(
    registry: RegistryClient, ref: ImageReference, platform: str = DEFAULT_PLATFORM, pinned: str | None = None
) -> ResolvedImage:
    """Fetch the manifest (by the lock's digest when ``pinned``), descending from an index to ``platform``."""
    what = str(ref)
    manifest = registry.manifest(ref.host, ref.repository, pinned or ref.reference, IMAGE_ACCEPT)
    index_digest = None
    if manifest.media_type in (OCI_INDEX, DOCKER_MANIFEST_LIST) or "manifests" in manifest.json():
        if pinned:
            raise VerifyError(f"{what}: the lock pins {pinned}, which is an index, not an image manifest")
        index_digest = manifest.digest
        chosen = select_platform(manifest.json(), platform, what)
        manifest = registry.manifest(ref.host, ref.repository, chosen.digest, IMAGE_ACCEPT)
    document = manifest.json()
    if manifest.media_type not in (OCI_MANIFEST, DOCKER_MANIFEST) and "layers" not in document:
        raise VerifyError(f"{what}: unsupported manifest type {manifest.media_type!r}")
    layers = document.get("layers")
    if not isinstance(layers, list) or not layers:
        raise VerifyError(f"{what}: the manifest lists no layers")
    return ResolvedImage(
        ref=ref,
        platform=platform,
        manifest=manifest,
        index_digest=index_digest,
        config=_descriptor(document.get("config"), f"{what} config"),
        layers=[_descriptor(layer, f"{what} layer {i}") for i, layer in enumerate(layers)],
    )


def fetch_image(
    registry: RegistryClient, image: ResolvedImage, cache: BlobCache, advance: Advance | None = None
) -> None:
    """Fetch config and layers into the cache (each verified in-stream; cached ones are not downloaded)."""
    for blob in image.blobs:
        registry.fetch_blob(image.ref.host, image.ref.repository, blob.digest, blob.size, cache, advance)


def read_config(image: ResolvedImage, cache: BlobCache) -> tuple[bytes, dict[str, Any]]:
    """The config bytes and document; checks the platform and that each layer has a diff_id."""
    data = cache.path(image.config.digest).read_bytes()
    try:
        config = json.loads(data)
    except ValueError:
        raise VerifyError(f"{image.ref}: image config {image.config.digest} is not JSON") from None
    os_name, arch, _ = parse_platform(image.platform)
    if config.get("os") != os_name or config.get("architecture") != arch:
        got = f"{config.get('os')}/{config.get('architecture')}"
        raise VerifyError(f"{image.ref}: the image is for {got}, not {image.platform}")
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    if len(diff_ids) != len(image.layers) or not all(isinstance(d, str) and DIGEST_RE.match(d) for d in diff_ids):
        raise VerifyError(f"{image.ref}: the config's rootfs.diff_ids do not match the manifest's layers")
    return data, config


# --- the docker-archive -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageArchive:
    path: Path  # in the cache
    sha256: str  # hex
    size: int
    config_digest: str  # = the image ID docker and podman report
    diff_ids: list[str]
    repo_tags: list[str]


def _decompressed(handle: IO[bytes]) -> Iterator[bytes]:
    """Yield a layer blob's uncompressed tar bytes in chunks (gzip, zstd or plain, told by magic bytes)."""
    head = handle.read(4)
    handle.seek(0)
    if head.startswith(GZIP_MAGIC):
        with gzip.GzipFile(fileobj=handle, mode="rb") as inflated:  # several gzip members are read in turn
            try:
                while chunk := inflated.read(CHUNK):
                    yield chunk
            except (OSError, EOFError, zlib.error) as exc:
                raise VerifyError(f"corrupt gzip layer ({exc})") from None
    elif head == ZSTD_MAGIC:
        try:
            import zstandard
        except ImportError:
            raise VerifyError("a zstd-compressed layer needs the zstandard package") from None
        reader = zstandard.ZstdDecompressor().stream_reader(handle, read_across_frames=True)
        while chunk := reader.read(CHUNK):
            yield chunk
    else:
        while chunk := handle.read(CHUNK):
            yield chunk


def _header(name: str, size: int, *, mode: int = 0o644, directory: bool = False) -> bytes:
    """One 512-byte GNU tar header (sizes over 8 GiB in base-256, so the header never grows)."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o755 if directory else mode
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mtime = 0
    info.uname = info.gname = "root"
    buf = info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    assert len(buf) == tarfile.BLOCKSIZE, name
    return buf


def _pad(size: int) -> bytes:
    return bytes(-size % tarfile.BLOCKSIZE)


def write_docker_archive(
    image: ResolvedImage, cache: BlobCache, output: Path, advance: Advance | None = None
) -> ImageArchive:
    """Write the docker-archive for a fetched image to ``output`` (streamed; each layer checked against its
    diff_id). Returns what was written; the sha256 is of the finished file."""
    config_data, config = read_config(image, cache)
    diff_ids: list[str] = config["rootfs"]["diff_ids"]
    config_name = f"{digest_hex(image.config.digest)}.json"
    layer_names = [f"{digest_hex(d)}/layer.tar" for d in diff_ids]
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": image.ref.repo_tags, "Layers": layer_names}], separators=(",", ":")
    ).encode()
    written: set[str] = set()
    with open(output, "w+b") as out:
        for name, data in (("manifest.json", manifest), (config_name, config_data)):
            out.write(_header(name, len(data)) + data + _pad(len(data)))
        for blob, diff_id, name in zip(image.layers, diff_ids, layer_names, strict=True):
            if name in written:  # the same layer twice (an empty layer repeated): stored once
                continue
            written.add(name)
            out.write(_header(name.split("/")[0] + "/", 0, directory=True))
            header_at = out.tell()
            out.write(bytes(tarfile.BLOCKSIZE))
            hasher, size = hashlib.sha256(), 0
            with open(cache.path(blob.digest), "rb") as source:
                for chunk in _decompressed(source):
                    hasher.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                    if advance:
                        advance(len(chunk))
            if "sha256:" + hasher.hexdigest() != diff_id:
                raise VerifyError(f"{image.ref}: layer {blob.digest} does not decompress to its diff_id {diff_id}")
            out.write(_pad(size))
            end = out.tell()
            out.seek(header_at)
            out.write(_header(name, size))
            out.seek(end)
        out.write(bytes(2 * tarfile.BLOCKSIZE))
        out.write(bytes(-out.tell() % tarfile.RECORDSIZE))
        out.flush()
        os.fsync(out.fileno())
    return ImageArchive(
        path=output,
        sha256=sha256_file(output),
        size=output.stat().st_size,
        config_digest=image.config.digest,
        diff_ids=diff_ids,
        repo_tags=image.ref.repo_tags,
    )


def image_archive(image: ResolvedImage, cache: BlobCache, advance: Advance | None = None) -> ImageArchive:
    """The image's docker-archive as a cache file: assembled once per (manifest digest, RepoTags), then reused.

    A small record ``<cache>/images/<key>.json`` maps the key to the archive's sha256; the archive is re-hashed
    on reuse (a rotted one is rebuilt from the verified blobs)."""
    key = sha256_bytes(json.dumps([image.manifest.digest, image.ref.repo_tags]).encode())
    records = cache.root / "images"
    records.mkdir(exist_ok=True)
    record = records / f"{key}.json"
    try:
        known = json.loads(record.read_text())
        digest = "sha256:" + known["sha256"]
        if cache.has(digest) and cache.check(digest, known["size"]):
            _, config = read_config(image, cache)
            return ImageArchive(
                path=cache.path(digest),
                sha256=known["sha256"],
                size=known["size"],
                config_digest=image.config.digest,
                diff_ids=config["rootfs"]["diff_ids"],
                repo_tags=image.ref.repo_tags,
            )
    except (OSError, ValueError, KeyError, TypeError):
        pass
    partial = cache.partial_dir / f"image-{key}.docker.tar"
    try:
        built = write_docker_archive(image, cache, partial, advance)
        final = cache.commit("sha256:" + built.sha256, partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps({"sha256": built.sha256, "size": built.size, "manifest": image.manifest.digest}))
    os.replace(tmp, record)
    return ImageArchive(final, built.sha256, built.size, built.config_digest, built.diff_ids, built.repo_tags)


def read_archive_manifest(path: Path) -> list[dict[str, Any]]:
    """manifest.json of a docker-archive (for inspection and tests)."""
    with tarfile.open(path, "r:") as tar:
        member = tar.extractfile("manifest.json")
        if member is None:
            raise VerifyError(f"{path}: no manifest.json: not a docker-archive")
        data = json.loads(member.read())
    if not isinstance(data, list):
        raise VerifyError(f"{path}: manifest.json is not a list")
    return data
