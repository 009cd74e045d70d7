"""`bundle inspect ARCHIVE|DIR`: what is inside, with sizes, licenses, digests, each model's capabilities and
whether it can only be restored (no data hashed). ``--json`` gives bundle.yaml's model records as they are."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..bundle import read_bundle_index
from ..delta import whats_new
from ..errors import SpecError
from ..progress import Reporter


def register(sub: Any) -> None:
    from .main import add_common

    parser: argparse.ArgumentParser = sub.add_parser("inspect", help="list what a bundle holds")
    parser.add_argument("bundle", type=Path, help="bundle archive (.tar) or unpacked directory")
    add_common(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, reporter: Reporter) -> tuple[dict[str, Any], str, int]:
    source: Path = args.bundle
    if not source.exists():
        raise SpecError(f"{source}: no such archive or directory")
    index = read_bundle_index(source)
    doc = index.document
    delta = whats_new(doc)
    result = {
        "source": str(source),
        "name": doc.get("name"),
        "bundle_digest": index.digest,
        "sha256sums_sha256": index.sums_sha256,
        "total_size": doc.get("total_size"),
        "ollama": doc.get("ollama"),
        "models": doc.get("models"),
        "images": doc.get("images"),
        "files": len(index.files),
        "delta": delta,  # what a differential bundle adds to its base; null for a full bundle
        "deploy_kit": doc.get("deploy_kit"),  # null when built with --no-deploy-kit
    }
    if not args.json:
        console = Console()
        ollama = doc.get("ollama") or {}
        console.print(f"[bold]{doc.get('name')}[/]  bundle sha256:{index.digest}  {doc.get('total_size')} bytes")
        console.print(f"ollama {ollama.get('version')}: " + ", ".join(f["name"] for f in ollama.get("files", [])))
        table = Table("model", "source", "size", "family", "quant", "manifest digest", "license")
        for model in doc.get("models") or []:
            table.add_row(
                model["short"],
                model["source"],
                str(model["size"]),
                model.get("family", ""),
                model.get("quantization", ""),
                model["manifest_digest"][:19],
                "; ".join(model.get("licenses") or [])[:40],
            )
        console.print(table)
        for model in doc.get("models") or []:
            line = f"{model['short']}: {', '.join(model.get('capabilities') or []) or 'no capabilities'}"
            if model.get("restore_only"):
                line += f"; restore only: {model.get('restore_only_reason', '')}"
            console.print(line, soft_wrap=True, markup=False, highlight=False)
        if delta:
            _print_delta(console, delta)
        kit = doc.get("deploy_kit")
        if isinstance(kit, dict):
            console.print(
                f"deploy kit: ./{kit.get('entry')} -i INVENTORY; python {', '.join(kit.get('python') or [])}; "
                f"platforms {', '.join(kit.get('platforms') or [])}; {kit.get('collection')}; "
                f"{kit.get('wheels')} wheels; {kit.get('size')} bytes",
                soft_wrap=True,
                markup=False,
                highlight=False,
            )
        for image in doc.get("images") or []:
            console.print(
                f"image {image.get('reference')} [{image.get('platform')}]  id {str(image.get('image_id'))[:19]}  "
                f"{image.get('size')} bytes  {image.get('path')}"
            )
    return result, "", 0


def _print_delta(console: Console, delta: dict[str, Any]) -> None:
    """What a differential bundle adds to its base."""
    ollama = delta["ollama"]
    lines = [
        f"differential bundle over base {delta['base_name']} sha256:{delta['base_digest']}",
        f"  ollama: {ollama['base']} -> {ollama['now']}" if ollama["changed"] else f"  ollama: {ollama['now']} (base)",
        "  models added: " + (", ".join(delta["models_added"]) or "none"),
        "  models changed: " + (", ".join(delta["models_changed"]) or "none"),
        "  models from the base: " + (", ".join(delta["models_from_base"]) or "none"),
    ]
    if delta["models_dropped"]:
        lines.append("  models in the base, not in this bundle: " + ", ".join(delta["models_dropped"]))
    if delta["images_added"]:
        lines.append("  images added: " + ", ".join(delta["images_added"]))
    lines.append(
        f"  carried: {delta['files_carried']} files, {delta['bytes_carried']} bytes; "
        f"from the base: {delta['files_from_base']} files, {delta['bytes_from_base']} bytes"
    )
    for line in lines:
        console.print(line, soft_wrap=True, markup=False, highlight=False)
