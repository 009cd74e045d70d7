"""envconfig/config.go: OLLAMA_* settings."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .util import ApiError, log


@dataclass(frozen=True)
class HostURL:
    scheme: str
    host: str
    port: int
    path: str = ""

    @property
    def hostport(self) -> str:
        return join_host_port(self.host, self.port)

    def url(self) -> str:
        return f"{self.scheme}://{self.hostport}" + (f"/{self.path}" if self.path else "")


def join_host_port(host: str, port: int | str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_host_port(hostport: str) -> tuple[str, str]:
    """Go's net.SplitHostPort (raises ValueError where Go returns an error)."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0 or not hostport[end + 1 :].startswith(":"):
            raise ValueError("missing port")
        return hostport[1:end], hostport[end + 2 :]
    if hostport.count(":") != 1:
        raise ValueError("missing port" if ":" not in hostport else "too many colons")
    host, port = hostport.split(":")
    return host, port


def parse_host(value: str | None = None) -> HostURL:
    """envconfig.Host(): OLLAMA_HOST as scheme, host, port (default http://127.0.0.1:11434)."""
    raw = (os.environ.get("OLLAMA_HOST", "") if value is None else value).strip().strip("\"'")
    default_port = "11434"
    if "://" in raw:
        scheme, hostport = raw.split("://", 1)
        if scheme == "http":
            default_port = "80"
        elif scheme == "https":
            default_port = "443"
    else:
        scheme, hostport = "http", raw
        if raw == "ollama.com":
            scheme, hostport = "https", "ollama.com:443"
    hostport, _, path = hostport.partition("/")
    try:
        host, port = split_host_port(hostport)
    except ValueError:
        host, port = "127.0.0.1", default_port
        stripped = hostport.strip("[]")
        try:
            host = str(ipaddress.ip_address(stripped))
        except ValueError:
            if hostport:
                host = hostport
    if not port.isdigit() or int(port) > 65535:
        log("WARN", "invalid port, using default", source="config.go", port=port, default=default_port)
        port = default_port
    return HostURL(scheme=scheme, host=host, port=int(port), path=path)


def connectable_host() -> HostURL:
    """envconfig.ConnectableHost(): unspecified bind addresses replaced by loopback."""
    url = parse_host()
    if not url.host:  # ":port" binds every interface; Go dials it as the local system
        return HostURL(url.scheme, "127.0.0.1", url.port, url.path)
    try:
        address = ipaddress.ip_address(url.host)
    except ValueError:
        return url
    if address.is_unspecified:
        return HostURL(url.scheme, "127.0.0.1" if address.version == 4 else "::1", url.port, url.path)
    return url


def allowed_origins() -> list[str]:
    """envconfig.AllowedOrigins()."""
    origins = [o for o in os.environ.get("OLLAMA_ORIGINS", "").split(",") if os.environ.get("OLLAMA_ORIGINS")]
    for name in ("localhost", "127.0.0.1", "0.0.0.0"):
        origins += [f"http://{name}", f"https://{name}", f"http://{name}:*", f"https://{name}:*"]
    origins += ["app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*"]
    return origins


def models_dir() -> Path:
    """envconfig.Models()."""
    configured = os.environ.get("OLLAMA_MODELS", "")
    return Path(configured) if configured else Path.home() / ".ollama" / "models"


def env_bool(name: str) -> bool:
    """envconfig.Bool: strconv.ParseBool, any other non-empty value is true."""
    value = os.environ.get(name, "").strip().strip("\"'")
    if not value:
        return False
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    return value not in ("0", "f", "F", "FALSE", "false", "False")


FOREVER_SECONDS = float(2**63 - 1) / 1e9  # Go's maximum time.Duration

_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_go_duration(text: str) -> float:
    """time.ParseDuration, in seconds."""
    if text in ("0", "+0", "-0"):
        return 0.0
    match = re.fullmatch(r"([+-]?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+", text)
    if not match:
        raise ValueError(f'time: invalid duration "{text}"')
    total = sum(
        float(num) * _DURATION_UNITS[unit]
        for num, unit in re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)", text)
    )
    return -total if match.group(1) == "-" else total


def default_keep_alive() -> float:
    """envconfig.KeepAlive(), in seconds (negative -> forever)."""
    value = os.environ.get("OLLAMA_KEEP_ALIVE", "").strip().strip("\"'")
    seconds = 300.0
    if value:
        try:
            seconds = parse_go_duration(value)
        except ValueError:
            if re.fullmatch(r"[+-]?\d+", value):
                seconds = float(int(value))
    return FOREVER_SECONDS if seconds < 0 else seconds


def request_keep_alive(value: Any) -> float | None:
    """api.Duration.UnmarshalJSON: number = seconds, string = Go duration, negative = forever."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ApiError("json: cannot unmarshal bool into Go value of type api.Duration", 400)
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = parse_go_duration(value)
        except ValueError as err:
            raise ApiError(str(err), 400) from err
    else:
        raise ApiError(f"Unsupported type: '{type(value).__name__}'", 400)
    return FOREVER_SECONDS if seconds < 0 else seconds
