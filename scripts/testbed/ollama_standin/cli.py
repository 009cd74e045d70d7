"""cmd/cmd.go and api/client.go: the CLI as a client of OLLAMA_HOST."""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .envconfig import connectable_host
from .modelfile import ModelfileError, modelfile_create_request, parse_modelfile
from .names import parse_name
from .serve import serve
from .util import human_bytes, human_time
from .version import VERSION


class ClientError(Exception):
    pass


class Client:
    def __init__(self) -> None:
        self.base = connectable_host()

    def _connection(self, timeout: float | None = None) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.base.scheme == "https" else http.client.HTTPConnection
        return cls(self.base.host, self.base.port, timeout=timeout)

    def request(self, method: str, path: str, body: Any = None, raw: BinaryIO | None = None,
                timeout: float | None = None) -> http.client.HTTPResponse:  # fmt: skip
        prefix = f"/{self.base.path}" if self.base.path else ""
        headers = {"Accept": "application/x-ndjson", "User-Agent": f"ollama/{VERSION} (standin)"}
        payload: Any = None
        if raw is not None:
            payload = raw
            headers["Content-Type"] = "application/octet-stream"
            headers["Content-Length"] = str(os.fstat(raw.fileno()).st_size)
        elif body is not None:
            payload = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        try:
            connection = self._connection(timeout)
            connection.request(method, prefix + path, body=payload, headers=headers)
            response = connection.getresponse()
        except OSError as err:
            raise ClientError("could not connect to ollama server, run 'ollama serve' to start it") from err
        if response.status >= 400:
            data = response.read()
            try:
                message = json.loads(data).get("error") or data.decode()
            except ValueError:
                message = data.decode("utf-8", "replace").strip() or f"{response.status} {response.reason}"
            raise ClientError(message)
        return response

    def json(self, method: str, path: str, body: Any = None) -> Any:
        data = self.request(method, path, body).read()
        return json.loads(data) if data.strip() else {}

    def stream(self, method: str, path: str, body: Any) -> Iterator[dict[str, Any]]:
        response = self.request(method, path, body)
        for line in response:
            if not line.strip():
                continue
            event = json.loads(line)
            if event.get("error"):
                raise ClientError(event["error"])
            yield event

    def heartbeat(self) -> None:
        self.request("HEAD", "/", timeout=5).read()


def cli_version() -> int:
    server_version = ""
    try:
        server_version = Client().json("GET", "/api/version").get("version", "")
    except (ClientError, ValueError):
        print("Warning: could not connect to a running Ollama instance")
    if server_version:
        print(f"ollama version is {server_version}")
    if server_version != VERSION:
        print(f"Warning: client version is {VERSION}")
    return 0


def cli_create(args: argparse.Namespace) -> int:
    name = parse_name(args.model)
    if not name.is_valid():
        raise ClientError(f"invalid model name: {args.model}")
    filename = Path(os.path.abspath(args.file or "Modelfile"))
    if not filename.exists():
        if args.file:
            raise ClientError("specified Modelfile wasn't found")
        text = "FROM .\n"
    else:
        text = filename.read_text(encoding="utf-8")
    try:
        commands = parse_modelfile(text)
        print("gathering model components", file=sys.stderr)
        request, uploads = modelfile_create_request(commands, filename.parent)
    except (ModelfileError, OSError) as err:
        raise ClientError(str(err)) from err
    client = Client()
    for digest, path in uploads.items():
        print(f"copying file {digest} 0%", file=sys.stderr)
        try:
            client.request("HEAD", f"/api/blobs/{digest}").read()
        except ClientError:
            with path.open("rb") as handle:
                client.request("POST", f"/api/blobs/{digest}", raw=handle).read()
        print(f"copying file {digest} 100%", file=sys.stderr)
    request["model"] = args.model
    if args.quantize:
        request["quantize"] = args.quantize
    for event in client.stream("POST", "/api/create", request):
        print(event.get("status", ""), file=sys.stderr)
    return 0


