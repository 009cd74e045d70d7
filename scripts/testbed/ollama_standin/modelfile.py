"""parser/parser.go: the Modelfile grammar and Modelfile.CreateRequest."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from .version import at_least


def modelfile_commands() -> tuple[str, ...]:
    """The commands this version's parser knows: REQUIRES since v0.14.0, DRAFT since v0.30.0."""
    commands = ["from", "license", "template", "system", "adapter"]
    if at_least("0.30.0"):
        commands.append("draft")
    commands += ["renderer", "parser", "parameter", "message"]
    if at_least("0.14.0"):
        commands.append("requires")
    return tuple(commands)


def _one_of(words: tuple[str, ...]) -> str:
    quoted = [f'"{word}"' for word in words]
    return ", ".join(quoted[:-1]) + ", or " + quoted[-1]


MESSAGE_ROLES = ("system", "user", "assistant")
DEPRECATED_PARAMETERS = (
    "penalize_newline", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mlock", "mirostat", "mirostat_tau",
    "mirostat_eta",
)  # fmt: skip
# api.Options / api.Runner JSON names and their Go kinds (api.FormatParams converts PARAMETER values by these).
OPTION_KINDS = {
    "num_keep": "int", "seed": "int", "num_predict": "int", "top_k": "int", "top_p": "float", "min_p": "float",
    "typical_p": "float", "repeat_last_n": "int", "temperature": "float", "repeat_penalty": "float",
    "presence_penalty": "float", "frequency_penalty": "float", "stop": "list", "num_ctx": "int", "num_batch": "int",
    "num_gpu": "int", "main_gpu": "int", "use_mmap": "bool", "num_thread": "int", "penalize_newline": "bool",
    "low_vram": "bool", "f16_kv": "bool", "logits_all": "bool", "vocab_only": "bool", "use_mlock": "bool",
    "mirostat": "int", "mirostat_tau": "float", "mirostat_eta": "float", "numa": "bool", "tfs_z": "float",
}  # fmt: skip


class ModelfileError(Exception):
    pass


def parse_modelfile(text: str) -> list[tuple[str, str]]:
    """parser.ParseFile: the Modelfile's commands as (name, args); FROM becomes "model".

    Values may be bare (to the end of the line), "quoted" or \"\"\"triple quoted\"\"\" (both may span lines).
    """
    text = text.lstrip("\ufeff").replace("\r\n", "\n")
    commands: list[tuple[str, str]] = []
    pos = 0

    def line_of(index: int) -> int:
        return text.count("\n", 0, index) + 1

    def word(pattern: str) -> str | None:
        nonlocal pos
        match = re.compile(pattern).match(text, pos)
        if not match:
            return None
        pos = match.end()
        return match.group(1)

    while True:
        word(r"([\s]*)")
        if pos >= len(text):
            break
        if text[pos] == "#":
            end = text.find("\n", pos)
            pos = len(text) if end < 0 else end
            continue
        start = pos
        keyword = word(r"([A-Za-z]+)[ \t]+")
        if keyword is None or keyword.lower() not in modelfile_commands():
            raise ModelfileError(f"(line {line_of(start)}): command must be one of {_one_of(modelfile_commands())}")
        keyword = keyword.lower()
        name = "model" if keyword == "from" else keyword
        role = ""
        if keyword == "parameter":
            name = word(r"([A-Za-z0-9_]+)[ \t]+") or ""
            if not name:
                raise ModelfileError(f"unexpected EOF: {text[start:].splitlines()[0]}")
        elif keyword == "message":
            role = word(r"([A-Za-z]+)[ \t]+") or ""
            if role not in MESSAGE_ROLES:
                raise ModelfileError(
                    f'(line {line_of(start)}): message role must be one of "system", "user", or "assistant"'
                )
        for quote in ('"""', '"'):
            if text.startswith(quote, pos):
                close = text.find(quote, pos + len(quote))
                if close < 0:
                    raise ModelfileError(f"unexpected EOF: {text[start:].strip()}")
                value = text[pos + len(quote) : close]
                end = text.find("\n", close)
                pos = len(text) if end < 0 else end
                break
        else:
            end = text.find("\n", pos)
            end = len(text) if end < 0 else end
            value, pos = text[pos:end].strip(), end
        commands.append((name, f"{role}: {value}" if role else value))
    if not any(name == "model" for name, _ in commands):
        raise ModelfileError("no FROM line")
    return commands


