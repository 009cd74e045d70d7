"""The bundle: its layout, its manifest (bundle.yaml), packing into one tar straight from the cache, and
verification of an archive or an unpacked tree against the manifest.

Layout (the same inside the tar and unpacked)::

    bundle.yaml          format, resolved lock, every file with size and sha256, sha256 of SHA256SUMS
    SHA256SUMS           `sha256sum -c` compatible list of every other file
    bundle.lock.yaml     what was resolved, to rebuild the same content
    ollama/<version>/... release archives and the release's sha256sum.txt
    models/manifests/<host>/<namespace>/<model>/<tag>   ollama's native layout (restore = copy or hard link)
    models/blobs/sha256-<hex>
    modelfiles/<host>/<namespace>/<model>/<tag>.Modelfile
    images/<name>_<tag>.docker.tar
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import tarfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import DiskSpaceError, VerifyError
from .hashing import CHUNK, HEX_RE, sha256_bytes
from .progress import Advance, Reporter
from .signing import SIGNATURE_NAME, Ed25519PublicKey, check_signature

FORMAT = "ollama-airgap/bundle/v1"
MANIFEST_NAME = "bundle.yaml"
SUMS_NAME = "SHA256SUMS"
LOCK_NAME = "bundle.lock.yaml"
BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
MAX_MANIFEST = 64 << 20


@dataclass(frozen=True)
class Entry:
    """One file of the bundle: copied from ``source`` (a verified cache file) or written from ``data``."""

    path: str
    size: int
    sha256: str
    source: Path | None = None
    data: bytes | None = None
    mode: int = 0o644  # in the archive (the deploy kit's entry script is 0o755)

    @classmethod
    def from_bytes(cls, path: str, data: bytes) -> Entry:
        return cls(path=path, size=len(data), sha256=sha256_bytes(data), data=data)


def check_member_path(name: str) -> str:
    """Refuse paths that could escape the bundle directory or are not in normal form."""
    if not name or "\0" in name or "\\" in name:
        raise VerifyError(f"unsafe path {name!r} in bundle")
    if name.startswith("/") or posixpath.normpath(name) != name or name.startswith(".."):
        raise VerifyError(f"unsafe path {name!r} in bundle (absolute or not normalised)")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise VerifyError(f"unsafe path {name!r} in bundle")
    return name


def sums_text(entries: Iterable[Entry]) -> bytes:
    return "".join(f"{e.sha256}  {e.path}\n" for e in entries).encode()


def manifest_bytes(meta: dict[str, Any], entries: list[Entry], sums: bytes, carried: set[str] | None = None) -> bytes:
    """bundle.yaml. With ``carried`` (a differential bundle), each file says whether the archive holds it."""

    def listing(e: Entry) -> dict[str, Any]:
        item: dict[str, Any] = {"path": e.path, "size": e.size, "sha256": e.sha256}
        if carried is not None:
            item["carried"] = e.path in carried
        return item

    document = {
        "format": FORMAT,
        **meta,
        "total_size": sum(e.size for e in entries),
        "sha256sums_sha256": sha256_bytes(sums),
        "files": [listing(e) for e in entries],
    }
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120).encode()


@dataclass
class BundleIndex:
    """A parsed, structurally checked bundle.yaml."""

    document: dict[str, Any]
    files: dict[str, tuple[int, str]]
    digest: str  # sha256 of bundle.yaml itself: the bundle's identity
    raw: bytes = b""

    @property
    def sums_sha256(self) -> str:
        return str(self.document["sha256sums_sha256"])

    @property
    def base_digest(self) -> str:
        """sha256 of the base's bundle.yaml for a differential bundle, "" for a full one."""
        return base_digest(self.document)

    @property
    def carried(self) -> set[str]:
        """The files an archive of this bundle holds (all of them, unless it is a differential bundle)."""
        paths = carried_paths(self.document)
        return set(self.files) if paths is None else paths


def carried_paths(document: dict[str, Any]) -> set[str] | None:
    """The paths a bundle.yaml says its archive carries; None for a full bundle (it carries everything)."""
    if not isinstance(document.get("base"), dict):
        return None
    return {str(f["path"]) for f in document.get("files") or [] if isinstance(f, dict) and f.get("carried", True)}


def base_digest(document: dict[str, Any]) -> str:
    base = document.get("base")
    return str(base.get("bundle_digest", "")) if isinstance(base, dict) else ""


