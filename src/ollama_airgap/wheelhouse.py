"""A wheelhouse for another machine: `pip download --only-binary=:all:` once per (Python, platform) pair.

pip checks every file it takes from an index against the index's ``#sha256=`` fragment (PEP 503), so what lands in
the wheelhouse is what the index published. The machine's own pip configuration (``/etc/pip.conf``, ``PIP_*``
variables: extra indexes, find-links, constraints) is left out, so the result depends only on the arguments.

    download_wheels(["ansible-core>=2.16", "pytest-testinfra"], Path("kit/wheels"), ["3.11"],
                    ["manylinux_2_17_x86_64"], index_url="http://127.0.0.1:8080/simple/")
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import FetchError, SpecError

PYTHON_RE = re.compile(r"^3\.(\d{1,2})$")
# manylinux_<glibc major>_<glibc minor>_<arch> (PEP 600), and the legacy aliases manylinux1/2010/2014 (PEP 513/571/599)
MANYLINUX_RE = re.compile(r"^manylinux_(2)_(\d+)_(x86_64|aarch64|i686|ppc64le|s390x|armv7l)$")
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
LEGACY_RE = re.compile(r"^(manylinux1|manylinux2010|manylinux2014)_(x86_64|aarch64|i686|ppc64le|s390x|armv7l)$")
OLDEST_PYTHON_MINOR = 10  # ansible-core 2.16, the oldest the collection supports, needs Python 3.10
PIP_TIMEOUT = 1800


def check_python(version: str) -> str:
    """``3.X`` as the kit understands it; anything else is a SpecError naming the value."""
    match = PYTHON_RE.match(version)
    if not match or int(match.group(1)) < OLDEST_PYTHON_MINOR:
        raise SpecError(f"python version {version!r} is not supported: expected 3.X with X >= {OLDEST_PYTHON_MINOR}")
    return version


def check_platform(name: str) -> str:
    """A Linux wheel platform: ``manylinux_2_17_x86_64`` or ``manylinux2014_x86_64`` (and 1/2010)."""
    if not (MANYLINUX_RE.match(name) or LEGACY_RE.match(name)):
        raise SpecError(
            f"platform {name!r} is not supported: expected manylinux_<glibc major>_<minor>_<arch> "
            "(e.g. manylinux_2_17_x86_64) or manylinux2014_<arch>"
        )
    return name


def platform_tags(name: str) -> list[str]:
    """Every wheel platform tag a machine of ``name`` runs, newest glibc first.

    pip expands only the legacy aliases itself, so a ``manylinux_2_28`` machine would otherwise miss the many wheels
    tagged ``manylinux_2_17``/``manylinux2014`` that it runs (as packaging's ``_manylinux.platform_tags`` lists).
    """
    check_platform(name)
    legacy = LEGACY_RE.match(name)
    if legacy:
        (major, minor), arch = LEGACY_MANYLINUX[legacy.group(1)], legacy.group(2)
    else:
        match = MANYLINUX_RE.match(name)
        assert match is not None
        major, minor, arch = int(match.group(1)), int(match.group(2)), match.group(3)
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 4, -1)]
    for alias, glibc in LEGACY_MANYLINUX.items():
        if glibc <= (major, minor) and (alias == "manylinux2014" or arch in ("x86_64", "i686")):
            tags.append(f"{alias}_{arch}")
    return list(dict.fromkeys(tags))


def machine_python() -> str:
    """This interpreter's ``3.X``: the default Python of a kit."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def machine_platform() -> str:
    """This machine's ``manylinux_<glibc>_<arch>``: the default platform of a kit."""
    libc, version = platform.libc_ver()
    if libc != "glibc" or not version:
        raise SpecError("this machine is not a glibc Linux: name the platforms in the spec (deploy_kit.platforms)")
    major, minor = version.split(".")[:2]
    return f"manylinux_{major}_{minor}_{platform.machine()}"


def _pip_env() -> dict[str, str]:
    """The environment without the machine's pip configuration (PIP_CONFIG_FILE=/dev/null skips every file)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _pip_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors[-1] if errors else lines[-1] if lines else "pip failed").removeprefix("ERROR: ")


def download_wheels(
    requirements: list[str],
    dest: Path,
    pythons: list[str],
    platforms: list[str],
    index_url: str | None = None,
    find_links: list[Path] | None = None,
) -> list[Path]:
    """Download binary wheels of ``requirements`` (and their dependencies) for every Python x platform into ``dest``.

    One ``pip download`` per pair, each into a fresh directory, then merged into ``dest`` by file name (a wheel file
    name says what it is: pure wheels needed by every pair appear once). ``index_url`` replaces PyPI;
    ``find_links`` alone means no index at all (a directory of wheels). Returns the sorted paths in ``dest`` of every
    wheel some pair needs. A requirement with no wheel for a pair is a FetchError naming it and the pair.
    """
    for version in pythons:
        check_python(version)
    for name in platforms:
        check_platform(name)
    if not requirements or not pythons or not platforms:
        raise SpecError("download_wheels needs at least one requirement, one python and one platform")
    dest.mkdir(parents=True, exist_ok=True)
    sources: list[str] = []
    if index_url is not None:
        sources += ["--index-url", index_url]
    elif find_links:
        sources.append("--no-index")
    for link in find_links or []:
        sources += ["--find-links", str(link)]
    wanted: dict[str, Path] = {}
    for version in pythons:
        for name in platforms:
            with tempfile.TemporaryDirectory(prefix=".pip-", dir=dest) as tmp:
                command = [
                    sys.executable, "-m", "pip", "download", "--quiet", "--progress-bar", "off",
                    "--only-binary=:all:", "--implementation", "cp", "--python-version", version,
                    *(arg for tag in platform_tags(name) for arg in ("--platform", tag)),
                    "--dest", tmp, *sources, *requirements,
                ]  # fmt: skip
                done = subprocess.run(
                    command, capture_output=True, text=True, env=_pip_env(), timeout=PIP_TIMEOUT, check=False
                )
                if done.returncode != 0:
                    raise FetchError(f"wheels for python {version} {name}: {_pip_error(done.stderr)}")
                for wheel in Path(tmp).iterdir():
                    if wheel.suffix != ".whl":
                        raise FetchError(f"wheels for python {version} {name}: pip gave {wheel.name}, not a wheel")
                    target = dest / wheel.name
                    if wheel.name not in wanted:
                        shutil.move(wheel, target)
                        wanted[wheel.name] = target
    return sorted(wanted.values())
