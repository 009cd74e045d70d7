"""Split an archive into parts that fit the media that carries it, and join them back, checking every part and
the hash of the whole."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import DiskSpaceError, SpecError, VerifyError
from .hashing import CHUNK, HEX_RE
from .progress import Reporter

PARTS_SUFFIX = ".parts.yaml"
_SIZE_RE = re.compile(r"^([0-9]+)([KMGT]?)(i?B)?$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``4G``, ``700M``, ``4GiB`` or a byte count; binary units (1G = 2**30) as split(1) uses."""
    match = _SIZE_RE.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise SpecError(f"--size: {text!r} is not a size like 4G, 700M or 1048576")
    exponent = " KMGT".index(match.group(2).upper() or " ")
    return int(match.group(1)) * (1 << (10 * exponent))


@dataclass(frozen=True)
class Part:
    name: str
    size: int
    sha256: str


def split(archive: Path, part_size: int, out_dir: Path, reporter: Reporter) -> Path:
    """Write ``<archive>.part-000``... and ``<archive>.parts.yaml`` (each part's sha256 and the whole's)."""
    if not archive.is_file():
        raise SpecError(f"{archive}: no such archive")
    out_dir.mkdir(parents=True, exist_ok=True)
    total = archive.stat().st_size
    whole = hashlib.sha256()
    parts: list[Part] = []
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    advance = reporter.task(f"split {archive.name}", total)
    with open(archive, "rb", buffering=0) as src:
        index = 0
        while index == 0 or src.tell() < total:
            name = f"{archive.name}.part-{index:03d}"
            part_hash = hashlib.sha256()
            written = 0
            tmp = out_dir / (name + ".partial")
            try:
                with open(tmp, "wb", buffering=0) as dst:
                    while written < part_size:
                        n = src.readinto(view[: min(CHUNK, part_size - written)])
                        if not n:
                            break
                        dst.write(view[:n])
                        whole.update(view[:n])
                        part_hash.update(view[:n])
                        written += n
                        advance(n)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                if exc.errno == 28:
                    raise DiskSpaceError(f"no space left in {out_dir} while splitting {archive}") from None
                raise
            os.replace(tmp, out_dir / name)
            parts.append(Part(name, written, part_hash.hexdigest()))
            index += 1
            if not written:
                break
    document: dict[str, Any] = {
        "archive": archive.name,
        "size": total,
        "sha256": whole.hexdigest(),
        "parts": [{"name": p.name, "size": p.size, "sha256": p.sha256} for p in parts],
    }
    index_path = out_dir / (archive.name + PARTS_SUFFIX)
    index_path.write_text(yaml.safe_dump(document, sort_keys=False))
    return index_path


def join(parts_file: Path, output: Path | None, reporter: Reporter) -> Path:
    """Concatenate the parts named in a .parts.yaml into the archive, refusing any part or whole that differs."""
    try:
        document = yaml.safe_load(parts_file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise VerifyError(f"{parts_file}: cannot read parts index ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("parts"), list):
        raise VerifyError(f"{parts_file}: not a parts index")
    archive_name = str(document.get("archive", ""))
    if not archive_name or "/" in archive_name or not HEX_RE.match(str(document.get("sha256", ""))):
        raise VerifyError(f"{parts_file}: parts index has no valid archive name or sha256")
    target = output or parts_file.parent / archive_name
    tmp = target.with_name(target.name + ".partial")
    whole = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    advance = reporter.task(f"join {archive_name}", int(document.get("size", 0)))
    try:
        with open(tmp, "wb", buffering=0) as dst:
            for entry in document["parts"]:
                name = str(entry.get("name", ""))
                if not name or "/" in name or name.startswith("."):
                    raise VerifyError(f"{parts_file}: unsafe part name {name!r}")
                part_path = parts_file.parent / name
                if not part_path.is_file():
                    raise VerifyError(f"{part_path}: part is missing")
                part_hash = hashlib.sha256()
                with open(part_path, "rb", buffering=0) as src:
                    while n := src.readinto(buf):
                        dst.write(view[:n])
                        part_hash.update(view[:n])
                        whole.update(view[:n])
                        advance(n)
                if part_hash.hexdigest() != entry.get("sha256"):
                    raise VerifyError(f"{part_path}: part is altered (sha256 {part_hash.hexdigest()})")
        if whole.hexdigest() != document["sha256"]:
            raise VerifyError(f"{target}: joined archive sha256 {whole.hexdigest()} differs from {document['sha256']}")
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == 28:
            raise DiskSpaceError(f"no space left for {target}") from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)
    return target
