"""The deploy kit: what a control node inside the gap needs besides python3, carried in the bundle.

Layout inside the bundle (every file listed and hashed in bundle.yaml and SHA256SUMS, like every other file)::

    deploy                                        the one command (stdlib-only Python 3, mode 0755)
    kit/kit.json                                  what the entry script reads (no YAML parser in the stdlib)
    kit/ansible.cfg                               the settings the deployment is tested with
    kit/collection/ollama_airgap-deploy-X.tar.gz  `ansible-galaxy collection build` of the repository
    kit/wheels/*.whl                              ansible-core, pytest, pytest-testinfra, ollama-airgap, their
                                                  dependencies and pip, for every kit Python x platform
    kit/tests/infra/...                           the testinfra suite
    kit/inventory.example.yml

bundle.yaml gets a ``deploy_kit`` key: python versions, platforms, the collection file, the wheels, the entry.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bundle import Entry
from .errors import AirgapError, SpecError, VerifyError
from .hashing import sha256_file
from .wheelhouse import check_platform, check_python, download_wheels, machine_platform, machine_python

ENTRY_NAME = "deploy"
KIT_DIR = "kit"
KIT_INFO = f"{KIT_DIR}/kit.json"
KIT_FORMAT = "ollama-airgap/deploy-kit/v1"
COLLECTION = "ollama_airgap.deploy"
PLAYBOOK = f"{COLLECTION}.site"
# The control node's packages; ollama-airgap's own dependencies are added from its metadata.
CONTROL_REQUIREMENTS = ["ansible-core>=2.16,<2.20", "pytest>=8.0", "pytest-testinfra>=10.1", "pip"]
INSTALL = ["ansible-core", "pytest", "pytest-testinfra", "ollama-airgap", "pip"]
REPO_ENV = "OLLAMA_AIRGAP_REPO"
KIT_KEYS = {"python", "platforms"}
ENTRY_SOURCE = Path(__file__).with_name("deploy_entry.py")
TOOL_TIMEOUT = 900
REPRODUCIBLE_EPOCH = 1580601600  # 2020-02-02, as hatchling stamps wheels
# ansible.cfg of the kit: the repository's tested settings, without its paths (the entry script sets those).
KIT_ANSIBLE_CFG = """\
# Settings the deploy kit runs ansible-playbook with (ANSIBLE_CONFIG, unless you set your own).
[defaults]
interpreter_python = auto_silent
stdout_callback = ansible.builtin.default
result_format = yaml
forks = 16
retry_files_enabled = False
gathering = smart

[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o ServerAliveInterval=10 -o ServerAliveCountMax=3
"""


@dataclass(frozen=True)
class KitSpec:
    """The spec's ``deploy_kit``: the control nodes' Pythons and platforms (empty = the building machine's)."""

    pythons: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()

    def resolved(self) -> KitSpec:
        return KitSpec(self.pythons or (machine_python(),), self.platforms or (machine_platform(),))


@dataclass(frozen=True)
class KitOptions:
    """Where the kit's parts come from: the repository (collection, own wheel, tests) and the package index."""

    repo: Path | None = None  # default: $OLLAMA_AIRGAP_REPO, else the checkout this package runs from
    index_url: str | None = None  # default: PyPI
    find_links: tuple[Path, ...] = ()
    pins: tuple[tuple[str, str], ...] = ()  # the lock's wheels (file name, sha256): exactly these are fetched


def parse_kit_spec(value: Any, fail: Callable[[str, str], SpecError]) -> KitSpec | None:
    """``deploy_kit:`` absent or true = defaults, false = no kit, else {python: [...], platforms: [...]}."""
    if value is None or value is True:
        return KitSpec()
    if value is False:
        return None
    if not isinstance(value, dict):
        raise fail("deploy_kit", f"must be a mapping, true or false, got {type(value).__name__}")
    for name in value:
        if name not in KIT_KEYS:
            raise fail(f"deploy_kit.{name}", f"unknown key (allowed: {', '.join(sorted(KIT_KEYS))})")
    found: dict[str, tuple[str, ...]] = {}
    for key, check in (("python", check_python), ("platforms", check_platform)):
        items = value.get(key, [])
        if isinstance(items, str | float):
            items = [items]
        if not isinstance(items, list):
            raise fail(f"deploy_kit.{key}", f"must be a list, got {type(items).__name__}")
        checked: list[str] = []
        for i, item in enumerate(items):
            if isinstance(item, float):
                raise fail(f"deploy_kit.{key}[{i}]", f"quote it in YAML ({item!r} reads as a number)")
            try:
                text = check(str(item))
            except SpecError as exc:
                raise fail(f"deploy_kit.{key}[{i}]", str(exc)) from None
            if text in checked:
                raise fail(f"deploy_kit.{key}[{i}]", f"{text} is listed twice")
            checked.append(text)
        found[key] = tuple(checked)
    return KitSpec(found["python"], found["platforms"])


def kit_requirements() -> list[str]:
    """What the kit's wheelhouse resolves: the control node's tools and ollama-airgap's own dependencies."""
    own = [req for req in importlib.metadata.requires("ollama-airgap") or [] if "extra ==" not in req]
    return [*CONTROL_REQUIREMENTS, *own]


def find_repo(explicit: Path | None = None) -> Path:
    """The repository root holding galaxy.yml: ``explicit``, else $OLLAMA_AIRGAP_REPO, else this checkout."""
    candidates = [explicit] if explicit else []
    if not candidates and os.environ.get(REPO_ENV):
        candidates = [Path(os.environ[REPO_ENV])]
    if not candidates:
        candidates = [Path(__file__).resolve().parents[2]]
    repo = candidates[0].expanduser().resolve()
    for needed in ("galaxy.yml", "pyproject.toml", "tests/infra"):
        if not (repo / needed).exists():
            raise SpecError(
                f"deploy kit: {repo} is not the ollama-airgap repository (no {needed}); "
                f"give --repo or {REPO_ENV}, or build with --no-deploy-kit"
            )
    return repo


def _tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def _run(command: list[str], what: str, cwd: Path | None = None) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "ANSIBLE_"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    try:
        done = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, env=env, timeout=TOOL_TIMEOUT, check=False
        )
    except FileNotFoundError:
        raise AirgapError(f"deploy kit: {what}: {command[0]} not found") from None
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if "ERROR" in line] or lines or ["failed"]
        raise AirgapError(f"deploy kit: {what}: {errors[-1]}")


