"""The systemd unit, its drop-in and environment, its sandboxing, and what it listens on."""

from __future__ import annotations

import re
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


# Hardening (issue 16; docs/hardening.md). The host's own systemd scores the running unit.
EXPOSURE_LIMIT = 2.5


def test_deployed_unit_exposure(host: Any) -> None:
    out = host.run("systemd-analyze security --no-pager ollama.service")
    found = re.search(r"Overall exposure level for ollama\.service: (\d+\.\d)", out.stdout)
    assert found, f"systemd-analyze security gave no score: {out.stdout[-500:]} {out.stderr[-500:]}"
    assert float(found.group(1)) <= EXPOSURE_LIMIT, f"exposure {found.group(1)} > {EXPOSURE_LIMIT}:\n{out.stdout}"


def test_hardening_properties(host: Any, unit: dict[str, str], expected: Expected) -> None:
    names = ("DevicePolicy", "DeviceAllow", "CapabilityBoundingSet", "AmbientCapabilities", "RestrictAddressFamilies",
             "ReadWritePaths", "MemoryDenyWriteExecute", "PrivateUsers", "RestrictNamespaces", "RestrictSUIDSGID",
             "ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups", "LockPersonality",
             "SystemCallArchitectures", "UMask")  # fmt: skip
    show = host.check_output("systemctl show ollama " + " ".join(f"-p {name}" for name in names))
    props = dict(line.split("=", 1) for line in show.splitlines() if "=" in line)
    assert props["DevicePolicy"] == "closed", props["DevicePolicy"]
    # One DeviceAllow= line per entry (systemd 252), e.g. "DeviceAllow=char-nvidia-uvm rw".
    allowed = {line.split("=", 1)[1].split()[0] for line in show.splitlines() if line.startswith("DeviceAllow=")}
    wanted = {entry.split()[0] for entry in expected["ollama_device_allow"]}
    assert wanted <= allowed, f"DeviceAllow lacks {wanted - allowed}"
    assert props["CapabilityBoundingSet"] == "" and props["AmbientCapabilities"] == ""
    assert set(props["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    assert set(props["ReadWritePaths"].split()) == {expected["ollama_models_dir"], expected["ollama_home"]}
    strict = expected["ollama_hardening"] == "strict"
    assert props["MemoryDenyWriteExecute"] == ("yes" if strict else "no")
    assert props["PrivateUsers"] == ("yes" if strict else "no")
    for name in ("RestrictNamespaces", "RestrictSUIDSGID", "ProtectKernelTunables", "ProtectKernelModules",
                 "ProtectControlGroups", "LockPersonality"):  # fmt: skip
        assert props[name] == "yes", f"{name}={props[name]}"
    assert props["SystemCallArchitectures"] == "native" and props["UMask"] == "0027"


def test_running_process_is_confined(host: Any, unit: dict[str, str]) -> None:
    """The kernel's view of the main process: no capabilities at all, no_new_privs, a seccomp filter."""
    pid = int(unit.get("MainPID", "0"))
    assert pid > 0, "ollama has no main process"
    status = dict(
        line.split(":", 1) for line in host.file(f"/proc/{pid}/status").content_string.splitlines() if ":" in line
    )
    for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[name].strip(), 16) == 0, f"{name}={status[name].strip()}"
    assert status["NoNewPrivs"].strip() == "1" and status["Seccomp"].strip() == "2"