def print_table(rows: list[list[str]]) -> None:
    """tablewriter without borders, left aligned, 4-space padding."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("    ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def cli_list(args: argparse.Namespace) -> int:
    models = Client().json("GET", "/api/tags").get("models") or []
    rows = [["NAME", "ID", "SIZE", "MODIFIED"]]
    for item in models:
        if args.filter and not item["name"].lower().startswith(args.filter[0].lower()):
            continue
        modified = dt.datetime.fromisoformat(item["modified_at"].replace("Z", "+00:00")).timestamp()
        rows.append([item["name"], item["digest"][:12], human_bytes(int(item["size"])), human_time(modified)])
    print_table(rows)
    return 0


def cli_ps(_args: argparse.Namespace) -> int:
    models = Client().json("GET", "/api/ps").get("models") or []
    rows = [["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]]
    for item in models:
        size, vram = int(item["size"]), int(item.get("size_vram", 0))
        if vram == 0:
            processor = "100% CPU"
        elif vram == size:
            processor = "100% GPU"
        else:
            cpu_percent = round((size - vram) / size * 100)
            processor = f"{cpu_percent}%/{100 - cpu_percent}% CPU/GPU"
        until = dt.datetime.fromisoformat(item["expires_at"].replace("Z", "+00:00")).timestamp()
        rows.append([item["name"], item["digest"][:12], human_bytes(size), processor,
                     str(item.get("context_length", "")), human_time(until)])  # fmt: skip
    print_table(rows)
    return 0


def cli_show(args: argparse.Namespace) -> int:
    chosen = [flag for flag in ("license", "modelfile", "parameters", "system", "template") if getattr(args, flag)]
    if len(chosen) > 1:
        raise ClientError(
            "only one of '--license', '--modelfile', '--parameters', '--system', or '--template' can be specified"
        )
    response = Client().json("POST", "/api/show", {"name": args.model, "verbose": args.verbose})
    if chosen:
        value = response.get(chosen[0], "")
        if chosen[0] in ("system", "template"):
            sys.stdout.write(value)
        else:
            print(value)
        return 0
    info = response.get("model_info") or {}
    details = response.get("details") or {}
    arch = info.get("general.architecture", details.get("family", ""))
    rows = [("architecture", arch), ("parameters", details.get("parameter_size", ""))]
    for label, key in (("context length", "context_length"), ("embedding length", "embedding_length")):
        if f"{arch}.{key}" in info:
            rows.append((label, str(info[f"{arch}.{key}"])))
    rows.append(("quantization", details.get("quantization_level", "")))
    if response.get("requires"):
        rows.append(("requires", response["requires"]))
    print("  Model")
    for label, value in rows:
        print(f"    {label:<20}{value}")
    if response.get("capabilities"):
        print("\n  Capabilities")
        for capability in response["capabilities"]:
            print(f"    {capability}")
    if response.get("parameters"):
        print("\n  Parameters")
        for line in response["parameters"].splitlines():
            key, _, value = line.partition(" ")
            print(f"    {key:<15}{value.strip()}")
    for section in ("system", "license"):
        if response.get(section):
            print(f"\n  {section.capitalize()}")
            for line in response[section].strip().splitlines()[:2]:
                print(f"    {line}")
    print()
    return 0


def cli_rm(args: argparse.Namespace) -> int:
    client = Client()
    for model in args.models:
        try:
            client.json("POST", "/api/generate", {"model": model, "keep_alive": 0})
        except ClientError as err:
            if "not found" not in str(err).lower():
                print(f"Warning: unable to stop model '{model}'", file=sys.stderr)
        client.request("DELETE", "/api/delete", {"name": model}).read()
        print(f"deleted '{model}'")
    return 0


def cli_stop(args: argparse.Namespace) -> int:
    Client().json("POST", "/api/generate", {"model": args.model, "keep_alive": 0})
    return 0


def cli_cp(args: argparse.Namespace) -> int:
    Client().request("POST", "/api/copy", {"source": args.source, "destination": args.destination}).read()
    print(f"copied '{args.source}' to '{args.destination}'")
    return 0


def cli_run(args: argparse.Namespace) -> int:
    prompt = " ".join(args.prompt)
    if not prompt and not sys.stdin.isatty():
        prompt = sys.stdin.read()
    client = Client()
    body: dict[str, Any] = {"model": args.model, "prompt": prompt}
    if args.keepalive:
        body["keep_alive"] = args.keepalive
    info = client.json("POST", "/api/show", {"model": args.model})
    if "embedding" in (info.get("capabilities") or []):  # RunHandler -> generateEmbedding
        return _run_embedding(client, args, prompt)
    if not prompt:
        client.json("POST", "/api/generate", body)
        raise ClientError("interactive mode is not available in this ollama stand-in")
    for event in client.stream("POST", "/api/generate", body):
        sys.stdout.write(event.get("response", ""))
        sys.stdout.flush()
    sys.stdout.write("\n\n")
    return 0


def _run_embedding(client: Client, args: argparse.Namespace, prompt: str) -> int:
    if not prompt:
        raise ClientError(f'embedding models require input text. Usage: ollama run {args.model} "your text here"')
    body: dict[str, Any] = {"model": args.model, "input": prompt}
    if args.keepalive:
        body["keep_alive"] = args.keepalive
    if args.dimensions > 0:
        body["dimensions"] = args.dimensions
    embeddings = client.json("POST", "/api/embed", body).get("embeddings") or []
    if not embeddings:
        raise ClientError("no embeddings returned")
    print(json.dumps(embeddings[0], separators=(",", ":")))
    return 0


def cli_pull_push(args: argparse.Namespace) -> int:
    for event in Client().stream("POST", f"/api/{args.command}", {"name": args.model}):
        print(event.get("status", ""), file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ollama", description="Large language model runner (stand-in)")
    sub = parser.add_subparsers(dest="command", metavar="command")
    sub.add_parser("serve", aliases=["start"], help="Start ollama")
    create = sub.add_parser("create", help="Create a model from a Modelfile")
    create.add_argument("model")
    create.add_argument("-f", "--file", default="")
    create.add_argument("-q", "--quantize", default="")
    show = sub.add_parser("show", help="Show information for a model")
    show.add_argument("model")
    for flag in ("license", "modelfile", "parameters", "system", "template"):
        show.add_argument(f"--{flag}", action="store_true")
    show.add_argument("-v", "--verbose", action="store_true")
    run = sub.add_parser("run", help="Run a model")
    run.add_argument("model")
    run.add_argument("prompt", nargs="*")
    run.add_argument("--keepalive", default="")
    run.add_argument("--dimensions", type=int, default=0)
    stop = sub.add_parser("stop", help="Stop a running model")
    stop.add_argument("model")
    for command in ("pull", "push"):
        item = sub.add_parser(command, help=f"{command.capitalize()} a model (not possible: air gap)")
        item.add_argument("model")
        item.add_argument("--insecure", action="store_true")
    listing = sub.add_parser("list", aliases=["ls"], help="List models")
    listing.add_argument("filter", nargs="*")
    sub.add_parser("ps", help="List running models")
    copy = sub.add_parser("cp", help="Copy a model")
    copy.add_argument("source")
    copy.add_argument("destination")
    remove = sub.add_parser("rm", help="Remove a model")
    remove.add_argument("models", nargs="+")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-v"], ["--version"], ["version"]):
        return cli_version()
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "create": cli_create, "show": cli_show, "run": cli_run, "stop": cli_stop, "pull": cli_pull_push,
        "push": cli_pull_push, "list": cli_list, "ls": cli_list, "ps": cli_ps, "cp": cli_cp, "rm": cli_rm,
    }  # fmt: skip
    if args.command in ("serve", "start"):
        return serve()
    if args.command not in handlers:
        parser.print_help()
        return 0
    try:
        if args.command not in ("create",):
            Client().heartbeat()
        return handlers[args.command](args)
    except ClientError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
