"""Control-node side of a streamed bundle push (plugins/action/airgap_bundle_stream.py): read the bundle (archive or
unpacked directory) with the same checks the host applies, and write the members one host needs as a tar stream into
the stdin of ``ssh host python3 -c BOOT``, straight from the source file with sendfile(2) (no copy in Python).

The receiver is shipped on the same connection: BOOT reads one JSON line (the receiver's source files and the
parameters), executes the sources in one namespace and hands it the rest of the stream."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_checks import (
    BLOCK,
    MANIFEST_NAME,
    MAX_MANIFEST,
    MAX_SIGNATURE,
    META_NAMES,
    SIGNATURE_NAME,
    SUMS_NAME,
    BundleError,
    Listed,
    scan_archive,
    widen_pipe,
)
from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_receive import OFFSET_KEY

HERE = Path(__file__).resolve().parent
RECEIVER_SOURCES = (
    "airgap_bundle_checks.py",
    "airgap_bundle_records.py",
    "airgap_bundle_staging.py",
    "airgap_bundle_receive.py",
)
MARKER = "airgap-bundle-stream"
# Executed by the host's python3 -c: no file is written on the host for the receiver itself.
BOOT = (
    f"# {MARKER}\n"
    "import json,sys\n"
    "r=open(0,'rb',buffering=1<<20,closefd=False)\n"
    "h=json.loads(r.readline())\n"
    "g={'__name__':'airgap_bundle_stream'}\n"
    "for s in h['sources']:exec(compile(s,'airgap_bundle_stream','exec'),g)\n"
    "sys.exit(g['main'](r,h))\n"
)


def header_line(params: dict[str, Any]) -> bytes:
    sources = [(HERE / name).read_text(encoding="utf-8") for name in RECEIVER_SOURCES]
    return json.dumps({"sources": sources, "params": params}).encode() + b"\n"


@dataclass
class Source:
    """Where each member's bytes are: (file, offset of its data)."""

    path: str
    kind: str  # archive or directory
    meta: dict[str, bytes] = field(default_factory=dict)
    where: dict[str, tuple[str, int]] = field(default_factory=dict)
    mtime: int = 0


def carried_paths(files: list[dict[str, Any]]) -> set[str] | None:
    """The paths a differential bundle's archive carries; None for a full bundle."""
    if not any("carried" in item for item in files):
        return None
    return {str(item["path"]) for item in files if item.get("carried")}


def open_source(src: str, listed: Listed, carried: set[str] | None) -> Source:
    """Check the bundle as the host will (headers, paths, types, sizes, trailing data) and index its members."""
    in_source = listed if carried is None else {p: v for p, v in listed.items() if p in carried}
    if os.path.isdir(src):
        source = Source(src, "directory")
        for name in META_NAMES:
            full = os.path.join(src, name)
            if os.path.isfile(full) and not os.path.islink(full):
                with open(full, "rb") as handle:
                    source.meta[name] = handle.read(MAX_MANIFEST + 1)
        for path, (size, _) in in_source.items():
            full = os.path.join(src, path)
            info = os.lstat(full) if os.path.lexists(full) else None
            if info is None:
                raise BundleError(f"{path} is missing")
            if not stat.S_ISREG(info.st_mode):
                raise BundleError(f"{path} is not a regular file (link or device), refused")
            if info.st_size != size:
                raise BundleError(f"{path} is altered (size {info.st_size}, expected {size})")
            source.where[path] = (full, 0)
    else:
        source = Source(src, "archive", mtime=int(os.path.getmtime(src)))
        with tarfile.open(src, "r:") as tar:
            for member in scan_archive(tar, os.path.getsize(src), in_source):
                if member.name in META_NAMES:
                    reader = tar.extractfile(member)
                    assert reader is not None
                    source.meta[member.name] = reader.read()
                else:
                    source.where[member.name] = (src, member.offset_data)
    for name in (MANIFEST_NAME, SUMS_NAME):
        if name not in source.meta:
            raise BundleError(f"{name} is missing")
    if len(source.meta.get(SIGNATURE_NAME, b"")) > MAX_SIGNATURE:
        raise BundleError(f"{SIGNATURE_NAME} is larger than {MAX_SIGNATURE} bytes")
    return source


def member_header(name: str, size: int, mtime: int, offset: int = 0) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.type = size - offset, mtime, 0o644, tarfile.REGTYPE
    if offset:
        info.pax_headers = {OFFSET_KEY: str(offset)}
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def send_members(fd: int, source: Source, send: list[tuple[str, int]], listed: Listed) -> int:
    """The tar stream: bundle.yaml, its signature, SHA256SUMS, then each (path, offset); returns data bytes sent."""
    sent = 0
    for name in (MANIFEST_NAME, SIGNATURE_NAME, SUMS_NAME):
        if name in source.meta:
            data = source.meta[name]
            write_all(fd, member_header(name, len(data), source.mtime) + data + bytes(-len(data) % BLOCK))
    for path, offset in send:
        size = listed[path][0]
        file_path, data_offset = source.where[path]
        write_all(fd, member_header(path, size, source.mtime, offset))
        with open(file_path, "rb") as handle:
            position, left = data_offset + offset, size - offset
            while left:
                count = os.sendfile(fd, handle.fileno(), position, min(left, 1 << 30))
                if not count:
                    raise BundleError(f"{path}: the source ended early")
                position, left, sent = position + count, left - count, sent + count
        write_all(fd, bytes(-(size - offset) % BLOCK))
    write_all(fd, bytes(2 * BLOCK))
    return sent


def run_receiver(
    argv: list[str], header: bytes, pass_fds: tuple[int, ...] = (), stream: Any = None
) -> tuple[int, str, str, int]:
    """Run the remote receiver; ``stream(fd) -> bytes sent`` writes after the header. (rc, stdout, stderr, sent)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out, stderr=err, pass_fds=pass_fds)
        assert proc.stdin is not None
        fd = proc.stdin.fileno()
        widen_pipe(fd)
        sent = 0
        try:
            write_all(fd, header)
            if stream is not None:
                sent = stream(fd)
        except BrokenPipeError:
            pass  # the receiver stopped reading: its answer says why
        finally:
            proc.stdin.close()
        rc = proc.wait()
        out.seek(0)
        err.seek(0)
        return rc, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"), sent


def answer(rc: int, stdout: str, stderr: str) -> dict[str, Any]:
    """The receiver's JSON line (after any become marker), or why there is none."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                return dict(json.loads(line))
            except ValueError:
                break
    detail = (stderr.strip().splitlines() or stdout.strip().splitlines() or [""])[-1]
    return {"failed": True, "msg": f"the stream receiver gave no answer (rc {rc}): {detail}"[:400], "rc": rc}
