#!/usr/bin/python
"""Documentation of the action plugins/action/airgap_bundle_stream.py (the code runs on the control node there)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: airgap_bundle_stream
short_description: Stream the bundle files a host needs over its SSH connection, verified as they arrive
description:
  - An action plugin (runs on the control node). Probes the host (architecture, C(/dev/kfd), C(/etc/nv_tegra_release),
    its verification record, what a broken earlier transfer left, free space), chooses the files the host needs,
    and streams the missing ones as a tar stream into C(python3 -c) on the host over the ssh command line ansible's
    ssh connection plugin builds for it (become as for any module).
  - The receiver on the host checks bundle.yaml's digest, SHA256SUMS and the signature first, then every header
    (no absolute paths, no C(..), no links or devices, only listed members, sizes as listed, nothing past the end),
    hashes each member while writing it into a staging tree beside O(dest), swaps the tree in atomically and writes
    the record C(<state_dir>/verified/<digest>.json) with the subset it verified. No archive is written on the host.
  - Files the host holds verified (same sha256) are hard-linked instead of sent. After a broken connection the
    verified members stay in staging and a partial member is continued at its length on the next run.
  - Connections C(ssh) and C(local) only; become without a password prompt.
options:
  src:
    description: The bundle on the control node, an archive (.tar) or its unpacked directory.
    type: path
    required: true
  dest:
    description: The bundle root on the host.
    type: path
    required: true
  state_dir:
    description: Directory holding C(verified/<digest>.json) on the host.
    type: path
    required: true
  manifest:
    description: The parsed bundle.yaml (with C(files)).
    type: dict
    required: true
  manifest_sha256:
    description: sha256 (hex) of the bundle.yaml bytes.
    type: str
    required: true
  select:
    description:
      - How to choose the host's files; keys C(models_include) (list; empty = all), C(images) (bool),
        C(rocm) (auto/true/false), C(mlx) (bool), C(jetpack) (auto, 5, 6 or false), as the ollama role decides them.
    type: dict
    default: {}
  subset:
    description: Send only what the host needs; V(false) sends every file.
    type: bool
    default: true
  public_key:
    description: PEM Ed25519 public key; bundle.yaml.sig must verify with it on the host.
    type: str
    default: ""
  rehash_base:
    description: Re-hash the files linked from the bundle the host holds.
    type: bool
    default: false
  free_space_margin:
    description: Bytes to leave free on the host on top of what is sent.
    type: int
    default: 0
attributes:
  check_mode:
    support: full
    details: Probes and reports what would be sent (RV(would_send_bytes), RV(plan), diff); sends nothing.
author: ollama-airgap
"""

EXAMPLES = r"""
- name: Stream the bundle to the host
  ollama_airgap.deploy.airgap_bundle_stream:
    src: /srv/airgap/llama3.tar
    dest: /var/lib/ollama-airgap/bundle
    state_dir: /var/lib/ollama-airgap
    manifest: "{{ bundle_document }}"
    manifest_sha256: "{{ bundle_digest }}"
    select: {models_include: [llama3.2:1b], images: false}
"""

RETURN = r"""
sent_bytes:
  description: Member bytes sent over the connection by this run (0 when the host held the bundle).
  returned: always
  type: int
would_send_bytes:
  description: Member bytes this run sends (or would send, in check mode).
  returned: when the host lacks files
  type: int
plan:
  description: Files and bytes to send, files linked, files kept from an earlier transfer, files not needed.
  returned: when the host lacks files
  type: str
subset:
  description: What part of the bundle the host gets (architecture, releases, models, images, files, of); null for all.
  returned: always
  type: dict
left_out:
  description: Files not sent, each with the reason.
  returned: always
  type: dict
stream_seconds:
  description: Wall time of the transfer itself.
  returned: when files were sent
  type: float
"""
