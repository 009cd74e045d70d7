"""The ollama binary and libraries, the service account and the model store: owners and modes."""

from __future__ import annotations

import re
import shlex
from typing import Any

from conftest import Expected


def test_binary_is_root_owned_and_not_writable_by_others(host: Any, expected: Expected) -> None:
    binary = host.file(expected.binary)
    if binary.is_symlink:  # releases side by side (roles/ollama): check the active release's binary and the link
        assert binary.user == "root", f"{expected.binary} (link) belongs to {binary.user}"
        binary = host.file(host.check_output(f"readlink -f {shlex.quote(expected.binary)}"))
    assert binary.exists and binary.is_file, f"{expected.binary} is missing"
    assert binary.user == "root" and binary.group == "root", f"{expected.binary} is {binary.user}:{binary.group}"
    assert binary.mode & 0o022 == 0, f"{expected.binary} is group/other writable ({binary.mode:o})"
    assert binary.mode & 0o111, f"{expected.binary} is not executable"
    libraries = f"{expected['ollama_install_dir']}/lib/ollama/"  # trailing slash: through the link to the release
    if host.file(libraries).exists:
        writable = host.check_output(f"find {shlex.quote(libraries)} \\( -perm -0020 -o -perm -0002 \\) ! -type l")
        assert writable == "", f"group/other writable under {libraries}:\n{writable}"
        not_root = host.check_output(f"find {shlex.quote(libraries)} ! -user root")
        assert not_root == "", f"not owned by root under {libraries}:\n{not_root}"


def test_version_matches_the_bundle(host: Any, expected: Expected) -> None:
    version = expected.bundle["ollama"]["version"]
    result = host.run(
        f"OLLAMA_HOST={shlex.quote(str(expected['ollama_host']))} {shlex.quote(expected.binary)} --version"
    )
    output = result.stdout + result.stderr
    assert result.rc == 0, output
    assert f"ollama version is {version}" in output, f"server is not ollama {version}: {output}"
    assert "client version" not in output, f"client and server versions differ: {output}"


def test_service_account(host: Any, expected: Expected) -> None:
    user, group = host.user(expected["ollama_user"]), host.group(expected["ollama_group"])
    assert user.exists, f"user {expected['ollama_user']} is missing"
    assert group.exists, f"group {expected['ollama_group']} is missing"
    assert user.group == expected["ollama_group"], f"primary group is {user.group}"
    defs = host.file("/etc/login.defs").content_string if host.file("/etc/login.defs").exists else ""
    match = re.search(r"^\s*SYS_UID_MAX\s+(\d+)", defs, re.MULTILINE)
    sys_uid_max = int(match.group(1)) if match else 999
    assert 0 < user.uid <= sys_uid_max, f"{user.name} uid {user.uid} is not a system uid (1..{sys_uid_max})"
    assert user.shell.rsplit("/", 1)[-1] in ("nologin", "false"), f"{user.name} has a login shell {user.shell}"
    assert user.home == expected["ollama_home"], f"{user.name} home is {user.home}"
    for extra in expected["ollama_extra_groups"] or []:
        if host.group(extra).exists:
            assert extra in user.groups, f"{user.name} is not in group {extra} (GPU devices)"


def test_model_store_owned_by_the_service_and_not_world_writable(host: Any, expected: Expected) -> None:
    store = expected["ollama_models_dir"]
    directory = host.file(store)
    assert directory.is_directory, f"{store} is missing"
    assert directory.user == expected["ollama_user"], f"{store} is owned by {directory.user}"
    assert directory.mode & 0o002 == 0, f"{store} is world-writable ({directory.mode:o})"
    writable = host.check_output(f"find {shlex.quote(store)} -perm -0002 ! -type l")
    assert writable == "", f"world-writable under {store}:\n{writable}"
    for sub in ("blobs", "manifests"):
        path = host.file(f"{store}/{sub}")
        if path.exists:
            assert path.user == expected["ollama_user"], f"{store}/{sub} is owned by {path.user}"
