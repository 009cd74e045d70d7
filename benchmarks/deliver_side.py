"""Figure 5: deliver a bundle to one host. The streamed push (playbooks/bundle.yml with bundle_transport push: the
archive's members flow over the SSH connection into the host's receiver, hashed and unpacked as they arrive) against
`rsync -a` of the unpacked tree over the same SSH, interleaved in one run, for each size; once with ssh's default
cipher and once with aes128-gcm@openssh.com on both sides.

Each figure also says where the playbook's time goes: `stream_seconds` (the transfer task itself, from the action's
result), the same playbook on a host that already holds the bundle (fixed ansible cost: start-up, bundle.yaml read
on the control node, record query and probe), and `ssh cat > /dev/null` of the archive (what the cipher allows)."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

from benchmarks.measure import interleaved, run_measured, settle, warm
from benchmarks.report import Figure
from testbed.hosts import SSH_KEY, SSH_OPTIONS, Host

STATE_DIR = "/var/lib/ollama-airgap"
COPY_DIR = "/var/tmp/bench-copy"
CIPHERS = ("", "aes128-gcm@openssh.com")
STREAM_SECONDS = re.compile(r"\"?stream_seconds\"?: ([0-9.]+)")


def wipe(host: Host) -> None:
    host.ssh(f"rm -rf {STATE_DIR} {COPY_DIR}", check=False)


def deliver_figures(
    deploy: object, host: Host, archive: Path, unpacked: Path, reps: int, scratch: Path, letter: str = "a"
) -> list[Figure]:
    """Figures 5<letter>, 5<next letter>: one per cipher. ``deploy`` is deploy_side.Deployer."""
    figures: list[Figure] = []
    size_gib = archive.stat().st_size / (1 << 30)
    for index, cipher in enumerate(CIPHERS):
        ssh = ["ssh", *SSH_OPTIONS, "-i", str(SSH_KEY), *(["-c", cipher] if cipher else [])]
        rsync = ["rsync", "-a", "-e", " ".join(ssh), f"{unpacked}/", f"root@{host.address}:{COPY_DIR}/"]
        extra = ["-v", *(["-e", f"ansible_ssh_extra_args='-c {cipher}'"] if cipher else [])]
        play = deploy.argv("playbooks/bundle.yml", [host], *extra)  # type: ignore[attr-defined]

        def before(_: str) -> None:
            wipe(host)
            settle()
            warm(archive)

        runs = interleaved([("rsync -a", rsync), ("bundle.yml (push)", play)], reps, disk_path=scratch, before=before)
        streamed = [float(m.group(1)) for r in runs["bundle.yml (push)"].runs if (m := STREAM_SECONDS.search(r.stdout))]
        noop = run_measured(play, disk_path=scratch, env=deploy.env).wall_s  # type: ignore[attr-defined]
        raw = run_measured(
            ["sh", "-c", f"{' '.join(ssh)} root@{host.address} 'cat > /dev/null' < '{archive}'"], disk_path=scratch
        ).wall_s
        stream_s = statistics.median(streamed) if streamed else float("nan")
        rsync_s = runs["rsync -a"].median_s
        name = cipher or "default cipher (chacha20-poly1305)"
        figures.append(
            Figure(
                f"5{chr(ord(letter) + index)}",
                f"Deliver a {size_gib:.0f} GiB bundle to 1 host, {name}",
                runs["bundle.yml (push)"],
                runs["rsync -a"],
                "<= 1.2x rsync",
                max_ratio=1.2,
                notes=[
                    f"stream task alone {stream_s:.2f} s ({stream_s / rsync_s:.2f}x rsync); "
                    f"bundle.yml on a host that holds it (fixed ansible cost) {noop:.2f} s; "
                    f"ssh cat > /dev/null of the archive {raw:.2f} s",
                    "push hashes every member (sha256) and fdatasyncs it before the record; rsync -a does neither",
                ],
                extra={"stream_seconds": streamed, "noop_playbook_s": noop, "ssh_cat_s": raw, "cipher": cipher},
            )
        )
    return figures