def read_index(data: bytes, source: str) -> BundleIndex:
    if len(data) > MAX_MANIFEST:
        raise VerifyError(f"{source}: {MANIFEST_NAME} is larger than {MAX_MANIFEST} bytes")
    try:
        document = yaml.safe_load(data)
    except yaml.YAMLError:
        raise VerifyError(f"{source}: {MANIFEST_NAME} is not valid YAML") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise VerifyError(f"{source}: {MANIFEST_NAME} is not an {FORMAT} manifest")
    files: dict[str, tuple[int, str]] = {}
    for item in document.get("files") or []:
        if not isinstance(item, dict):
            raise VerifyError(f"{source}: {MANIFEST_NAME}: malformed files entry")
        path, size, digest = item.get("path"), item.get("size"), item.get("sha256")
        if not isinstance(path, str) or not isinstance(size, int) or not isinstance(digest, str):
            raise VerifyError(f"{source}: {MANIFEST_NAME}: malformed files entry {item!r}"[:200])
        check_member_path(path)
        if not HEX_RE.match(digest) or size < 0:
            raise VerifyError(f"{source}: {MANIFEST_NAME}: bad size or sha256 for {path}")
        if not isinstance(item.get("carried", True), bool):
            raise VerifyError(f"{source}: {MANIFEST_NAME}: carried of {path} is not true or false")
        if path in files or path in (MANIFEST_NAME, SUMS_NAME, SIGNATURE_NAME):
            raise VerifyError(f"{source}: {MANIFEST_NAME}: {path} is listed twice")
        files[path] = (size, digest)
    if not HEX_RE.match(str(document.get("sha256sums_sha256", ""))):
        raise VerifyError(f"{source}: {MANIFEST_NAME}: no sha256sums_sha256")
    if "base" in document and not HEX_RE.match(base_digest(document)):
        raise VerifyError(f"{source}: {MANIFEST_NAME}: base.bundle_digest is not a sha256")
    return BundleIndex(document=document, files=files, digest=sha256_bytes(data), raw=data)


# --- pack --------------------------------------------------------------------------------------------------


def _header(path: str, size: int, mtime: int, mode: int = 0o644) -> bytes:
    info = tarfile.TarInfo(path)
    info.size = size
    info.mode = mode
    info.mtime = mtime
    info.uname = info.gname = "root"
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _copy_range(src: int, dst: int, size: int, advance: Advance) -> None:
    """Kernel-side copy (copy_file_range, then sendfile); a user-space loop only where neither works."""
    left = size
    for kernel_copy in ("copy_file_range", "sendfile"):
        try:
            while left:
                if kernel_copy == "copy_file_range":
                    n = os.copy_file_range(src, dst, min(left, 1 << 30))
                else:
                    n = os.sendfile(dst, src, None, min(left, 1 << 30))
                if n == 0:
                    raise VerifyError("source file shrank while packing")
                left -= n
                advance(n)
            return
        except OSError as exc:
            if exc.errno == 28:
                raise
            if left != size:
                raise
    buf = bytearray(CHUNK)
    while left:
        n = os.readv(src, [memoryview(buf)[: min(left, CHUNK)]])
        if n == 0:
            raise VerifyError("source file shrank while packing")
        _write_all(dst, memoryview(buf)[:n])
        left -= n
        advance(n)


def pack(
    output: Path,
    manifest: bytes,
    sums: bytes,
    entries: list[Entry],
    mtime: int,
    reporter: Reporter,
    signature: bytes | None = None,
) -> int:
    """Write the archive to ``output`` (via a .partial file renamed at the end). Returns its size.
    bundle.yaml comes first, then its signature when there is one, then SHA256SUMS and the files."""
    partial = output.with_name(output.name + ".partial")
    output.parent.mkdir(parents=True, exist_ok=True)
    signed = [Entry.from_bytes(SIGNATURE_NAME, signature)] if signature is not None else []
    members = [Entry.from_bytes(MANIFEST_NAME, manifest), *signed, Entry.from_bytes(SUMS_NAME, sums), *entries]
    advance = reporter.task(f"pack {output.name}", sum(e.size for e in members))
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for entry in members:
            _write_all(fd, _header(entry.path, entry.size, mtime, entry.mode))
            if entry.data is not None:
                _write_all(fd, entry.data)
                advance(entry.size)
            else:
                assert entry.source is not None
                src = os.open(entry.source, os.O_RDONLY)
                try:
                    if os.fstat(src).st_size != entry.size:
                        raise VerifyError(f"{entry.source}: size differs from the verified size of {entry.path}")
                    _copy_range(src, fd, entry.size, advance)
                finally:
                    os.close(src)
            if entry.size % BLOCK:
                _write_all(fd, bytes(BLOCK - entry.size % BLOCK))
        end = os.lseek(fd, 0, os.SEEK_CUR) + 2 * BLOCK
        _write_all(fd, bytes(2 * BLOCK + (-end % RECORD)))
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        partial.unlink(missing_ok=True)
        if exc.errno == 28:
            raise DiskSpaceError(f"no space left on the device holding {output} while packing") from None
        raise
    except BaseException:
        os.close(fd)
        partial.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(partial, output)
    return output.stat().st_size


