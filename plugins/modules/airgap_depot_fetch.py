#!/usr/bin/python
"""Ansible module: fetch a bundle's files from the depot (a CNCF Distribution registry in the gap) by digest."""
# ruff: noqa: E402  (Ansible modules document themselves before their imports)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: airgap_depot_fetch
short_description: Fetch an ollama-airgap bundle's files from the depot by sha256, in ranged parts, resumably
description:
  - Runs on the host with the Python 3 standard library only. Every file of a bundle is a blob of the depot's
    repository under its own sha256 (the bundle is content-addressed), so the host asks for
    C(GET /v2/<repository>/blobs/sha256:<hex>) and needs no other index.
  - Like ollama's downloader (server/download.go upstream), a big blob is fetched in up to O(max_parts) C(Range)
    parts over parallel connections, written in place into C(<path>.partial) whose progress is kept in
    C(<path>.partial.json), so a broken transfer resumes where it stopped. Unlike it, the sha256 is computed while
    the parts arrive (the contiguous prefix is hashed as it grows), not in a second pass at the end. Redirects
    (a registry on object storage answers 307) are followed.
  - A file whose sha256 differs is fetched again from scratch (O(retries) times) and then refused. A depot that
    stops answering fails the task with one line; what arrived stays for the next run.
  - With O(root) (what C(bundle_transport=depot) uses) the module installs the bundle as a streamed push does;
    it fetches straight into the staging tree beside O(root) only the files this host needs (O(manifest),
    O(select) decide it by its architecture, models and image), hard-links instead of fetching those O(root)
    already holds verified, checks C(bundle.yaml) against O(manifest_sha256), C(SHA256SUMS) against O(files) and,
    with O(public_key), C(bundle.yaml.sig) (listed in the depot's manifest), then swaps the tree into O(root)
    atomically and writes the verification record C(<state_dir>/verified/<manifest_sha256>.json). Every byte is
    hashed once, as it arrives; nothing is copied. An intact record of the needed files means nothing is asked
    of the depot. O(root) stays as it was until the swap.
  - With O(dest) instead it only fetches; O(dest) then holds C(bundle.yaml), C(SHA256SUMS) and the listed files,
    each verified.
  - Files verified by an earlier run (same size, mtime and inode, recorded in C(<dest>.fetch.json), beside the
    tree) are neither fetched nor hashed again. C(<dest>.lock) keeps two runs from fetching into one tree at once.
options:
  url:
    description: Base URL of the depot registry, e.g. C(http://depot:5000).
    type: str
    required: true
  repository:
    description: Repository holding the bundle's blobs.
    type: str
    default: ollama-airgap/bundle
  dest:
    description:
      - Directory the files are fetched into (created; emptied first when it holds another bundle). Only fetches.
      - Exactly one of O(dest) and O(root).
    type: path
  root:
    description: The bundle root to install the bundle into (C(bundle_root)).
    type: path
  state_dir:
    description: Directory holding the C(verified/<digest>.json) records (with O(root)).
    type: path
    default: /var/lib/ollama-airgap
  manifest:
    description: The parsed C(bundle.yaml), to choose the files this host needs (with O(root) and O(subset)).
    type: dict
  select:
    description:
      - What the host runs, as for C(airgap_bundle_stream) (C(models_include), C(images), C(rocm), C(mlx),
        C(jetpack)); the host's architecture and GPU devices are read on the host.
    type: dict
    default: {}
  subset:
    description: Fetch only the files this host needs (with O(root) and O(manifest)); false fetches all.
    type: bool
    default: true
  public_key:
    description: PEM Ed25519 public key; C(bundle.yaml.sig) must verify with it (with O(root)).
    type: str
    default: ""
  rehash_base:
    description: Hash again the files hard-linked from what O(root) holds verified.
    type: bool
    default: false
  free_space_margin:
    description: Bytes that must stay free beside O(root) after the fetch; less refuses before fetching.
    type: int
    default: 0
  manifest_sha256:
    description: sha256 of the bundle's C(bundle.yaml) (the bundle's identity); fetched as that blob.
    type: str
    required: true
  sums_sha256:
    description: sha256 of the bundle's C(SHA256SUMS); fetched as that blob.
    type: str
    required: true
  files:
    description: The files to fetch (path, size, sha256 of each), from the parsed bundle.yaml.
    type: list
    elements: dict
    required: true
  connections:
    description: Parallel HTTP connections in all.
    type: int
    default: 8
  max_parts:
    description: Most ranged parts one blob is split into.
    type: int
    default: 16
  part_size:
    description:
      - Smallest part in bytes; blobs up to this size are fetched in one request, hashed wholly in-stream.
      - A depot in the gap caps no connection, so one stream per file fills the link and parts only pay off for
        big blobs (ollama's parts are 100 MB to 1 GB); measured in docs/fleet.md.
    type: int
    default: 268435456
  retries:
    description: Tries per request on a connection error or a 5xx, and per file whose sha256 is wrong.
    type: int
    default: 3
  timeout:
    description: Seconds a connection may stay silent.
    type: float
    default: 30
attributes:
  check_mode:
    support: full
    details: Reports how many bytes would be fetched, fetches nothing.
author: ollama-airgap
"""

EXAMPLES = r"""
- name: Install the bundle from the depot
  ollama_airgap.deploy.airgap_depot_fetch:
    url: http://depot.example:5000
    root: /var/lib/ollama-airgap/bundle
    manifest: "{{ document }}"
    manifest_sha256: "{{ bundle_digest }}"
    sums_sha256: "{{ document.sha256sums_sha256 }}"
    files: "{{ document.files }}"
    select:
      models_include: [llama3.2:3b]
"""

RETURN = r"""
fetched_bytes:
  description: Bytes received from the depot by this run.
  returned: always
  type: int
linked_files:
  description: Files hard-linked from what O(root) held verified instead of fetched.
  returned: with root
  type: int
subset:
  description: What part of the bundle this host holds and why (null when all of it).
  returned: with root
  type: dict
left_out:
  description: Files not fetched for this host, with the reason.
  returned: with root
  type: dict
record:
  description: Path of the verification record.
  returned: with root
  type: str
resumed_bytes:
  description: Bytes of partial files kept from an earlier run and not fetched again.
  returned: always
  type: int
fetched_files:
  description: Files fetched (wholly or partly) by this run.
  returned: always
  type: int
refetched:
  description: Files whose sha256 was wrong and that were fetched again.
  returned: always
  type: list
  elements: str
seconds:
  description: Wall time of the transfer.
  returned: always
  type: float
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_checks import BundleError
from ansible_collections.ollama_airgap.deploy.plugins.module_utils.depot_install import fetch_into, install
from ansible_collections.ollama_airgap.deploy.plugins.module_utils.depot_transfer import FetchError


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "repository": {"type": "str", "default": "ollama-airgap/bundle"},
            "dest": {"type": "path"},
            "root": {"type": "path"},
            "state_dir": {"type": "path", "default": "/var/lib/ollama-airgap"},
            "manifest_sha256": {"type": "str", "required": True},
            "sums_sha256": {"type": "str", "required": True},
            "files": {"type": "list", "elements": "dict", "required": True},
            "manifest": {"type": "dict"},
            "select": {"type": "dict", "default": {}},
            "subset": {"type": "bool", "default": True},
            "public_key": {"type": "str", "default": ""},
            "rehash_base": {"type": "bool", "default": False},
            "free_space_margin": {"type": "int", "default": 0},
            "connections": {"type": "int", "default": 8},
            "max_parts": {"type": "int", "default": 16},
            "part_size": {"type": "int", "default": 256 << 20},
            "retries": {"type": "int", "default": 3},
            "timeout": {"type": "float", "default": 30.0},
        },
        required_one_of=[("dest", "root")],
        mutually_exclusive=[("dest", "root")],
        supports_check_mode=True,
    )
    params = module.params
    try:
        if params["root"]:
            module.exit_json(**install(params, module.check_mode))
        module.exit_json(**fetch_into(params, module.check_mode))
    except FetchError as exc:
        where = params["dest"] or f"the staging tree beside {params['root']}"
        kept = "" if params["dest"] and not os.path.isdir(params["dest"]) else f"; what arrived is kept in {where}"
        module.fail_json(msg=f"depot {params['url']}: {exc}{kept} for the next run to resume")
    except BundleError as exc:
        module.fail_json(msg=f"depot {params['url']}: {exc}")
    except OSError as exc:
        module.fail_json(msg=f"{exc.filename or params['dest'] or params['root']}: {exc.strerror or exc}")


if __name__ == "__main__":
    main()
