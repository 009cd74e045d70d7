"""The ollama version this stand-in answers as (baked into the zipapp as `_version.py`) and version comparisons."""

from __future__ import annotations

import re

try:
    from ._version import VERSION  # written into the zipapp by testbed.standin_server.zipapp_bytes
except ImportError:  # running from the source tree
    VERSION = "0.0.0"


def version_key(version: str) -> tuple[int, ...]:
    """Numeric parts of a version ("0.14.1-rc2" -> (0, 14, 1)); used to follow each ollama version's behaviour."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("-", 1)[0].split("+", 1)[0])[:3])


def at_least(version: str, current: str = "") -> bool:
    """True when the stand-in's version (or `current`) is `version` or newer. Version 0.0.0 means newest."""
    mine = version_key(current or VERSION)
    return mine == (0, 0, 0) or mine >= version_key(version)