def build_collection(repo: Path, out: Path) -> Path:
    """``ansible-galaxy collection build`` of the repository root (galaxy.yml) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    _run([_tool("ansible-galaxy"), "collection", "build", "--force", "--output-path", str(out), str(repo)],
         "ansible-galaxy collection build")  # fmt: skip
    built = sorted(out.glob("ollama_airgap-deploy-*.tar.gz"))
    if len(built) != 1:
        raise AirgapError(f"deploy kit: ansible-galaxy collection build gave {len(built)} tarballs in {out}")
    return normalize_tarball(built[0])


def normalize_tarball(path: Path) -> Path:
    """Rewrite a .tar.gz with fixed times and owners (ansible-galaxy stamps the build time into the tar and gzip
    headers), so the same collection gives the same bytes and a --lock rebuild the same bundle."""
    fixed = int(os.environ.get("SOURCE_DATE_EPOCH", REPRODUCIBLE_EPOCH))
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            handle = tar.extractfile(member) if member.isfile() else None
            members.append((member, handle.read() if handle else None))
    partial = path.with_name(path.name + ".partial")
    with (
        open(partial, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=fixed) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as out,
    ):
        for member, data in members:
            member.mtime, member.uid, member.gid, member.uname, member.gname = fixed, 0, 0, "", ""
            out.addfile(member, io.BytesIO(data) if data is not None else None)
    os.replace(partial, path)
    return path


def build_own_wheel(repo: Path, out: Path, options: KitOptions) -> Path:
    """ollama-airgap's wheel, built from the repository (``pip wheel --no-deps``)."""
    sources = ["--index-url", options.index_url] if options.index_url else []
    sources += [arg for link in options.find_links for arg in ("--find-links", str(link))]
    if options.find_links and not options.index_url:
        sources.append("--no-index")
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), *sources,
          str(repo)], "pip wheel ollama-airgap")  # fmt: skip
    built = sorted(out.glob("ollama_airgap-*.whl"))
    if len(built) != 1:
        raise AirgapError(f"deploy kit: pip wheel gave {len(built)} ollama-airgap wheels in {out}")
    return built[0]


def check_pins(wheels: list[Path], pins: dict[str, str]) -> None:
    """With --lock, the wheelhouse must be exactly the locked wheels, byte for byte."""
    got = {w.name: w for w in wheels}
    for name, digest in sorted(pins.items()):
        if name not in got:
            raise VerifyError(f"deploy kit: locked wheel {name} was not fetched (the index no longer offers it?)")
        if sha256_file(got[name]) != digest:
            raise VerifyError(f"deploy kit: {name} differs from the lock's sha256 {digest}")
    extra = sorted(set(got) - set(pins))
    if extra:
        raise VerifyError(f"deploy kit: {extra[0]} is not in the lock; build without --lock to re-resolve")