# --- verify ------------------------------------------------------------------------------------------------


@dataclass
class VerifyReport:
    source: str
    bundle_digest: str = ""
    delta_of: str = ""  # base bundle digest of a differential bundle
    from_base: int = 0  # files it takes from its base (not in the archive)
    files: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        if self.problems:
            more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            raise VerifyError(f"{self.source}: {self.problems[0]}{more}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "ok": self.ok,
            "bundle_digest": self.bundle_digest,
            "delta_of": self.delta_of or None,
            "from_base": self.from_base,
            "files": self.files,
            "bytes": self.bytes,
            "problems": self.problems,
        }


def _hash_range(path: Path, offset: int, size: int, advance: Advance) -> str:
    digest = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as handle:
        handle.seek(offset)
        left = size
        while left:
            n = handle.readinto(view[: min(left, CHUNK)])
            if not n:
                break
            digest.update(view[:n])
            left -= n
            advance(n)
    return digest.hexdigest()


def _check_sums(index: BundleIndex, sums: bytes | None, report: VerifyReport) -> None:
    if sums is None:
        report.problems.append(f"{SUMS_NAME} is missing")
        return
    if sha256_bytes(sums) != index.sums_sha256:
        report.problems.append(f"{SUMS_NAME} does not match the sha256 recorded in {MANIFEST_NAME}")
        return
    listed = [(path, digest) for path, (_, digest) in index.files.items()]
    expected = "".join(f"{digest}  {path}\n" for path, digest in listed).encode()
    if sums != expected:
        report.problems.append(f"{SUMS_NAME} lists other files than {MANIFEST_NAME}")


def _hash_all(
    jobs: list[tuple[str, Path, int, int, str]], report: VerifyReport, reporter: Reporter, workers: int
) -> None:
    advance = reporter.task(f"verify {Path(report.source).name}", sum(job[3] for job in jobs))

    def run(job: tuple[str, Path, int, int, str]) -> str | None:
        name, path, offset, size, expected = job
        got = _hash_range(path, offset, size, advance)
        return None if got == expected else f"{name} is altered (sha256 {got}, expected {expected})"

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for problem in pool.map(run, jobs):
            if problem:
                report.problems.append(problem)
    report.files += len(jobs)
    report.bytes += sum(job[3] for job in jobs)


def default_workers() -> int:
    return min(4, os.cpu_count() or 1)


def verify_dir(
    root: Path, reporter: Reporter, workers: int | None = None, public_key: Ed25519PublicKey | None = None
) -> VerifyReport:
    """Re-hash an unpacked bundle: every listed file present and intact, nothing unlisted, no links."""
    report = VerifyReport(source=str(root))
    index = read_bundle_index(root)
    if public_key is not None:
        signature_path = root / SIGNATURE_NAME
        signature = signature_path.read_bytes() if signature_path.is_file() else None
        check_signature(index.raw, signature, public_key, str(root))
    report.bundle_digest = index.digest
    sums_path = root / SUMS_NAME
    _check_sums(index, sums_path.read_bytes() if sums_path.is_file() else None, report)
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            mode = full.lstat().st_mode
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                report.problems.append(f"{rel} is not a regular file (link or device)")
            elif rel not in (MANIFEST_NAME, SUMS_NAME, SIGNATURE_NAME):
                seen.add(rel)
                if rel not in index.files:
                    report.problems.append(f"{rel} is not listed in {MANIFEST_NAME}")
    jobs = []
    for path, (size, digest) in index.files.items():
        full = root / path
        if path not in seen:
            report.problems.append(f"{path} is missing" + _from_base_note(index, path))
        elif full.stat().st_size != size:
            report.problems.append(f"{path} is altered (size {full.stat().st_size}, expected {size})")
        else:
            jobs.append((path, full, 0, size, digest))
    _hash_all(jobs, report, reporter, workers or default_workers())
    return report


