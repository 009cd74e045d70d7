"""`bundle split ARCHIVE --size 4G` and `bundle join ARCHIVE.parts.yaml`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..progress import Reporter
from ..split import join, parse_size, split


def register(sub: Any) -> None:
    from .main import add_common

    parser: argparse.ArgumentParser = sub.add_parser("split", help="split an archive into parts of at most --size")
    parser.add_argument("archive", type=Path)
    parser.add_argument("--size", required=True, help="largest part, e.g. 4G, 700M")
    parser.add_argument("--out-dir", type=Path, help="where parts go (default: beside the archive)")
    add_common(parser)
    parser.set_defaults(handler=run_split)

    joiner: argparse.ArgumentParser = sub.add_parser("join", help="join parts, checking each and the whole")
    joiner.add_argument("parts", type=Path, help="the ARCHIVE.parts.yaml written by split")
    joiner.add_argument("-o", "--output", type=Path, help="archive to write (default: beside the parts)")
    add_common(joiner)
    joiner.set_defaults(handler=run_join)


def run_split(args: argparse.Namespace, reporter: Reporter) -> tuple[dict[str, Any], str, int]:
    size = parse_size(args.size)
    index = split(args.archive, size, args.out_dir or args.archive.parent, reporter)
    return {"ok": True, "parts_index": str(index)}, f"wrote {index}", 0


def run_join(args: argparse.Namespace, reporter: Reporter) -> tuple[dict[str, Any], str, int]:
    archive = join(args.parts, args.output, reporter)
    return {"ok": True, "archive": str(archive)}, f"joined {archive} (sha256 of the whole checked)", 0
