"""The systemd unit, its drop-in and environment, its sandboxing, and what it listens on."""

from __future__ import annotations

import shlex
from typing import Any

from conftest import Expected, is_loopback, parse_ollama_host


def environment(unit: dict[str, str]) -> dict[str, str]:
    pairs = shlex.split(unit.get("Environment", ""))
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


def expected_environment(expected: Expected) -> dict[str, str]:
    env = {"OLLAMA_HOST": str(expected["ollama_host"]), "OLLAMA_MODELS": str(expected["ollama_models_dir"])}
    if expected["ollama_origins"]:
        env["OLLAMA_ORIGINS"] = ",".join(expected["ollama_origins"])
    if expected["ollama_no_cloud"]:
        env["OLLAMA_NO_CLOUD"] = "1"  # air-gapped default: cloud models and web search off
    for name, value in (expected["ollama_environment"] or {}).items():
        env[name] = str(value)
    return env


def test_unit_file_and_drop_in(host: Any, unit: dict[str, str], expected: Expected) -> None:
    fragment = host.file(unit.get("FragmentPath", ""))
    assert fragment.exists, f"no unit file for ollama ({unit.get('FragmentPath')})"
    assert fragment.user == "root" and fragment.mode & 0o022 == 0, f"{fragment.path} may be changed by others"
    assert f"ExecStart={expected.binary} serve" in fragment.content_string
    drop_ins = unit.get("DropInPaths", "").split()
    assert drop_ins, "no drop-in carries the ollama settings"
    text = ""
    for path in drop_ins:
        drop_in = host.file(path)
        assert drop_in.user == "root" and drop_in.mode & 0o022 == 0, f"{path} may be changed by others"
        text += drop_in.content_string
    for name, value in expected_environment(expected).items():
        assert f"{name}={value}" in text, f"{name}={value} is not in the drop-in(s) {drop_ins}"


def test_service_environment(unit: dict[str, str], expected: Expected) -> None:
    env = environment(unit)
    for name, value in expected_environment(expected).items():
        assert env.get(name) == value, f"systemctl show ollama: {name}={env.get(name)!r}, expected {value!r}"
    if not expected["ollama_origins"]:
        assert env.get("OLLAMA_ORIGINS", "") == "", f"OLLAMA_ORIGINS widened to {env['OLLAMA_ORIGINS']!r}"
    stray = sorted(set(env) - set(expected_environment(expected)) - {"PATH", "HOME"})
    assert not [name for name in stray if name.startswith("OLLAMA_")], f"unexpected settings: {stray}"


def test_origins_not_wildcard_unless_asked(unit: dict[str, str], expected: Expected) -> None:
    origins = [o.strip() for o in environment(unit).get("OLLAMA_ORIGINS", "").split(",") if o.strip()]
    if "*" in origins:
        assert "*" in (expected["ollama_origins"] or []) and expected["ollama_origins_allow_any"], (
            "OLLAMA_ORIGINS is '*' although the inventory did not ask for it"
        )


def test_sandboxing_and_service_user(host: Any, unit: dict[str, str], expected: Expected) -> None:
    assert unit.get("NoNewPrivileges") == "yes", f"NoNewPrivileges={unit.get('NoNewPrivileges')}"
    assert unit.get("ProtectSystem") in ("yes", "full", "strict"), f"ProtectSystem={unit.get('ProtectSystem')}"
    assert unit.get("ProtectHome") in ("yes", "read-only", "tmpfs"), f"ProtectHome={unit.get('ProtectHome')}"
    assert unit.get("PrivateTmp") == "yes", f"PrivateTmp={unit.get('PrivateTmp')}"
    assert unit.get("PrivateDevices", "no") == "no", "PrivateDevices hides the GPU devices"
    assert unit.get("User") == expected["ollama_user"], f"User={unit.get('User')}"
    pid = int(unit.get("MainPID", "0"))
    assert pid > 0, "ollama has no main process"
    status = host.file(f"/proc/{pid}/status").content_string
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    service_uid = host.user(expected["ollama_user"]).uid
    assert all(int(uid) == service_uid for uid in uids), f"ollama (pid {pid}) runs with uids {uids}"


def test_enabled_and_running(host: Any) -> None:
    service = host.service("ollama")
    assert service.is_enabled, "ollama is not enabled at boot"
    assert service.is_running, "ollama is not running"


def test_listens_on_the_configured_address_only(host: Any, unit: dict[str, str], expected: Expected) -> None:
    address, port = expected.bind
    pid = unit.get("MainPID", "0")
    listening = host.check_output("ss -H -ltnp")
    sockets = sorted(line.split()[3] for line in listening.splitlines() if f"pid={pid}," in line)
    wanted = f"[{address}]:{port}" if ":" in address else f"{address or '0.0.0.0'}:{port}"
    alternatives = {wanted, f"*:{port}"} if address in ("", "0.0.0.0", "::") else {wanted}
    assert sockets and set(sockets) <= alternatives, f"ollama listens on {sockets}, expected {wanted}"
    if "ollama_host" not in expected.explicit:
        bind, _ = parse_ollama_host(str(expected["ollama_host"]))
        assert is_loopback(bind), f"default OLLAMA_HOST {expected['ollama_host']} is not loopback"
