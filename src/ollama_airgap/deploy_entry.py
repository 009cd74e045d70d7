#!/usr/bin/env python3
"""The one command inside the air gap, at the root of every bundle with a deploy kit::

    mkdir llama3 && tar -xf llama3.tar -C llama3 && llama3/deploy -i hosts.yml [ansible-playbook args]

Python 3 standard library only: a control node needs nothing but python3 (no pip, no venv package, no network).
In order, each step refusing in one line: the inventory exists; this Python is one the kit covers; every file of the
bundle matches SHA256SUMS, whose sha256 bundle.yaml records (and bundle.yaml.sig with --key, by openssl), before
anything from the kit runs; a venv from the kit's wheels (`pip install --no-index`, pip run from its own wheel, so
`python3 -m venv --without-pip` suffices), reused while the kit is unchanged; the collection installed offline
into the state directory; `ansible-playbook ollama_airgap.deploy.site -e bundle_src=<this bundle>`; the testinfra
suite against the same inventory; a summary (`--json` for a machine).

Exit codes: 0 deployed and tested, 1 the playbook or the tests failed, 2 bad input (inventory, Python, platform,
arguments), 3 the bundle failed verification.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, NoReturn

BUNDLE = Path(__file__).resolve().parent
KIT_INFO = "kit/kit.json"
TOP_FILES = ("bundle.yaml", "SHA256SUMS", "bundle.yaml.sig")
PRETEND_PYTHON = "OLLAMA_AIRGAP_DEPLOY_PYTHON"  # tests: the Python version this script takes itself for
STATE_ENV = "OLLAMA_AIRGAP_DEPLOY_STATE"
RECAP_RE = re.compile(r"^(\S+)\s*:\s*((?:\w+=\d+\s*)+)$")
MANYLINUX_RE = re.compile(r"^manylinux_(\d+)_(\d+)_(\w+)$")
LEGACY = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


class Refused(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def refuse(message: str, code: int = 2) -> NoReturn:
    raise Refused(message, code)


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        refuse(f"{message} (see --help)")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = OneLineParser(
        prog=f"{BUNDLE.name}/deploy",
        description="Deploy this bundle to the hosts of an inventory, then prove them with the testinfra suite.",
        epilog="Other arguments go to ansible-playbook (e.g. --limit node1, -e @vars.yml, --check --diff).",
        allow_abbrev=False,
    )
    parser.add_argument("-i", "--inventory", action="append", default=[], help="Ansible inventory (required)")
    parser.add_argument("--state-dir", type=Path, help=f"venv and collection (default: ${STATE_ENV} or ~/.local/state)")
    parser.add_argument("--key", type=Path, help="Ed25519 public key: check bundle.yaml.sig (with openssl) first")
    parser.add_argument("--skip-tests", action="store_true", help="do not run the testinfra suite")
    parser.add_argument("--json", action="store_true", help="summary as JSON on stdout (progress on stderr)")
    return parser.parse_known_args(argv)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):  # no walrus: Python 3.7 must reach the refusal
            digest.update(chunk)
    return digest.hexdigest()


def load_kit() -> tuple[dict[str, Any], bytes]:
    try:
        raw = (BUNDLE / KIT_INFO).read_bytes()
        kit = json.loads(raw)
    except (OSError, ValueError):
        refuse(f"{BUNDLE / KIT_INFO} is missing or unreadable: this bundle has no intact deploy kit", 3)
    if not isinstance(kit, dict) or not isinstance(kit.get("python"), list):
        refuse(f"{BUNDLE / KIT_INFO} is not a deploy kit description", 3)
    return kit, raw


def check_python(kit: dict[str, Any]) -> str:
    running = os.environ.get(PRETEND_PYTHON) or f"{sys.version_info.major}.{sys.version_info.minor}"
    covered = [str(v) for v in kit["python"]]
    if running not in covered:
        refuse(
            f"unsupported Python {running} ({sys.executable}): this bundle's deploy kit has wheels for Python "
            f"{', '.join(covered)}; run it with one of those (e.g. python{covered[0]} {BUNDLE}/deploy ...)"
        )
    return running


def check_platform(kit: dict[str, Any]) -> None:
    libc, version = platform.libc_ver()
    arch = platform.machine()
    usable = []
    for name in kit.get("platforms", []):
        match = MANYLINUX_RE.match(name)
        prefix, _, suffix = name.partition("_")
        needed, tag_arch = ((int(match[1]), int(match[2])), match[3]) if match else (LEGACY.get(prefix), suffix)
        if tag_arch == arch and needed is not None:
            usable.append((needed, name))
    if not usable:
        refuse(f"unsupported platform {arch}: this bundle's deploy kit covers {', '.join(kit.get('platforms', []))}")
    if libc == "glibc" and version:
        have = tuple(int(p) for p in version.split(".")[:2])
        if all(have < needed for needed, _ in usable):
            refuse(f"glibc {version} is older than the deploy kit needs ({', '.join(n for _, n in usable)})")


def verify_bundle(key: Path | None) -> tuple[int, int]:
    """Every file against SHA256SUMS, SHA256SUMS against bundle.yaml, nothing unlisted, no links."""
    manifest = BUNDLE / "bundle.yaml"
    try:
        text = manifest.read_bytes()
        sums = (BUNDLE / "SHA256SUMS").read_bytes()
    except OSError as exc:
        refuse(f"{exc.filename}: cannot read it: {exc.strerror}", 3)
    if key is not None:
        check_signature(manifest, key)
    recorded = re.findall(rb"^sha256sums_sha256: '?([0-9a-f]{64})'?\s*$", text, re.MULTILINE)
    if len(recorded) != 1:
        refuse(f"{manifest}: no sha256sums_sha256: not an ollama-airgap bundle", 3)
    if hashlib.sha256(sums).hexdigest() != recorded[0].decode():
        refuse(f"{BUNDLE / 'SHA256SUMS'} does not match the sha256 recorded in bundle.yaml", 3)
    listed: dict[str, str] = {}
    for line in sums.decode("utf-8", "replace").splitlines():
        digest, sep, name = line.partition("  ")
        if not sep or not re.fullmatch(r"[0-9a-f]{64}", digest) or name.startswith("/") or ".." in name.split("/"):
            refuse(f"{BUNDLE / 'SHA256SUMS'}: malformed line {line[:80]!r}", 3)
        listed[name] = digest
    for dirpath, dirnames, filenames in os.walk(BUNDLE):
        for name in sorted(dirnames + filenames):
            full = Path(dirpath, name)
            rel = full.relative_to(BUNDLE).as_posix()
            if full.is_symlink():
                refuse(f"{rel} in {BUNDLE} is a link, refused", 3)
            if full.is_file() and rel not in listed and rel not in TOP_FILES:
                refuse(f"{rel} in {BUNDLE} is not listed in SHA256SUMS (a planted file?)", 3)
    for name in listed:
        if not (BUNDLE / name).is_file():
            refuse(f"{name} is missing from {BUNDLE}", 3)

    def check(item: tuple[str, str]) -> str | None:
        got = sha256_file(BUNDLE / item[0])
        return None if got == item[1] else f"{item[0]} is altered (sha256 {got}, expected {item[1]})"

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for problem in pool.map(check, sorted(listed.items())):
            if problem:
                refuse(f"{BUNDLE}: {problem}", 3)
    return len(listed), sum((BUNDLE / name).stat().st_size for name in listed)


def check_signature(manifest: Path, key: Path) -> None:
    signature = BUNDLE / "bundle.yaml.sig"
    if not signature.is_file():
        refuse(f"{signature} is missing: the bundle is not signed", 3)
    openssl = shutil.which("openssl")
    if openssl is None:
        refuse("--key needs openssl on this machine to check bundle.yaml.sig")
    argv = [openssl, "pkeyutl", "-verify", "-pubin", "-inkey", str(key), "-rawin", "-in", str(manifest)]
    done = subprocess.run([*argv, "-sigfile", str(signature)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        refuse(f"{signature} does not verify with {key}: bundle.yaml is not the signed one", 3)


def run_quiet(argv: list[str], what: str, env: dict[str, str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if "ERROR" in line] or lines or ["failed"]
        refuse(f"{what} failed: {errors[-1]}", 1)


def tool_env(state: Path, venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONDONTWRITEBYTECODE="1")
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env["ANSIBLE_COLLECTIONS_PATH"] = str(state / "collections")
    env.setdefault("ANSIBLE_CONFIG", str(BUNDLE / "kit" / "ansible.cfg"))
    env.setdefault("ANSIBLE_LOCAL_TEMP", str(state / "ansible-tmp"))
    return env


def ensure_venv(kit: dict[str, Any], kit_raw: bytes, state: Path, python: str) -> tuple[Path, bool]:
    """A venv with the kit's packages, made once per kit and Python (a marker file holds both)."""
    stamp = f"{hashlib.sha256(kit_raw).hexdigest()} {sys.executable} {python}\n"
    venv = state / f"venv-py{python}"
    marker = venv / "ollama-airgap-kit.stamp"
    if marker.is_file() and marker.read_text() == stamp and (venv / "bin" / "ansible-playbook").exists():
        return venv, True
    if venv.exists():
        shutil.rmtree(venv)
    env = tool_env(state, venv)
    run_quiet([sys.executable, "-m", "venv", "--without-pip", str(venv)], f"python{python} -m venv", env)
    pip = [str(venv / "bin" / "python"), str(BUNDLE / kit["pip_wheel"] / "pip"), "install", "--no-index"]
    pip += ["--find-links", str(BUNDLE / "kit" / "wheels"), "--only-binary=:all:", "--no-cache-dir", "--quiet"]
    run_quiet([*pip, *kit["install"]], "pip install --no-index from kit/wheels", env)
    marker.write_text(stamp)
    return venv, False


