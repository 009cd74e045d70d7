"""What the pinned ollama version is: its registry User-Agent, version comparison for a model's ``requires``, and
which Modelfile commands its parser knows.

- User-Agent: ``ollama/<version> (<arch> <os>) Go/<runtime.Version()>``, set by ``makeRequest`` in
  server/images.go on every registry request. Linux releases are built with the Go named by the ``go`` line of the
  tag's go.mod (the Dockerfile downloads ``go$(awk '/^go/ {print $2}' go.mod)``), so ``runtime.Version()`` is
  ``go<that version>``; :data:`GO_VERSIONS` is that line read from every release tag's go.mod.
- ``requires`` (types/model/config.go ``ConfigV2.Requires``): a semver such as ``0.14.0``; compared as
  golang.org/x/mod/semver compares (a pre-release sorts before its release).
"""

from __future__ import annotations

import re

from .errors import UnsupportedModelError

# (first ollama release, the go directive of its go.mod) — read from the tags' go.mod; newer releases than the last
# row are assumed to keep its Go until the table is extended.
GO_VERSIONS: tuple[tuple[str, str], ...] = (
    ("0.0.1", "1.20"),
    ("0.1.21", "1.21"),
    ("0.1.29", "1.22"),
    ("0.1.36", "1.22.0"),
    ("0.3.6", "1.22.5"),
    ("0.4.0", "1.22.8"),
    ("0.5.2", "1.23.4"),
    ("0.5.13", "1.24.0"),
    ("0.12.10", "1.24.1"),
    ("0.23.1", "1.26.0"),
)

# Modelfile commands and the first release whose parser (parser/parser.go) accepts them.
COMMAND_SINCE: dict[str, str] = {"RENDERER": "0.12.0", "PARSER": "0.12.0", "REQUIRES": "0.14.0", "DRAFT": "0.23.1"}

_SEMVER_RE = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


def parse_version(text: str) -> tuple[tuple[int, int, int], tuple[tuple[int, int | str], ...] | None] | None:
    """``0.14.1`` / ``v0.30.0-rc2`` → a sortable key, or None when it is not a version."""
    match = _SEMVER_RE.match(text.strip())
    if not match:
        return None
    core = (int(match.group(1)), int(match.group(2) or 0), int(match.group(3) or 0))
    pre = match.group(4)
    if pre is None:
        return core, None
    parts: list[tuple[int, int | str]] = [(0, int(p)) if p.isdigit() else (1, p) for p in pre.split(".")]
    return core, tuple(parts)


def version_lt(a: str, b: str) -> bool:
    """True when version ``a`` sorts before ``b`` (semver: ``0.30.0-rc1`` < ``0.30.0``)."""
    ka, kb = parse_version(a), parse_version(b)
    if ka is None or kb is None:
        raise ValueError(f"not a version: {a if ka is None else b!r}")
    if ka[0] != kb[0]:
        return ka[0] < kb[0]
    if ka[1] is None or kb[1] is None:
        return ka[1] is not None and kb[1] is None
    return ka[1] < kb[1]


def go_version(ollama_version: str) -> str:
    """The Go release the given ollama release was built with."""
    chosen = GO_VERSIONS[0][1]
    for first, go in GO_VERSIONS:
        if not version_lt(ollama_version, first):
            chosen = go
    return chosen


def user_agent(ollama_version: str, arch: str = "amd64", os_name: str = "linux") -> str:
    """The User-Agent the pinned ollama sends to a registry."""
    return f"ollama/{ollama_version} ({arch} {os_name}) Go/go{go_version(ollama_version)}"


def supports_command(ollama_version: str, command: str) -> bool:
    since = COMMAND_SINCE.get(command.upper())
    return since is None or not version_lt(ollama_version, since)


def is_cloud_tag(tag: str) -> bool:
    """``:cloud`` and ``:<size>-cloud`` tags name ollama.com cloud models (internal/modelref/modelref.go)."""
    return tag == "cloud" or tag.endswith("-cloud")


def check_config(what: str, config: dict[str, object], pinned: str) -> None:
    """Refuse a cloud model (config ``remote_host``/``remote_model``) and one whose ``requires`` is newer than the
    pinned ollama, each with one line naming the model."""
    remote = config.get("remote_host") or config.get("remote_model")
    if remote:
        raise UnsupportedModelError(
            f"{what}: a cloud model (config remote {str(remote)[:80]!r}) runs on ollama.com, not on an air-gapped "
            "host; it cannot be bundled"
        )
    requires = config.get("requires")
    if requires in (None, ""):
        return
    if not isinstance(requires, str) or parse_version(requires) is None:
        raise UnsupportedModelError(f"{what}: config requires {str(requires)[:40]!r}, which is not a version")
    if version_lt(pinned, requires):
        raise UnsupportedModelError(
            f"{what}: requires ollama {requires.removeprefix('v')}, the bundle pins ollama {pinned}; "
            "raise ollama.version in the spec or drop the model"
        )
