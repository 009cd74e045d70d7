#!/usr/bin/env python3
"""Print the sandboxing of ollama.service as `systemd-run` arguments, one per line, so that a GPU workload can run
under exactly the unit's properties (scripts/gpu/sandbox-check.sh). The properties come from the unit itself, never
from a copy: the deployed unit (`--unit /etc/systemd/system/ollama.service`) or the role's template rendered with
the role's defaults (`--profile standard|strict`, the way tests/unit/test_unit_security.py renders it).

Left out: what starts the program rather than confines it (ExecStart, Restart*, Type, Description, ...).
`--writable DIR` replaces ReadWritePaths and HOME (for a check on a host where ollama is not deployed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROLE = Path(__file__).resolve().parents[2] / "roles" / "ollama"
NOT_SANDBOXING = {
    *("ExecStart", "ExecStartPre", "ExecStartPost", "ExecStop", "ExecStopPost", "ExecReload", "Restart"),
    *("RestartSec", "Type", "TimeoutStartSec", "TimeoutStopSec", "RemainAfterExit", "WatchdogSec"),
}


def render_template(profile: str) -> str:
    import jinja2  # the project's .venv has jinja2, PyYAML and ansible-core
    import yaml
    from ansible.plugins.filter.core import FilterModule

    values = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    lenient = jinja2.Environment()
    lenient.filters.update(FilterModule().filters())
    for _ in range(3):
        values = {k: lenient.from_string(v).render(values) if isinstance(v, str) else v for k, v in values.items()}
    values.update(ansible_managed="rendered by scripts/gpu/unit_properties.py", ollama_hardening=profile)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, keep_trailing_newline=True)
    env.filters.update(FilterModule().filters())
    return env.from_string((ROLE / "templates" / "ollama.service.j2").read_text()).render(values)


def service_settings(text: str) -> list[tuple[str, str]]:
    settings: list[tuple[str, str]] = []
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]" and "=" in line:
            key, value = line.split("=", 1)
            settings.append((key.strip(), value.strip()))
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--unit", type=Path, help="a unit file (e.g. the deployed /etc/systemd/system/ollama.service)")
    source.add_argument("--profile", choices=["standard", "strict"], default="standard", help="render the template")
    parser.add_argument("--writable", help="use this directory for ReadWritePaths and HOME instead of the unit's")
    parser.add_argument("--user", help="run as this user instead of the unit's User=/Group=")
    parser.add_argument("--if-missing", action="store_true", help="apply --writable/--user only where the unit's "
                        "paths/user do not exist on this host")  # fmt: skip
    args = parser.parse_args(argv)
    text = args.unit.read_text() if args.unit else render_template(args.profile)
    settings = service_settings(text)
    if args.if_missing:
        import pwd

        paths = [p for k, v in settings if k == "ReadWritePaths" for p in v.split()]
        if paths and all(Path(p.lstrip("-")).is_dir() for p in paths):
            args.writable = None
        try:
            pwd.getpwnam(next(v for k, v in settings if k == "User"))
            args.user = None
        except (KeyError, StopIteration):
            pass
    for key, value in settings:
        if key in NOT_SANDBOXING:
            continue
        if args.writable and key == "ReadWritePaths":
            value = args.writable
        if args.writable and key == "Environment" and value.strip('"').startswith("HOME="):
            value = f"HOME={args.writable}"
        if args.user and key in ("User", "Group"):
            value = args.user if key == "User" else ""
            if not value:
                continue
        print(f"--property={key}={value.strip(chr(34)) if key == 'Environment' else value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
