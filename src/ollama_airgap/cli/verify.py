"""`bundle verify ARCHIVE|DIR`: re-hash everything; refuse missing, altered or unlisted files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..bundle import verify_archive, verify_dir
from ..errors import SpecError
from ..progress import Reporter
from ..signing import load_public_key


def register(sub: Any) -> None:
    from .main import add_common

    parser: argparse.ArgumentParser = sub.add_parser("verify", help="re-hash an archive or unpacked bundle")
    parser.add_argument("bundle", type=Path, help="bundle archive (.tar) or unpacked directory")
    parser.add_argument("--jobs", "-j", type=int, default=None, help="files hashed at once")
    parser.add_argument("--key", type=Path, help="require a valid signature by this Ed25519 public key")
    add_common(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, reporter: Reporter) -> tuple[dict[str, Any], str, int]:
    source: Path = args.bundle
    if not source.exists():
        raise SpecError(f"{source}: no such archive or directory")
    public_key = load_public_key(args.key) if args.key else None
    report = (verify_dir if source.is_dir() else verify_archive)(source, reporter, args.jobs, public_key)
    if not args.json:
        report.raise_for_problems()
    human = f"{source}: OK, {report.files} files, {report.bytes} bytes, bundle sha256:{report.bundle_digest}"
    if report.delta_of and not source.is_dir():
        human += (
            f"\na differential bundle of base sha256:{report.delta_of}: it carries the files checked above; "
            f"{report.from_base} more come from the base, checked when a host assembles the complete bundle"
        )
    return report.as_dict(), human, 0 if report.ok else 3
