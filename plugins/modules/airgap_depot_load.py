#!/usr/bin/python
"""Ansible module: load a verified bundle into the depot (a CNCF Distribution registry) as blobs + one manifest."""
# ruff: noqa: E402  (Ansible modules document themselves before their imports)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: airgap_depot_load
short_description: Load a verified ollama-airgap bundle into the depot registry, once
description:
  - Runs on the depot host with the Python 3 standard library only, against the registry's HTTP API (the
    Distribution v2 / OCI distribution API). Every file of the bundle tree O(root), already verified by
    C(airgap_bundle), is uploaded as a blob under its own sha256 (the bundle is content-addressed); then one OCI
    image manifest, tagged with the bundle's digest, references them all (so the registry's garbage collection
    keeps them), with C(bundle.yaml) as its config blob.
  - Idempotent. The manifest is looked up first; when the registry already holds it under the tag, nothing is read
    or sent. Otherwise each blob is asked for with C(HEAD) and only the missing ones are uploaded.
options:
  url:
    description: Base URL of the registry as the depot host reaches it, e.g. C(http://127.0.0.1:5000).
    type: str
    required: true
  repository:
    description: Repository to load into.
    type: str
    default: ollama-airgap/bundle
  root:
    description: The verified, unpacked bundle (C(bundle_root)).
    type: path
    required: true
  manifest_sha256:
    description: sha256 of the bundle's C(bundle.yaml) (tag and config blob).
    type: str
    required: true
  files:
    description: The C(files) list of the parsed bundle.yaml.
    type: list
    elements: dict
    required: true
  sums_sha256:
    description: sha256 of C(SHA256SUMS).
    type: str
    required: true
  timeout:
    description: Seconds a connection may stay silent.
    type: float
    default: 60
attributes:
  check_mode:
    support: full
    details: Reports what would be uploaded.
author: ollama-airgap
"""

EXAMPLES = r"""
- name: Load the bundle into the depot
  ollama_airgap.deploy.airgap_depot_load:
    url: http://127.0.0.1:5000
    root: /var/lib/ollama-airgap/bundle
    manifest_sha256: "{{ bundle_digest }}"
    sums_sha256: "{{ document.sha256sums_sha256 }}"
    files: "{{ document.files }}"
"""

RETURN = r"""
uploaded_blobs:
  description: Blobs this run uploaded.
  returned: always
  type: int
uploaded_bytes:
  description: Bytes this run uploaded.
  returned: always
  type: int
manifest_digest:
  description: Digest of the manifest under the tag.
  returned: always
  type: str
"""

import hashlib
import http.client
import json
import os
from urllib.parse import urljoin, urlsplit

from ansible.module_utils.basic import AnsibleModule

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.ollama-airgap.bundle.v1+yaml"
FILE_TYPE = "application/vnd.ollama-airgap.file.v1"
TITLE = "org.opencontainers.image.title"
BLOCK = 1 << 20


class LoadError(Exception):
    """One line naming what failed."""


class Registry:
    def __init__(self, url: str, repository: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LoadError(f"{url}: not an http(s) URL")
        self.url, self.parts, self.repository, self.timeout = url.rstrip("/"), parts, repository, timeout

    def _connection(self, netloc: str | None = None) -> http.client.HTTPConnection:
        netloc = netloc or self.parts.netloc
        if self.parts.scheme == "https":
            return http.client.HTTPSConnection(netloc, timeout=self.timeout, blocksize=BLOCK)
        return http.client.HTTPConnection(netloc, timeout=self.timeout, blocksize=BLOCK)

    def request(self, method: str, target: str, body: object = None, headers: dict | None = None) -> tuple:
        """(status, headers, body bytes) for an absolute or repository-relative target."""
        absolute = urljoin(self.url + "/", target)
        parts = urlsplit(absolute)
        connection = self._connection(parts.netloc)
        try:
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
            return response.status, response.headers, data
        except OSError as exc:
            raise LoadError(f"{method} {absolute}: {exc}") from None
        finally:
            connection.close()

    def has_blob(self, digest: str) -> bool:
        status, _, _ = self.request("HEAD", f"v2/{self.repository}/blobs/sha256:{digest}")
        return status == 200

    def upload(self, digest: str, path: str, size: int) -> None:
        status, headers, data = self.request("POST", f"v2/{self.repository}/blobs/uploads/", b"")
        if status != 202 or not headers.get("Location"):
            raise LoadError(f"starting an upload: HTTP {status} {data[:200]!r}")
        location = urljoin(self.url + "/", headers["Location"])
        target = location + ("&" if "?" in location else "?") + f"digest=sha256:{digest}"
        with open(path, "rb") as body:
            put_headers = {"Content-Length": str(size), "Content-Type": "application/octet-stream"}
            status, _, data = self.request("PUT", target, body, put_headers)
        if status != 201:
            raise LoadError(f"{path}: upload refused, HTTP {status} {data[:200]!r}")

    def manifest_digest(self, tag: str) -> str:
        status, headers, _ = self.request(
            "HEAD", f"v2/{self.repository}/manifests/{tag}", headers={"Accept": MANIFEST_TYPE}
        )
        return str(headers.get("Docker-Content-Digest", "")) if status == 200 else ""

    def put_manifest(self, tag: str, data: bytes) -> None:
        status, _, body = self.request(
            "PUT", f"v2/{self.repository}/manifests/{tag}", data, {"Content-Type": MANIFEST_TYPE}
        )
        if status != 201:
            raise LoadError(f"manifest {tag}: refused, HTTP {status} {body[:300]!r}")


def manifest_for(root: str, digest: str, sums_sha256: str, files: list[dict]) -> tuple[bytes, list[tuple]]:
    """The manifest bytes and every blob it references as (sha256, path on disk, size)."""
    blobs = [(digest, os.path.join(root, "bundle.yaml")), (sums_sha256, os.path.join(root, "SHA256SUMS"))]
    layers = [{"mediaType": FILE_TYPE, "digest": f"sha256:{sums_sha256}", "annotations": {TITLE: "SHA256SUMS"}}]
    signature = os.path.join(root, "bundle.yaml.sig")
    if os.path.isfile(signature):  # hosts that require a signing key fetch it by the digest listed here
        with open(signature, "rb") as handle:
            signed = hashlib.sha256(handle.read()).hexdigest()
        blobs.append((signed, signature))
        layers.append({"mediaType": FILE_TYPE, "digest": f"sha256:{signed}", "annotations": {TITLE: "bundle.yaml.sig"}})
    for item in files:
        blobs.append((item["sha256"], os.path.join(root, item["path"])))
        layers.append(
            {"mediaType": FILE_TYPE, "digest": f"sha256:{item['sha256']}", "annotations": {TITLE: item["path"]}}
        )
    sized = []
    for sha, path in blobs:
        sized.append((sha, path, os.path.getsize(path)))
    sizes = {sha: size for sha, _, size in sized}
    for layer in layers:
        layer["size"] = sizes[layer["digest"][7:]]
    document = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": f"sha256:{digest}", "size": sizes[digest]},
        "layers": layers,
        "annotations": {"org.opencontainers.image.ref.name": digest},
    }
    return json.dumps(document, indent=1, sort_keys=True).encode(), sized


def run(module: AnsibleModule) -> dict:
    params = module.params
    registry = Registry(params["url"], params["repository"], params["timeout"])
    digest = params["manifest_sha256"]
    manifest, blobs = manifest_for(params["root"], digest, params["sums_sha256"], params["files"])
    manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    result = {"changed": False, "uploaded_blobs": 0, "uploaded_bytes": 0, "manifest_digest": manifest_digest}
    if registry.manifest_digest(digest) == manifest_digest:
        return result
    unique = {sha: (path, size) for sha, path, size in blobs}
    missing = [(sha, path, size) for sha, (path, size) in unique.items() if not registry.has_blob(sha)]
    result["changed"] = True
    result["missing_blobs"] = len(missing)
    if module.check_mode:
        return result
    for sha, path, size in missing:
        registry.upload(sha, path, size)
        result["uploaded_blobs"] += 1
        result["uploaded_bytes"] += size
    registry.put_manifest(digest, manifest)
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "repository": {"type": "str", "default": "ollama-airgap/bundle"},
            "root": {"type": "path", "required": True},
            "manifest_sha256": {"type": "str", "required": True},
            "files": {"type": "list", "elements": "dict", "required": True},
            "sums_sha256": {"type": "str", "required": True},
            "timeout": {"type": "float", "default": 60.0},
        },
        supports_check_mode=True,
    )
    try:
        module.exit_json(**run(module))
    except LoadError as exc:
        module.fail_json(msg=f"depot {module.params['url']}: {exc}")
    except OSError as exc:
        module.fail_json(msg=f"{exc.filename or module.params['root']}: {exc.strerror or exc}")


if __name__ == "__main__":
    main()
