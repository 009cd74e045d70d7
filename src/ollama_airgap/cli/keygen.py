"""`bundle keygen KEY`: a new Ed25519 signing key (KEY, mode 0600) and its public half (KEY.pub)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..progress import Reporter
from ..signing import generate_keypair


def register(sub: Any) -> None:
    from .main import add_common

    parser: argparse.ArgumentParser = sub.add_parser("keygen", help="create an Ed25519 key pair to sign bundles")
    parser.add_argument("key", type=Path, help="private key file to create (the public key goes to KEY.pub)")
    add_common(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, reporter: Reporter) -> tuple[dict[str, Any], str, int]:
    public = generate_keypair(args.key)
    return {"ok": True, "private_key": str(args.key), "public_key": str(public)}, f"wrote {args.key} and {public}", 0