@dataclass
class ArchiveScan:
    index: BundleIndex
    sums: bytes | None
    signature: bytes | None
    members: list[tarfile.TarInfo]
    problems: list[str]


def scan_archive(archive: Path) -> ArchiveScan:
    """Read an archive's headers (no data) and refuse anything hostile before a byte is extracted."""
    problems: list[str] = []
    members: list[tarfile.TarInfo] = []
    index: BundleIndex | None = None
    sums: bytes | None = None
    signature: bytes | None = None
    try:
        with tarfile.open(archive, "r:") as tar:
            for member in tar:
                try:
                    check_member_path(member.name.removeprefix("./") if member.name != "./" else ".")
                except VerifyError as exc:
                    if member.name not in (".", "./"):
                        problems.append(str(exc).replace(" in bundle", ""))
                    continue
                if member.isdir():
                    continue
                if not member.isreg():
                    kind = "link" if member.issym() or member.islnk() else "device or special file"
                    problems.append(f"{member.name} is a {kind}, refused")
                    continue
                name = member.name.removeprefix("./")
                if name == MANIFEST_NAME and index is None:
                    handle = tar.extractfile(member)
                    assert handle is not None
                    index = read_index(handle.read(MAX_MANIFEST + 1), str(archive))
                elif name == SUMS_NAME and sums is None:
                    handle = tar.extractfile(member)
                    assert handle is not None
                    sums = handle.read(MAX_MANIFEST + 1)
                elif name == SIGNATURE_NAME and signature is None:
                    handle = tar.extractfile(member)
                    assert handle is not None
                    signature = handle.read(4096)
                else:
                    members.append(member)
            end = tar.offset
    except tarfile.TarError as exc:
        raise VerifyError(f"{archive}: not a readable tar archive ({exc})") from None
    if index is None:
        raise VerifyError(f"{archive}: no {MANIFEST_NAME}: not a bundle")
    trailing = archive.stat().st_size - end
    if trailing > 2 * BLOCK + RECORD or _has_data(archive, end):
        problems.append(f"{trailing} bytes of data past the end of the archive (over its declared size)")
    return ArchiveScan(index, sums, signature, members, problems)


def _has_data(archive: Path, offset: int) -> bool:
    """Whether anything but the zero padding of the end-of-archive marker follows ``offset``."""
    with open(archive, "rb") as handle:
        handle.seek(offset)
        return any(handle.read(2 * BLOCK + RECORD + 1))


def verify_archive(
    archive: Path, reporter: Reporter, workers: int | None = None, public_key: Ed25519PublicKey | None = None
) -> VerifyReport:
    report = VerifyReport(source=str(archive))
    scan = scan_archive(archive)
    index, members = scan.index, scan.members
    if public_key is not None:
        check_signature(index.raw, scan.signature, public_key, str(archive))
    report.bundle_digest = index.digest
    report.problems.extend(scan.problems)
    _check_sums(index, scan.sums, report)
    jobs = []
    seen: set[str] = set()
    carried = index.carried
    report.delta_of = index.base_digest
    report.from_base = len(index.files) - len(carried)
    for member in members:
        name = member.name.removeprefix("./")
        if name in seen:
            report.problems.append(f"{name} appears twice in the archive")
            continue
        seen.add(name)
        if name not in index.files:
            report.problems.append(f"{name} is not listed in {MANIFEST_NAME}")
            continue
        if name not in carried:
            report.problems.append(f"{name} is in the archive but {MANIFEST_NAME} says it comes from the base")
            continue
        size, digest = index.files[name]
        if member.size != size:
            report.problems.append(f"{name} is altered (size {member.size}, expected {size})")
            continue
        jobs.append((name, archive, member.offset_data, size, digest))
    report.problems.extend(f"{path} is missing" for path in carried if path not in seen)
    _hash_all(jobs, report, reporter, workers or default_workers())
    return report


def _from_base_note(index: BundleIndex, path: str) -> str:
    if path in index.carried:
        return ""
    return f" (a differential bundle: it comes from base bundle sha256:{index.base_digest}, assembled on a host)"


def read_bundle_index(source: Path) -> BundleIndex:
    """bundle.yaml of an archive or an unpacked tree, structurally checked (no data hashed)."""
    if source.is_dir():
        try:
            return read_index((source / MANIFEST_NAME).read_bytes(), str(source))
        except FileNotFoundError:
            raise VerifyError(f"{source}: no {MANIFEST_NAME}: not a bundle") from None
    return scan_archive(source).index