def ensure_collection(kit: dict[str, Any], state: Path, venv: Path) -> bool:
    """Install the kit's collection tarball offline into the state directory; True when it was already there."""
    tarball = BUNDLE / kit["collection"]
    marker = state / "collections" / "ollama-airgap-kit.sha256"
    digest = sha256_file(tarball)
    namespace, name = str(kit["collection_name"]).split(".")
    installed = state / "collections" / "ansible_collections" / namespace / name
    if marker.is_file() and marker.read_text().strip() == digest and installed.is_dir():
        return True
    argv = [str(venv / "bin" / "ansible-galaxy"), "collection", "install", "--offline", "--force"]
    argv += ["-p", str(state / "collections"), str(tarball)]
    run_quiet(argv, f"ansible-galaxy collection install {tarball.name}", tool_env(state, venv))
    marker.write_text(digest + "\n")
    return False


def stream(argv: list[str], env: dict[str, str], out: IO[str]) -> tuple[int, str]:
    """Run a command, echoing its output to ``out`` as it comes, and return its exit status and output."""
    kept: list[str] = []
    with subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            out.write(line)
            out.flush()
            kept.append(line)
    return process.returncode, "".join(kept)


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    recap: dict[str, dict[str, int]] = {}
    for line in output.rpartition("PLAY RECAP")[2].splitlines():
        match = RECAP_RE.match(line.strip())
        if match:
            recap[match[1]] = {k: int(v) for k, v in (item.split("=") for item in match[2].split())}
    return recap


