"""One Distribution (registry v2) client for ollama models and container images alike.

It answers the bearer-token challenge, sends the Accept headers ollama sends, resolves blob redirects as ollama's
downloader does (same-host redirects followed, the first cross-host Location used as the direct URL, with no
credentials sent there), and checks every manifest and blob against its sha256 digest.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from .cache import BlobCache
from .download import Fetcher, Progress
from .errors import FetchError, NotFoundError, UnsupportedModelError, VerifyError
from .hashing import digest_hex, sha256_bytes

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
# ollama's registry client asks for the docker v2 schema 2 manifest only.
OLLAMA_ACCEPT = DOCKER_MANIFEST
IMAGE_ACCEPT = ", ".join((OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST))

_CHALLENGE_RE = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Manifest:
    data: bytes
    media_type: str
    digest: str

    def json(self) -> dict[str, Any]:
        parsed = json.loads(self.data)
        if not isinstance(parsed, dict):
            raise VerifyError(f"manifest {self.digest} is not a JSON object")
        return parsed


class RegistryClient:
    """``user_agent`` replaces the session's on every request of this client (the pinned ollama's, for models, so a
    registry that answers by client version serves what that ollama would get)."""

    def __init__(self, base_url_for: Callable[[str], str], fetcher: Fetcher, user_agent: str | None = None) -> None:
        self.base_url_for = base_url_for
        self.fetcher = fetcher
        self.agent = {"User-Agent": user_agent} if user_agent else {}
        self._tokens: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def _base(self, host: str) -> str:
        return self.base_url_for(host).rstrip("/")

    def _auth_headers(self, host: str, repository: str) -> dict[str, str]:
        token = self._tokens.get((host, repository))
        return {**self.agent, "Authorization": f"Bearer {token}"} if token else dict(self.agent)

    def _authorize(self, host: str, repository: str, challenge: str) -> None:
        """Answer a ``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` challenge with an anonymous token."""
        if not challenge.lower().startswith("bearer "):
            raise FetchError(f"registry {host}: unsupported authentication challenge {challenge.split(' ')[0]!r}")
        fields = dict(_CHALLENGE_RE.findall(challenge))
        realm = fields.get("realm")
        if not realm:
            raise FetchError(f"registry {host}: bearer challenge without a realm")
        params = {
            "service": fields.get("service", ""),
            "scope": fields.get("scope", f"repository:{repository}:pull"),
        }
        resp = self.fetcher.request(
            "GET", realm, params=params, headers=self.agent, what=f"token for {host}/{repository}"
        )
        try:
            body = resp.json()
        except ValueError:
            raise FetchError(f"registry {host}: token endpoint {realm} answered no JSON") from None
        token = body.get("token") or body.get("access_token")
        if not token:
            raise FetchError(f"registry {host}: token endpoint {realm} answered no token")
        with self._lock:
            self._tokens[(host, repository)] = token

    def _get(
        self,
        host: str,
        repository: str,
        url: str,
        headers: Mapping[str, str],
        what: str,
        ok: frozenset[int] = frozenset({200}),
        **kw: Any,
    ) -> Any:
        """GET with the bearer challenge answered once when the registry asks for it."""
        for _ in range(2):
            merged = {**headers, **self._auth_headers(host, repository)}
            resp = self.fetcher.request("GET", url, headers=merged, what=what, ok=ok | {401}, **kw)
            if resp.status_code != 401:
                return resp
            challenge = resp.headers.get("WWW-Authenticate", "")
            resp.close()
            if (host, repository) in self._tokens and "error=" not in challenge:
                break
            self._authorize(host, repository, challenge)
        raise FetchError(f"{what}: registry {self._base(host)} refused the credentials (401)")

    def manifest(self, host: str, repository: str, reference: str, accept: str = OLLAMA_ACCEPT) -> Manifest:
        """Fetch a manifest by tag or digest and check its digest."""
        base = self._base(host)
        url = f"{base}/v2/{repository}/manifests/{reference}"
        what = f"{host}/{repository}:{reference}"
        try:
            resp = self._get(host, repository, url, {"Accept": accept}, what, ok=frozenset({200, 412}))
        except NotFoundError:
            raise NotFoundError(f"{what}: not found in registry {base}") from None
        with resp:
            data = resp.content
        if resp.status_code == 412:
            agent = self.agent.get("User-Agent") or str(self.fetcher.session.headers.get("User-Agent", ""))
            raise UnsupportedModelError(
                f"{what}: registry {base} refuses the client {agent} (HTTP 412: {_registry_message(data)}); "
                "pin a newer ollama.version in the spec"
            )
        self.fetcher.stats.bytes_downloaded += len(data)
        digest = "sha256:" + sha256_bytes(data)
        if reference.startswith("sha256:") and reference != digest:
            raise VerifyError(f"{what}: manifest digest mismatch: got {digest}")
        advertised = resp.headers.get("Docker-Content-Digest")
        if advertised and advertised != digest:
            raise VerifyError(f"{what}: manifest digest mismatch: registry said {advertised}, content is {digest}")
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            media_type = json.loads(data).get("mediaType") or media_type
        except ValueError:
            raise VerifyError(f"{what}: manifest is not JSON") from None
        return Manifest(data=data, media_type=media_type, digest=digest)

    def open_blob(
        self, host: str, repository: str, digest: str, offset: int, probe: bool = False
    ) -> tuple[str, dict[str, str], requests.Response | None]:
        """Resolve a blob's download URL as ollama's downloader does: same-host redirects are followed, the first
        cross-host redirect is the direct URL (no credentials sent there). When the registry serves the blob itself,
        its response (from ``offset``, via Range) is returned open, ready to stream. ``probe`` asks for
        ``bytes=0-0`` instead: whether the registry honours Range, before a download in parts."""
        url = f"{self._base(host)}/v2/{repository}/blobs/{digest}"
        origin = urlsplit(url).hostname
        wanted = "bytes=0-0" if probe else f"bytes={offset}-" if offset else None
        for _ in range(10):
            headers = self._auth_headers(host, repository)
            resp = self.fetcher.request(
                "GET",
                url,
                headers={**headers, **({"Range": wanted} if wanted else {})},
                what=f"{host}/{repository} blob {digest}",
                allow_redirects=False,
                stream=True,
                ok=frozenset({200, 206, 301, 302, 303, 307, 308, 401, 416}),
            )
            if resp.status_code in (200, 206, 416):
                return url, headers, resp
            resp.close()
            if resp.status_code == 401:
                self._authorize(host, repository, resp.headers.get("WWW-Authenticate", ""))
                continue
            location = urljoin(url, resp.headers.get("Location", ""))
            if urlsplit(location).hostname != origin:
                return location, dict(self.agent), None
            url = location
        raise FetchError(f"{host}/{repository} blob {digest}: too many redirects")

    def fetch_blob(
        self,
        host: str,
        repository: str,
        digest: str,
        size: int | None,
        cache: BlobCache,
        progress: Progress | None = None,
    ) -> Path:
        """Download a blob into the cache, verified in-stream. A cached blob is returned without a request. A big
        blob goes in parallel ranged parts when the registry (or the host it redirects to) honours Range."""
        if cache.has(digest):
            return cache.path(digest)
        partial_path = cache.partial(digest)
        if self.fetcher.ranged.splits(size):
            url, headers, response = self.open_blob(host, repository, digest, 0, probe=True)
            partial = self.fetcher.download(
                url,
                partial_path,
                sha256=digest_hex(digest),
                size=size,
                what=f"{host}/{repository} blob {digest}",
                headers=headers,
                progress=progress,
                probed=response,
            )
            return cache.commit(digest, partial)
        offset = partial_path.stat().st_size if partial_path.exists() else 0
        url, headers, response = self.open_blob(host, repository, digest, offset)
        partial = self.fetcher.download(
            url,
            cache.partial(digest),
            sha256=digest_hex(digest),
            size=size,
            what=f"{host}/{repository} blob {digest}",
            headers=headers,
            progress=progress,
            opened=lambda at: response if at == offset else _closed(response),
        )
        return cache.commit(digest, partial)


def _registry_message(data: bytes) -> str:
    """The error message of a registry answer: Distribution's ``{"errors": [{"message": ...}]}``, ``{"error": ...}``
    or the first line of the text, cut to 160 characters."""
    text = data.decode("utf-8", errors="replace")
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    message = ""
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            message = str(errors[0].get("message") or errors[0].get("code") or "")
        message = message or str(body.get("error") or "")
    if not message:
        message = text.strip().splitlines()[0] if text.strip() else "precondition failed"
    return " ".join(message.split())[:160]


def _closed(response: requests.Response | None) -> None:
    if response is not None:
        response.close()