def quote_value(text: str) -> str:
    """parser.quote."""
    if "\n" in text or text.startswith(" ") or text.endswith(" "):
        return f'"""{text}"""' if '"' in text else f'"{text}"'
    return text


def command_string(name: str, args: str) -> str:
    """parser.Command.String."""
    if name == "model":
        return f"FROM {args}"
    if name in ("license", "template", "system", "adapter", "draft", "renderer", "parser", "requires"):
        return f"{name.upper()} {quote_value(args)}"
    if name == "message":
        role, _, message = args.partition(": ")
        return f"MESSAGE {role} {quote_value(message)}"
    return f"PARAMETER {name} {quote_value(args)}"


def format_param(key: str, value: str) -> Any:
    """api.FormatParams for one PARAMETER."""
    kind = OPTION_KINDS.get(key)
    if kind is None:
        raise ModelfileError(f"unknown parameter '{key}'")
    try:
        if kind == "int":
            return int(value, 10)
        if kind == "float":
            return float(value)
        if kind == "bool":
            return {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}[value.lower()]
    except (ValueError, KeyError) as err:
        raise ModelfileError(f"invalid {kind} value [{value}]") from err
    return [value]


def expand_path(path: str, relative_dir: Path) -> Path:
    """parser.expandPath."""
    if path.startswith("/"):
        return Path(os.path.abspath(path))
    if path.startswith("~"):
        return Path(os.path.abspath(os.path.expanduser(path)))
    return Path(os.path.abspath(relative_dir / path))


def file_digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return f"sha256:{hasher.hexdigest()}"


def modelfile_create_request(
    commands: list[tuple[str, str]], relative_dir: Path
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Modelfile.CreateRequest: the /api/create JSON body, plus {digest: local file} to upload first."""
    request: dict[str, Any] = {}
    uploads: dict[str, Path] = {}
    params: dict[str, Any] = {}
    messages: list[dict[str, str]] = []
    licenses: list[str] = []
    for name, args in commands:
        if name in ("model", "adapter", "draft"):
            path = expand_path(args, relative_dir)
            if not path.exists():
                if name != "model":
                    raise ModelfileError(f"stat {path}: no such file or directory")
                request["from"] = args
                continue
            if path.is_dir():
                files = sorted(path.glob("*.gguf"))
                if not files:
                    raise ModelfileError("no Modelfile or safetensors files found")
            else:
                files = [path]
            key = {"model": "files", "adapter": "adapters", "draft": "draft_files"}[name]
            if name == "adapter":
                request.pop("adapters", None)  # ADAPTER replaces, FROM and DRAFT files merge
            target = request.setdefault(key, {})
            for file in files:
                real = file.resolve()
                digest = file_digest(real)
                uploads[digest] = real
                target[file.name] = digest
        elif name in ("template", "system", "renderer", "parser"):
            request[name] = args
        elif name == "license":
            licenses.append(args)
        elif name == "requires":
            if not re.fullmatch(r"v?(0|[1-9]\d*)(\.(0|[1-9]\d*)){0,2}(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?", args):
                raise ModelfileError("requires must be a valid semver (e.g. 0.14.0)")
            request["requires"] = args.removeprefix("v")
        elif name == "message":
            role, _, content = args.partition(": ")
            messages.append({"role": role, "content": content})
        elif name in DEPRECATED_PARAMETERS:
            print(f"warning: parameter {name} is deprecated")
        else:
            value = format_param(name, args)
            if isinstance(value, list) and isinstance(params.get(name), list):
                params[name] += value
            else:
                params[name] = value
    if params:
        request["parameters"] = params
    if messages:
        request["messages"] = messages
    if licenses:
        request["license"] = licenses
    return request, uploads
