"""Errors, the server log, Go-style JSON/time and number formatting (shared by every module)."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import sys
import time
from typing import Any


class ApiError(Exception):
    """An error the HTTP API answers as {"error": message} with `status`."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def log(level: str, msg: str, source: str = "routes.go", **attrs: Any) -> None:
    """One slog text-handler line on stderr, like ollama's server log."""
    now = dt.datetime.now().astimezone()
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}" + _go_zone(now)
    parts = [f"time={stamp}", f"level={level}", f"source={source}", f"msg={_slog_value(msg)}"]
    parts += [f"{key}={_slog_value(value)}" for key, value in attrs.items()]
    sys.stderr.write(" ".join(parts) + "\n")
    sys.stderr.flush()


def _slog_value(value: Any) -> str:
    text = str(value)
    if text == "" or re.search(r'[\s="]', text):
        return json.dumps(text)
    return text


def _go_zone(moment: dt.datetime) -> str:
    offset = moment.strftime("%z")
    if offset in ("", "+0000"):
        return "Z"
    return offset[:3] + ":" + offset[3:]


def go_time(epoch: float, utc: bool = False) -> str:
    """RFC 3339 time with sub-seconds, as Go's encoding/json writes a time.Time."""
    moment = dt.datetime.fromtimestamp(epoch, tz=dt.UTC)
    if not utc:
        moment = moment.astimezone()
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}" + _go_zone(moment)


def go_json(value: Any) -> str:
    """JSON like Go's json.Encoder: compact, HTML characters escaped, trailing newline."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029") + "\n"


def human_number(count: int) -> str:
    """format.HumanNumber."""
    if count >= 1_000_000_000:
        number = count / 1_000_000_000
        return f"{number:.0f}B" if number == math.floor(number) else f"{number:.1f}B"
    if count >= 1_000_000:
        number = count / 1_000_000
        return f"{number:.0f}M" if number == math.floor(number) else f"{number:.2f}M"
    if count >= 1000:
        return f"{count / 1000:.0f}K"
    return str(count)


def human_bytes(size: int) -> str:
    """format.HumanBytes."""
    for limit, unit in ((10**12, "TB"), (10**9, "GB"), (10**6, "MB"), (10**3, "KB")):
        if size >= limit:
            value = size / limit
            if value >= 10 or value == math.trunc(value):
                return f"{int(value)} {unit}"
            return f"{value:.1f} {unit}"
    return f"{size} B"


def human_bytes2(size: int) -> str:
    """format.HumanBytes2."""
    for limit, unit in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if size >= limit:
            return f"{size / limit:.1f} {unit}"
    return f"{size} B"


def human_time(epoch: float) -> str:
    """format.HumanTime."""
    delta = time.time() - epoch
    suffix = " ago" if delta >= 0 else " from now"
    seconds = int(abs(delta))
    if seconds < 1:
        text = "Less than a second"
    elif seconds == 1:
        text = "1 second"
    elif seconds < 60:
        text = f"{seconds} seconds"
    elif seconds < 120:
        text = "About a minute"
    elif seconds < 3600:
        text = f"{seconds // 60} minutes"
    else:
        hours = round(abs(delta) / 3600)
        if hours == 1:
            text = "About an hour"
        elif hours < 48:
            text = f"{hours} hours"
        elif hours < 24 * 14:
            text = f"{hours // 24} days"
        elif hours < 24 * 60:
            text = f"{hours // 24 // 7} weeks"
        elif hours < 24 * 730:
            text = f"{hours // 24 // 30} months"
        else:
            text = f"{int(abs(delta) / 3600) // 24 // 365} years"
    return text + suffix


def go_sprint(value: Any) -> str:
    """fmt %v of a JSON-decoded value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


def go_sharp_v(value: Any) -> str:
    """fmt %#v of a JSON-decoded value (strings Go-quoted)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return go_sprint(value)