def wheel_pins(entries: list[Entry]) -> dict[str, str]:
    """The downloaded wheels of a kit (not ollama-airgap's own, built from the repository), for the lock."""
    prefix = f"{KIT_DIR}/wheels/"
    return {
        e.path.removeprefix(prefix): e.sha256
        for e in entries
        if e.path.startswith(prefix) and not e.path.startswith(prefix + "ollama_airgap-")
    }


def _file_entry(path: str, source: Path, mode: int = 0o644) -> Entry:
    return Entry(path, source.stat().st_size, sha256_file(source), source, mode=mode)


def build_kit(spec: KitSpec, work: Path, options: KitOptions) -> tuple[list[Entry], dict[str, Any]]:
    """Assemble the kit under ``work`` (kept until the archive is packed); return its entries and its
    bundle.yaml record."""
    kit = spec.resolved()
    repo = find_repo(options.repo)
    collection = build_collection(repo, work / "collection")
    own = build_own_wheel(repo, work / "own", options)
    pins = dict(options.pins)
    requirements = sorted({"{}=={}".format(*name.split("-")[:2]) for name in pins}) or kit_requirements()
    wheels = download_wheels(
        requirements, work / "wheels", list(kit.pythons), list(kit.platforms),
        options.index_url, list(options.find_links) or None,
    )  # fmt: skip
    wheels = [w for w in wheels if not w.name.startswith("ollama_airgap-")]
    if pins:
        check_pins(wheels, pins)
    wheels.append(own)
    pip_wheels = [w.name for w in wheels if re.match(r"^pip-[^-]+-py3-none-any\.whl$", w.name)]
    if not pip_wheels:
        raise AirgapError("deploy kit: the wheelhouse has no pip-*-py3-none-any.whl to bootstrap the venv")
    entries = [_file_entry(f"{KIT_DIR}/collection/{collection.name}", collection)]
    entries += [_file_entry(f"{KIT_DIR}/wheels/{w.name}", w) for w in sorted(wheels, key=lambda w: w.name)]
    infra = repo / "tests" / "infra"
    for source in sorted(infra.rglob("*")):
        if source.is_file() and "__pycache__" not in source.parts and source.suffix != ".pyc":
            entries.append(_file_entry(f"{KIT_DIR}/tests/infra/{source.relative_to(infra).as_posix()}", source))
    example = repo / "inventories" / "example" / "hosts.yml"
    if example.is_file():
        entries.append(_file_entry(f"{KIT_DIR}/inventory.example.yml", example))
    entries.append(Entry.from_bytes(f"{KIT_DIR}/ansible.cfg", KIT_ANSIBLE_CFG.encode()))
    info = {
        "format": KIT_FORMAT,
        "python": list(kit.pythons),
        "platforms": list(kit.platforms),
        "collection": f"{KIT_DIR}/collection/{collection.name}",
        "collection_name": COLLECTION,
        "playbook": PLAYBOOK,
        "pip_wheel": f"{KIT_DIR}/wheels/{pip_wheels[-1]}",
        "install": INSTALL,
        "tests": f"{KIT_DIR}/tests/infra",
        "ansible_cfg": f"{KIT_DIR}/ansible.cfg",
        "wheels": sorted(w.name for w in wheels),
    }
    entries.append(Entry.from_bytes(KIT_INFO, (json.dumps(info, indent=2) + "\n").encode()))
    entries.append(_file_entry(ENTRY_NAME, _entry_script(work), mode=0o755))
    meta = {
        "entry": ENTRY_NAME,
        "info": KIT_INFO,
        "python": list(kit.pythons),
        "platforms": list(kit.platforms),
        "collection": info["collection"],
        "collection_name": COLLECTION,
        "playbook": PLAYBOOK,
        "wheels": len(wheels),
        "size": sum(e.size for e in entries),
    }
    return entries, meta


def _entry_script(work: Path) -> Path:
    target = work / ENTRY_NAME
    shutil.copyfile(ENTRY_SOURCE, target)
    return target


@dataclass
class BuiltKit:
    entries: list[Entry]
    meta: dict[str, Any]
    work: Path

    def cleanup(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


def assemble(spec: KitSpec | None, options: KitOptions | None, cache_root: Path) -> BuiltKit | None:
    """The kit for a build, in a work folder under the cache (removed by ``cleanup`` once packed); None when the
    spec (``deploy_kit: false``) or the command line (``--no-deploy-kit``) leaves it out."""
    if spec is None or options is None:
        return None
    (cache_root / "deploy-kit").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="build-", dir=cache_root / "deploy-kit"))
    try:
        entries, meta = build_kit(spec, work, options)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return BuiltKit(entries, meta, work)
