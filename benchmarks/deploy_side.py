"""Figures 5-8: the air-gapped side on the test bed's systemd hosts (behind `--deploy`).

5. Deliver: playbooks/bundle.yml (streamed push) to one clean host vs rsync of the unpacked tree, per size and
   cipher (benchmarks/deliver_side.py).
6. No-op re-deploy: site.yml again on an unchanged host vs its first deploy; bytes on the host's veth.
7. Import: ollama_models_method=restore vs create (the ollama stand-in's `create`: an imitation of ollama's).
8. Fleet: site.yml on N hosts vs on 1 host, each from a clean state.

Hosts are shared by every engineer on the machine and take a lock: when they are busy, or this is not root,
the figures are skipped with the reason, and the test bed is always brought down again by this process.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import yaml

from benchmarks.bundle_side import Context, build_bundle
from benchmarks.deliver_side import deliver_figures
from benchmarks.measure import Series, run_measured
from benchmarks.report import Figure, Skipped
from testbed import config as testbed_config
from testbed.hosts import INVENTORY_PATH, Host, TestBedBusy, TestHosts, hosts_unavailable_reason

REPO_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = "/var/lib/ollama-airgap"
MODELS_STORE = "/usr/share/ollama/.ollama/models"
NOOP_GOAL_S = 15.0
TITLES = {"5": "Deliver", "6": "No-op re-deploy", "7": "Import", "8": "Fleet"}


def _skip_all(wanted: set[str], reason: str) -> list[Figure | Skipped]:
    return [Skipped(number, TITLES[number], reason) for number in sorted(wanted)]


class Deployer:
    """ansible-playbook against the test bed inventory, timed and measured like every other command."""

    def __init__(self, ctx: Context, archive: Path) -> None:
        self.ctx = ctx
        self.vars_file = ctx.scratch / "deploy-vars.yml"
        self.vars_file.write_text(yaml.safe_dump({"bundle_src": str(archive)}))
        self.env = {
            **os.environ,
            "PATH": f"{Path(ctx.python).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
        }

    def argv(self, playbook: str, hosts: list[Host], *extra: str) -> list[str]:
        return [
            str(Path(self.ctx.python).with_name("ansible-playbook")),
            "-i",
            str(INVENTORY_PATH),
            "-e",
            f"@{self.vars_file}",
            "--limit",
            ",".join(h.name for h in hosts),
            *extra,
            str(REPO_ROOT / playbook),
        ]

    def series(self, label: str, argv: list[str], reps: int, before: Callable[[], None] | None = None) -> Series:
        result = Series(label)
        for _ in range(reps):
            if before:
                before()
            result.runs.append(run_measured(argv, disk_path=self.ctx.scratch, env=self.env))
        return result


def wipe(hosts: list[Host]) -> None:
    """Back to a host that never saw a bundle: ollama stopped, bundle state and model store removed."""
    for host in hosts:
        host.ssh(
            f"systemctl stop ollama 2>/dev/null; rm -rf {STATE_DIR} {MODELS_STORE} /var/tmp/bench-copy", check=False
        )


def tx_bytes(host: Host) -> int:
    """Bytes the machine sent to ``host`` (its veth on the machine's bridge)."""
    return int(Path(f"/sys/class/net/{testbed_config.veth_name(host.index)}/statistics/tx_bytes").read_text())


def run(ctx: Context, wanted: set[str], sizes: list[int] | int, fleet: int, reps: int) -> list[Figure | Skipped]:
    """Figure 5 for every size (benchmarks/deliver_side.py), the others for the first."""
    sizes = [sizes] if isinstance(sizes, int) else sizes
    size = sizes[0]
    reason = hosts_unavailable_reason()
    if reason:
        return _skip_all(wanted, reason)
    if not (REPO_ROOT / "roles" / "bundle" / "tasks" / "main.yml").is_file():
        return _skip_all(wanted, "the Ansible roles are not in roles/ yet")
    model = ctx.bed.model(size)
    archive, unpacked = build_bundle(ctx, model, "deploy")
    bed = TestHosts(owned_by_this_process=True)
    try:
        hosts = bed.up(fleet if "8" in wanted else 1)
    except TestBedBusy as exc:
        return _skip_all(wanted, f"test bed busy ({exc})")
    except BaseException:
        bed.down()
        raise
    try:
        figures: list[Figure | Skipped] = []
        if "5" in wanted:
            for index, other in enumerate(sizes):
                one, tree = (archive, unpacked) if index == 0 else build_bundle(ctx, ctx.bed.model(other), f"d{index}")
                letter = chr(ord("a") + 2 * index)
                figures += deliver_figures(Deployer(ctx, one), hosts[0], one, tree, reps, ctx.scratch, letter)
                if index:
                    shutil.rmtree(tree, ignore_errors=True)
                    one.unlink(missing_ok=True)
        rest = wanted - {"5"}
        return figures + _figures(ctx, Deployer(ctx, archive), hosts, archive, unpacked, model.name, rest, reps)
    finally:
        bed.down()
        shutil.rmtree(unpacked, ignore_errors=True)
        archive.unlink(missing_ok=True)


def _figures(
    ctx: Context,
    deploy: Deployer,
    hosts: list[Host],
    archive: Path,
    unpacked: Path,
    model_name: str,
    wanted: set[str],
    reps: int,
) -> list[Figure | Skipped]:
    figures: list[Figure | Skipped] = []
    first = hosts[:1]

    if "6" in wanted:
        wipe(first)
        site = deploy.argv("site.yml", first)
        first_deploy = deploy.series("site.yml, first deploy", site, 1)
        sent: list[int] = []

        def count_before() -> None:
            sent.append(tx_bytes(first[0]))

        noop = deploy.series("site.yml, second run", site, reps, before=count_before)
        sent_bytes = max(0, tx_bytes(first[0]) - sent[-1]) if sent else 0
        figures.append(
            Figure(
                "6",
                "No-op re-deploy (1 host)",
                noop,
                first_deploy,
                "<= 15 s/host, 0 model bytes",
                max_candidate=NOOP_GOAL_S,
                notes=[
                    f"bytes sent to the host during the last no-op run: {sent_bytes} (bundle {archive.stat().st_size})"
                ],
                extra={"noop_bytes_sent": sent_bytes, "bundle_bytes": archive.stat().st_size},
            )
        )

    if "7" in wanted:
        wipe(first)
        run_measured(deploy.argv("site.yml", first), disk_path=ctx.scratch, env=deploy.env)

        def forget_models() -> None:
            first[0].ssh(
                f"/usr/local/bin/ollama rm {model_name} >/dev/null 2>&1; rm -rf {STATE_DIR}/models", check=False
            )

        tags = ("--tags", "bundle,ollama_models")
        runs = {
            method: deploy.series(
                f"ollama_models_method={method}",
                deploy.argv("site.yml", first, *tags, "-e", f"ollama_models_method={method}"),
                reps,
                before=forget_models,
            )
            for method in ("create", "restore")
        }
        figures.append(
            Figure(
                "7",
                "Import one model: restore vs create",
                runs["restore"],
                runs["create"],
                "(no goal; restore expected faster)",
                notes=[
                    "`create` runs against the ollama stand-in (an imitation of ollama's create: it copies and "
                    "hashes the blob); both runs include the no-op bundle phase (--tags bundle,ollama_models)"
                ],
            )
        )

    if "8" in wanted:
        if len(hosts) < 2:
            figures.append(Skipped("8", TITLES["8"], "only one host"))
        else:
            fleet_runs: dict[str, Series] = {}
            for group in (first, hosts):
                label = f"site.yml on {len(group)} host{'s' if len(group) > 1 else ''}"

                def clean(group: list[Host] = group) -> None:
                    wipe(group)

                fleet_runs[label] = deploy.series(label, deploy.argv("site.yml", group), reps, before=clean)
            one, many = fleet_runs["site.yml on 1 host"], fleet_runs[f"site.yml on {len(hosts)} hosts"]
            figures.append(
                Figure(
                    "8",
                    f"Fleet: {len(hosts)} hosts vs 1, fresh deploy",
                    many,
                    one,
                    f"{len(hosts)} hosts <= 1.5x 1 host",
                    max_ratio=1.5,
                )
            )
    return figures