def option_values(rest: list[str], short: str, long: str) -> list[str]:
    """Values of an ansible-playbook option among the pass-through arguments (``-l X``, ``--limit=X``)."""
    values = []
    for i, arg in enumerate(rest):
        if arg in (short, long) and i + 1 < len(rest):
            values.append(rest[i + 1])
        elif arg.startswith(long + "="):
            values.append(arg.split("=", 1)[1])
        elif arg.startswith(short) and len(arg) > len(short) and not arg.startswith("--"):
            values.append(arg[len(short) :])
    return values


def run_tests(kit: dict[str, Any], state: Path, venv: Path, inventories: list[str], rest: list[str],
              out: IO[str]) -> dict[str, int]:  # fmt: skip
    """The kit's testinfra suite (copied out of the bundle: pytest writes beside it) on the deployed hosts."""
    suite = state / "tests" / "infra"
    if suite.exists():
        shutil.rmtree(suite)
    shutil.copytree(BUNDLE / kit["tests"], suite)
    report = state / "testinfra.xml"
    report.unlink(missing_ok=True)
    limits = [part for value in option_values(rest, "-l", "--limit") for part in value.split(",") if part]
    targets = ",".join(f"ansible://{t}" for t in limits) or "ansible://ollama_hosts"
    argv = [str(venv / "bin" / "python"), "-m", "pytest", str(suite), "-q", "-p", "no:cacheprovider", "-o",
            f"cache_dir={state / 'pytest-cache'}", f"--junitxml={report}", f"--hosts={targets}",
            *(f"--ansible-inventory={inv}" for inv in inventories[:1])]  # fmt: skip
    for value in option_values(rest, "-e", "--extra-vars"):
        if value.startswith("@"):
            argv.append(f"--ansible-extra-vars={value[1:]}")
    env = tool_env(state, venv)
    env["OLLAMA_AIRGAP_ROLES"] = str(
        state / "collections" / "ansible_collections" / Path(*str(kit["collection_name"]).split(".")) / "roles"
    )
    code, _ = stream(argv, env, out)
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "exit": code}
    if report.is_file():
        for suite_node in ElementTree.parse(report).getroot().iter("testsuite"):
            tests, failures = int(suite_node.get("tests", 0)), int(suite_node.get("failures", 0))
            errors, skipped = int(suite_node.get("errors", 0)), int(suite_node.get("skipped", 0))
            counts["failed"] += failures
            counts["errors"] += errors
            counts["skipped"] += skipped
            counts["passed"] += tests - failures - errors - skipped
    return counts


