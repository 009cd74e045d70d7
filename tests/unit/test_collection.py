"""The repository is the Ansible collection ollama_airgap.deploy (galaxy.yml, meta/runtime.yml at its root): built
with ansible-galaxy, installed offline into an empty collections path, and used from there with nothing of the
checkout in sight (no ansible.cfg, no roles_path, no library)."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
# Every module of plugins/modules (airgap_bundle, airgap_gpu_facts, airgap_model_restore, airgap_ollama_release, ...).
MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py") if not p.stem.startswith("_"))
ROLES = ["bundle", "ollama", "ollama_models", "open_webui", "smoke_test"]
# What is not collection content must stay out of the tarball (galaxy.yml's build_ignore).
JUNK = (".venv/", ".ansible/", ".git/", "src/", "tests/", "scripts/", "benchmarks/", "bundles/", "__pycache__")


def _tool(name: str) -> str:
    path = VENV_BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed in .venv")
    return str(path)


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"{' '.join(argv)} -> rc {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """(tarball, collections path, environment): built from the checkout, installed with --offline."""
    tmp = tmp_path_factory.mktemp("collection")
    home = tmp / "home"
    home.mkdir()
    # No ansible.cfg of the checkout, no user or system collections: only what was installed.
    env = {
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home),
        "ANSIBLE_CONFIG": str(tmp / "none.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(tmp / "collections"),
        "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
    }
    _run([_tool("ansible-galaxy"), "collection", "build", "--output-path", str(tmp / "dist"), str(REPO)], tmp, env)
    version = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    tarball = tmp / "dist" / f"ollama_airgap-deploy-{version}.tar.gz"
    assert tarball.is_file()
    _run([_tool("ansible-galaxy"), "collection", "install", "--offline", str(tarball), "-p", str(tmp / "collections")],
         tmp, env)  # fmt: skip
    return tarball, tmp / "collections", env


def test_galaxy_version_is_the_project_version() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'version = "{yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]}"' in pyproject


def test_tarball_holds_the_collection_and_nothing_else(installed: tuple[Path, Path, dict[str, str]]) -> None:
    tarball, _, _ = installed
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert {"MANIFEST.json", "FILES.json", "README.md", "meta/runtime.yml", "playbooks/site.yml"} <= set(names)
    assert {f"plugins/modules/{m}.py" for m in MODULES} <= set(names)
    assert {f"roles/{r}/meta/argument_specs.yml" for r in ROLES} <= set(names)
    assert not [n for n in names if n.startswith(JUNK) or any(j in n for j in ("__pycache__", ".pyc"))]
    assert tarball.stat().st_size < 1024 * 1024


def test_installed_collection_documents_every_module(installed: tuple[Path, Path, dict[str, str]]) -> None:
    _, collections, env = installed
    listed = _run([_tool("ansible-doc"), "-t", "module", "-l", "ollama_airgap.deploy"], collections, env)
    assert sorted(line.split()[0] for line in listed.splitlines() if line.strip()) == [
        f"ollama_airgap.deploy.{m}" for m in MODULES
    ]
    docs = _run([_tool("ansible-doc"), "--json", *(f"ollama_airgap.deploy.{m}" for m in MODULES)], collections, env)
    assert all(f"ollama_airgap.deploy.{m}" in docs for m in MODULES)


def test_installed_collection_playbooks_resolve(installed: tuple[Path, Path, dict[str, str]]) -> None:
    """The site playbook and its phases load by FQCN: every role and module they name comes from the install."""
    _, collections, env = installed
    names = ("site", "rollback", "uninstall")
    check = [_tool("ansible-playbook"), "--syntax-check", "-i", "localhost,"]
    out = _run([*check, *(f"ollama_airgap.deploy.{name}" for name in names)], collections, env)
    for name in names:
        assert f"ansible_collections/ollama_airgap/deploy/playbooks/{name}.yml" in out
    tasks = _run([_tool("ansible-playbook"), "--list-tasks", "-i", "localhost,", "ollama_airgap.deploy.site"],
                 collections, env)  # fmt: skip
    for role in ROLES:
        assert f"ollama_airgap.deploy.{role} : " in tasks, role


def test_checkout_playbooks_use_the_collection_by_fqcn(installed: tuple[Path, Path, dict[str, str]]) -> None:
    """The checkout's own playbooks, outside any collection directory and with no roles_path or library: a role or
    module named without ollama_airgap.deploy. would not resolve."""
    _, collections, env = installed
    playbooks = [str(p) for p in (REPO / "site.yml", *sorted((REPO / "playbooks").glob("*.yml")))]
    out = _run([_tool("ansible-playbook"), "--syntax-check", "-i", "localhost,", *playbooks], collections, env)
    assert all(f"playbook: {p}" in out for p in playbooks)


def _bare_references(node: object) -> list[str]:
    """Module keys and role names in tasks/plays that lack the collection prefix."""
    found: list[str] = []
    if isinstance(node, list):
        for item in node:
            found += _bare_references(item)
    elif isinstance(node, dict):
        found += [key for key in node if key in MODULES]
        for key in ("ansible.builtin.include_role", "ansible.builtin.import_role"):
            name = node.get(key, {}).get("name", "") if isinstance(node.get(key), dict) else ""
            if name and not name.startswith("ollama_airgap.deploy."):
                found.append(name)
        for role in node.get("roles", []) if isinstance(node.get("roles"), list) else []:
            name = role.get("role", "") if isinstance(role, dict) else str(role)
            if not name.startswith("ollama_airgap.deploy."):
                found.append(name)
        for value in node.values():
            found += _bare_references(value)
    return found


def test_roles_and_playbooks_name_modules_and_roles_by_fqcn() -> None:
    files = [*sorted((REPO / "roles").glob("*/tasks/*.yml")), *sorted((REPO / "playbooks").glob("*.yml"))]
    files += [REPO / "roles" / r / "handlers" / "main.yml" for r in ROLES if (REPO / "roles" / r / "handlers").exists()]
    bare = {str(f.relative_to(REPO)): b for f in files if (b := _bare_references(yaml.safe_load(f.read_text())))}
    assert bare == {}


def test_modules_have_the_shebang_ansible_rewrites() -> None:
    """Only `#!/usr/bin/python` is replaced by ansible_python_interpreter (or the discovered interpreter); a module
    starting `#!/usr/bin/python3` would run /usr/bin/python3 whatever the inventory says (ansible-test's rule)."""
    for module in sorted((REPO / "plugins" / "modules").glob("*.py")):
        assert module.read_text().splitlines()[0] == "#!/usr/bin/python", module.name
