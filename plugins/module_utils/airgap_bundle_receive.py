"""Host side of a streamed bundle push (plugins/action/airgap_bundle_stream.py): ``probe`` says what the host holds
and what a broken earlier transfer left, ``receive`` reads a tar stream from standard input, checks each header as
airgap_bundle does for an archive, hashes each member while writing it into a staging directory, then swaps staging
into the bundle root and writes the verification record. No archive is ever written on the host.

Resume: each member verified into staging is noted in a journal (``<staging>.journal``, one JSON line per member:
path, size, sha256, mtime_ns, inode); a later run skips those, and continues a partial member from its length (the
member's header then carries the pax record ``AIRGAP.offset``) after re-hashing the bytes already there.

Standard library only: runs on the hosts, shipped over the SSH connection with the checks it imports."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from typing import IO, Any

try:
    from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_checks import (
        BLOCK,
        CHUNK,
        MANIFEST_NAME,
        META_NAMES,
        SIGNATURE_NAME,
        SUMS_NAME,
        BundleError,
        Listed,
        check_manifest_digest,
        check_member,
        check_sums,
        expected_files,
        hash_file,
        widen_pipe,
    )
    from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_records import (
        free_bytes,
        read_record,
        recorded_digest,
    )
    from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_staging import (
        forget_empty,
        host_traits,
        link_from_dest,
        linkable,
        load_journal,
        note_done,
        prepare_staging,
        staging_path,
        swap_in,
    )
except ImportError:  # shipped: the modules above are already defined in this namespace
    pass

OFFSET_KEY = "AIRGAP.offset"
WRITEBACK_WINDOW = 16 << 20
SYNC_FILE_RANGE_WRITE = 2


def _sync_file_range() -> Any:
    """sync_file_range(2) from libc, or None: starts the writeback of each window while the next one arrives, so the
    fdatasync at the end of a member waits for little."""
    try:
        function = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    return function


SYNC_FILE_RANGE = _sync_file_range()


def probe(params: dict[str, Any]) -> dict[str, Any]:
    """What the host holds; changes nothing."""
    dest, state_dir, staging, digest = params["dest"], params["state_dir"], params["staging"], params["digest"]
    listed = expected_files(params["files"])
    record = read_record(state_dir, dest, digest)
    if record is not None and params.get("public_key"):
        # Two small files, checked on every run, so a newly required key is honoured at once.
        with open(os.path.join(dest, MANIFEST_NAME), "rb") as handle:
            manifest = handle.read()
        signature = None
        with contextlib.suppress(FileNotFoundError), open(os.path.join(dest, SIGNATURE_NAME), "rb") as handle:
            signature = handle.read()
        check_signature(manifest, signature, params["public_key"])
    done = load_journal(staging)
    partial: dict[str, int] = {}
    if os.path.isdir(staging):
        for dirpath, _, filenames in os.walk(staging):
            for name in filenames:
                rel = os.path.relpath(os.path.join(dirpath, name), staging)
                if rel in listed and rel not in done:
                    partial[rel] = os.lstat(os.path.join(dirpath, name)).st_size
    return {
        **host_traits(),
        "current": record is not None,
        "recorded_paths": sorted(entry[0] for entry in record["files"]) if record else [],
        "holds": recorded_digest(state_dir, dest),
        "complete": sorted(path for path in done if path in listed and done[path] == listed[path]),
        "partial": partial,
        "linkable": sorted(linkable(state_dir, dest, listed)),
        "free_bytes": free_bytes(os.path.dirname(dest)),
    }


class Stream:
    """A tar stream read block by block; headers parsed with the standard tarfile's own parser."""

    def __init__(self, reader: IO[bytes]) -> None:
        self.reader = reader
        self.view = memoryview(bytearray(CHUNK))

    def exact(self, count: int) -> bytes:
        data = self.reader.read(count)
        if len(data) != count:
            raise BundleError("the stream ended early (connection broken?); verified members are kept for the next run")
        return data

    def header(self) -> tuple[tarfile.TarInfo, int] | None:
        """The next member and its pax offset, or None at the end-of-archive marker."""
        pax: dict[str, str] = {}
        while True:
            block = self.exact(BLOCK)
            if not any(block):
                return None
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.TarError as exc:
                raise BundleError(f"unreadable tar header in the stream ({exc})") from None
            if info.type != tarfile.XHDTYPE:
                break
            if info.size > 1 << 20:
                raise BundleError("pax header larger than 1 MiB, refused")
            pax.update(parse_pax(self.exact(-(-info.size // BLOCK) * BLOCK)[: info.size]))
        if "path" in pax:
            info.name = pax["path"]
        if "size" in pax:
            info.size = int(pax["size"])
        offset = int(pax.get(OFFSET_KEY, "0"))
        return info, offset

    def skip_padding(self, size: int) -> None:
        if size % BLOCK:
            self.exact(BLOCK - size % BLOCK)

    def rest_is_zero(self) -> int:
        """Bytes after the end-of-archive marker; any that are not zero are refused."""
        extra = 0
        while data := self.reader.read(CHUNK):
            extra += len(data)
            if any(data):
                raise BundleError("data past the end of the archive, refused")
        return extra


def parse_pax(data: bytes) -> dict[str, str]:
    """pax extended header records: ``<length> <key>=<value>\\n``."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        records[key.decode("utf-8")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


def receive_member(stream: Stream, staging: str, name: str, size: int, offset: int) -> tuple[str, int]:
    """Write the member's bytes from ``offset`` on (re-hashing the ones already there); (sha256, bytes received)."""
    target = os.path.join(staging, name)
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    digest = hashlib.sha256()
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW
    if offset:
        if not os.path.isfile(target) or os.path.getsize(target) < offset:
            raise BundleError(f"{name}: cannot continue at byte {offset}, the partial file is shorter")
        hash_file(target, digest, offset)
    fd = os.open(target, flags | (0 if offset else os.O_TRUNC), 0o644)
    try:
        os.ftruncate(fd, offset)
        os.lseek(fd, offset, os.SEEK_SET)
        view, left, flushed = stream.view, size - offset, offset
        while left:
            count = stream.reader.readinto(view[: min(left, CHUNK)])  # type: ignore[attr-defined]
            if not count:
                raise BundleError(
                    f"{name}: the stream ended after {size - left} of {size} bytes (connection broken?); "
                    "the next run continues it"
                )
            digest.update(view[:count])
            written = 0
            while written < count:
                written += os.write(fd, view[written:count])
            left -= count
            if SYNC_FILE_RANGE is not None and size - left - flushed >= WRITEBACK_WINDOW:
                SYNC_FILE_RANGE(fd, flushed, size - left - flushed, SYNC_FILE_RANGE_WRITE)
                flushed = size - left
        os.fdatasync(fd)
    finally:
        os.close(fd)
    stream.skip_padding(size - offset)
    return digest.hexdigest(), size - offset


def check_signature(manifest: bytes, signature: bytes | None, public_key: str) -> None:
    """Ed25519 signature of bundle.yaml, checked with the host's OpenSSL before any other member is written."""
    if signature is None:
        raise BundleError(f"bundle is not signed ({SIGNATURE_NAME} missing) but a signing key is required")
    openssl = shutil.which("openssl") or "/usr/bin/openssl"
    with tempfile.TemporaryDirectory(prefix="airgap-signature-") as tmp:
        paths = {}
        for name, data in (("key.pem", public_key.encode()), ("bundle.yaml", manifest), ("bundle.sig", signature)):
            paths[name] = os.path.join(tmp, name)
            with open(paths[name], "wb") as handle:
                handle.write(data)
        argv = [openssl, "pkeyutl", "-verify", "-pubin", "-inkey", paths["key.pem"], "-rawin",
                "-in", paths["bundle.yaml"], "-sigfile", paths["bundle.sig"]]  # fmt: skip
        try:
            rc = subprocess.run(argv, capture_output=True, check=False).returncode
        except OSError:
            raise BundleError("openssl is needed on the host to check the bundle signature") from None
    if rc != 0:
        raise BundleError(f"{SIGNATURE_NAME} does not match {MANIFEST_NAME} (altered, or signed by another key)")


def read_meta(stream: Stream, listed: Listed, params: dict[str, Any], seen: set[str]) -> tuple[dict, Any]:
    """bundle.yaml (first), its signature, SHA256SUMS: checked before anything is written; returns them and the
    header that follows them."""
    meta: dict[str, bytes] = {}
    while (entry := stream.header()) is not None:
        info, _ = entry
        if info.name not in META_NAMES:
            break
        name = check_member(info, {}, seen, not seen)
        meta[name] = stream.exact(info.size)
        stream.skip_padding(info.size)
        if name == MANIFEST_NAME:
            check_manifest_digest(meta[name], params["digest"])
        elif name == SUMS_NAME:
            check_sums(meta[name], listed, params["sums_sha256"])
    for name in (MANIFEST_NAME, SUMS_NAME):
        if name not in meta:
            raise BundleError(f"{name} is missing from the stream")
    if params.get("public_key"):
        check_signature(meta[MANIFEST_NAME], meta.get(SIGNATURE_NAME), params["public_key"])
    return meta, entry


def receive(reader: IO[bytes], params: dict[str, Any]) -> dict[str, Any]:
    """Read the tar stream into staging, verify, swap into dest, write the record."""
    dest, state_dir, staging, digest = params["dest"], params["state_dir"], params["staging"], params["digest"]
    listed = expected_files(params["files"])
    needed = {path: listed[path] for path in params["needed"]}
    resume = {str(path): int(offset) for path, offset in (params.get("resume") or {}).items()}
    with contextlib.suppress(ValueError, io.UnsupportedOperation):  # a reader without a descriptor (tests)
        widen_pipe(reader.fileno())  # the pipe from sshd
    stream = Stream(reader)
    seen: set[str] = set()
    meta, entry = read_meta(stream, listed, params, seen)
    done = {path: value for path, value in load_journal(staging).items() if needed.get(path) == value}
    prepare_staging(staging, needed, done, resume)
    hashed = received = linked = 0
    for path in params.get("link") or []:
        if path not in done:
            hashed += link_from_dest(dest, staging, path, needed[path][1], bool(params.get("rehash_base")))
            note_done(staging, path, needed[path][1])
            done[path] = needed[path]
            linked += 1
    while entry is not None:
        info, offset = entry
        info.size += offset
        name = check_member(info, needed, seen, False)
        if name is None:
            stream.skip_padding(info.size - offset)
        elif name in META_NAMES:
            raise BundleError(f"{name} comes after the bundle's files, refused")
        elif name in done:
            raise BundleError(f"{name} was sent although the host holds it verified")
        elif offset and resume.get(name) != offset:
            raise BundleError(f"{name}: the stream continues at byte {offset}, the host expected {resume.get(name, 0)}")
        else:
            got, count = receive_member(stream, staging, name, info.size, offset)
            received, hashed = received + count, hashed + info.size
            if got != needed[name][1]:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(staging, name))
                raise BundleError(f"{name} is altered (sha256 {got}, expected {needed[name][1]}); removed from staging")
            note_done(staging, name, got)
            done[name] = needed[name]
        entry = stream.header()
    stream.rest_is_zero()
    missing = [path for path in needed if path not in done]
    if missing:
        raise BundleError(f"{missing[0]} is missing from the stream ({len(missing)} files missing)")
    for name, data in meta.items():
        with open(os.path.join(staging, name), "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    record = swap_in(staging, dest, state_dir, digest, needed, params.get("subset"))
    return {"changed": True, "record": record, "received_bytes": received, "hashed_bytes": hashed,
            "linked_files": linked, "files": len(needed)}  # fmt: skip


def main(reader: IO[bytes], header: dict[str, Any]) -> int:
    """Entry point of the shipped receiver: one JSON line on standard output."""
    params = header["params"]
    params["dest"] = os.path.realpath(params["dest"])  # as airgap_bundle records it
    params.setdefault("staging", staging_path(params["dest"], params["digest"]))
    try:
        result = probe(params) if params["mode"] == "probe" else receive(reader, params)
        code = 0
    except BundleError as exc:
        result, code = {"failed": True, "msg": str(exc)}, 1
    except OSError as exc:
        result, code = {"failed": True, "msg": f"{exc.filename or params.get('dest')}: {exc.strerror or exc}"}, 1
    if code and params["mode"] != "probe":
        forget_empty(params["staging"])
    print(json.dumps(result), flush=True)
    return code