def default_state() -> Path:
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV])
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "ollama-airgap" / "deploy"


def deploy(args: argparse.Namespace, rest: list[str]) -> dict[str, Any]:
    started = time.monotonic()
    out = sys.stderr if args.json else sys.stdout
    if not args.inventory:
        refuse("no inventory: give -i INVENTORY (e.g. -i hosts.yml; kit/inventory.example.yml shows the shape)")
    for inventory in args.inventory:
        if "," not in inventory and not Path(inventory).exists():
            refuse(f"inventory {inventory} not found")
    kit, kit_raw = load_kit()
    python = check_python(kit)
    check_platform(kit)
    phases: dict[str, float] = {}
    mark = time.monotonic()

    def phase(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        phases[name] = round(now - mark, 1)
        mark = now

    files, size = verify_bundle(args.key)
    phase("verify")
    print(f"deploy: {BUNDLE}: {files} files ({size / 1e6:.1f} MB) match SHA256SUMS and bundle.yaml", file=out)
    state = (args.state_dir or default_state()).expanduser().resolve()
    state.mkdir(parents=True, exist_ok=True)
    venv, venv_reused = ensure_venv(kit, kit_raw, state, python)
    phase("venv")
    collection_reused = ensure_collection(kit, state, venv)
    phase("collection")
    print(f"deploy: venv {venv} ({'reused' if venv_reused else 'built from kit/wheels'}), collection "
          f"{kit['collection_name']} ({'reused' if collection_reused else 'installed'})", file=out)  # fmt: skip
    extra = ["-e", json.dumps({"bundle_src": str(BUNDLE)})]
    if args.key:
        extra += ["-e", json.dumps({"bundle_signing_public_key": str(args.key.resolve())})]
    argv = [str(venv / "bin" / "ansible-playbook"), *(f"--inventory={inv}" for inv in args.inventory), *extra, *rest]
    code, output = stream([*argv, str(kit["playbook"])], tool_env(state, venv), out)
    recap = parse_recap(output)
    phase("playbook")
    summary: dict[str, Any] = {
        "bundle": str(BUNDLE),
        "verified_files": files,
        "verified_bytes": size,
        "python": python,
        "venv": {"path": str(venv), "reused": venv_reused},
        "collection": {"name": kit["collection_name"], "reused": collection_reused},
        "playbook": {"exit": code, "hosts": recap},
        "hosts": sorted(recap),
        "changed": sum(counts.get("changed", 0) for counts in recap.values()),
        "failed": sum(counts.get("failed", 0) + counts.get("unreachable", 0) for counts in recap.values()),
        "tests": None,
    }
    if code == 0 and not args.skip_tests:
        summary["tests"] = run_tests(kit, state, venv, args.inventory, rest, out)
        phase("tests")
    tests = summary["tests"]
    summary["ok"] = code == 0 and (tests is None or (tests["exit"] == 0 and not tests["failed"] + tests["errors"]))
    summary["seconds"] = round(time.monotonic() - started, 1)
    summary["phases"] = phases  # seconds per step
    return summary


def human(summary: dict[str, Any]) -> str:
    lines = [f"deploy: {'done' if summary['ok'] else 'FAILED'} in {summary['seconds']} s: {summary['bundle']}"]
    lines.append("  steps: " + ", ".join(f"{name} {seconds} s" for name, seconds in summary["phases"].items()))
    for host, counts in sorted(summary["playbook"]["hosts"].items()):
        lines.append(f"  {host}: " + " ".join(f"{k}={v}" for k, v in counts.items()))
    lines.append(f"  hosts: {len(summary['hosts'])}, changed: {summary['changed']}, failed: {summary['failed']}")
    tests = summary["tests"]
    if tests is None:
        lines.append("  testinfra: not run" + (" (the playbook failed)" if summary["playbook"]["exit"] else ""))
    else:
        lines.append(f"  testinfra: {tests['passed']} passed, {tests['failed']} failed, {tests['errors']} errors, "
                     f"{tests['skipped']} skipped")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    json_out = "--json" in (argv if argv is not None else sys.argv[1:])
    try:
        args, rest = parse_args(sys.argv[1:] if argv is None else argv)
        summary = deploy(args, rest)
    except Refused as exc:
        message = " ".join(str(exc).split())
        if json_out:
            print(json.dumps({"ok": False, "error": message, "exit": exc.code}))
        print(f"deploy: {message}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("deploy: interrupted", file=sys.stderr)
        return 130
    print(json.dumps(summary, indent=2) if args.json else human(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
