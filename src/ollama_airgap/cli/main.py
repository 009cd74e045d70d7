"""Entry point of `bundle` / `ollama-airgap`: parse arguments, run one subcommand, map errors to exit codes."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from .. import __version__
from ..errors import AirgapError
from ..progress import Reporter
from . import build, inspect, keygen, split, verify

COMMANDS = (build, verify, inspect, split, keygen)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bundle", description="Gather ollama, models and images into one verified air-gap archive."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")


def emit(args: argparse.Namespace, result: dict[str, Any], human: str) -> None:
    if args.json:
        json.dump(result, sys.stdout, indent=2, sort_keys=False)
        sys.stdout.write("\n")
    elif human:
        print(human)


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    reporter = Reporter(enabled=False if (args.json or args.quiet) else None)
    try:
        with reporter.running():
            result, human, code = args.handler(args, reporter)
        code = int(code)
        emit(args, result, human)
        return code
    except AirgapError as exc:
        if getattr(args, "json", False):
            emit(args, {"ok": False, "error": str(exc), "exit_code": exc.exit_code}, "")
        print(f"bundle: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("bundle: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
