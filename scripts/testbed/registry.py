"""A real Distribution v2 registry (Debian's docker-registry) seeded the way registry.ollama.ai serves models.

``start_registry`` runs ``docker-registry serve`` on a free loopback port with a generated config;
``seed_models`` pushes tiny GGUF models as ollama manifests through the ordinary blob-upload API and returns a
``Catalog`` of everything it pushed, so tests can compare what a client fetched with what was served.
``TokenIssuer`` adds ghcr.io-style token auth: 401 + ``WWW-Authenticate: Bearer`` until a client brings a JWT.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from testbed.zoo import KINDS, GGUFFile, ZooModel, zoo_models
from testbed.zoo_layers import (  # noqa: F401  (media types and templates re-exported for tests and benchmarks)
    CHATML_TEMPLATE,
    CONFIG_V1,
    MANIFEST_V2,
    MEDIA_ADAPTER,
    MEDIA_DRAFT,
    MEDIA_JSON,
    MEDIA_LICENSE,
    MEDIA_MESSAGES,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_PROJECTOR,
    MEDIA_PROMPT,
    MEDIA_SYSTEM,
    MEDIA_TEMPLATE,
    MEDIA_TENSOR,
    ZEPHYR_TEMPLATE,
    json_bytes,
)

REGISTRY_BINARY = "docker-registry"

# --- process helpers (shared with nginx.py) ---


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, process: subprocess.Popen[bytes]) -> None:
    """Poll ``check`` until it is true; fail early if ``process`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} while starting")
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not become ready within {timeout:.0f}s")


def stop_process(process: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Signal one process we started (by its PID) and reap it; SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    os.kill(process.pid, sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return "sha256:" + hashlib.file_digest(handle, "sha256").hexdigest()


# --- the registry process ---


@dataclass(frozen=True)
class TokenAuthConfig:
    """docker-registry's ``auth: token`` settings (``TokenIssuer`` below hands out the tokens)."""

    realm: str
    service: str
    issuer: str
    root_cert_bundle: Path


@dataclass
class LocalServer:
    """A server process of the test bed on this machine, ended by its PID."""

    process: subprocess.Popen[bytes]
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        stop_process(self.process)

    def wait_until_answering(self, answers: Callable[[], bool], what: str, timeout: float) -> None:
        """Return once ``answers()`` is true; stop the server and raise if it never is."""
        try:
            wait_until(answers, timeout=timeout, what=what, process=self.process)
        except BaseException:
            self.stop()
            raise


@dataclass
class RegistryServer(LocalServer):
    data_dir: Path
    config_path: Path
    log_path: Path


def registry_config(data_dir: Path, host: str, port: int, auth: TokenAuthConfig | None = None) -> dict[str, object]:
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text"},
        "storage": {
            "filesystem": {"rootdirectory": str(data_dir)},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
        },
        # A fixed secret: upload state survives a restart of the same registry.
        "http": {"addr": f"{host}:{port}", "secret": "ollama-airgap-testbed"},
    }
    if auth is not None:
        config["auth"] = {
            "token": {
                "realm": auth.realm,
                "service": auth.service,
                "issuer": auth.issuer,
                "rootcertbundle": str(auth.root_cert_bundle),
            }
        }
    return config


def start_registry(
    state_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    auth: TokenAuthConfig | None = None,
    timeout: float = 20.0,
) -> RegistryServer:
    """Run ``docker-registry serve`` with storage under ``state_dir/data``; return once /v2/ answers."""
    state_dir.mkdir(parents=True, exist_ok=True)
    data_dir = state_dir / "data"
    data_dir.mkdir(exist_ok=True)
    chosen_port = port or free_port(host)
    config_path = state_dir / "config.yml"
    config_path.write_text(yaml.safe_dump(registry_config(data_dir, host, chosen_port, auth), sort_keys=False))
    log_path = state_dir / "registry.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [REGISTRY_BINARY, "serve", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (state_dir / "registry.pid").write_text(f"{process.pid}\n")
    server = RegistryServer(process, host, chosen_port, data_dir, config_path, log_path)

    def answers() -> bool:
        try:
            # 200 without auth, 401 with token auth: either way the API is up.
            return requests.get(f"{server.url}/v2/", timeout=1).status_code in (200, 401)
        except requests.ConnectionError:
            return False

    server.wait_until_answering(answers, f"docker-registry on {host}:{chosen_port}", timeout)
    return server


# --- pushing ---


class RegistryPusher:
    """Push blobs and manifests with the plain Distribution API (what `docker push` / ollama push do)."""

    def __init__(
        self,
        base_url: str,
        session: requests.Session | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        self.credentials = credentials  # for the token realm, when the registry asks for a Bearer token
        self._pushed_to: dict[str, str] = {}  # digest → a repository that already holds it
        self._challenge: dict[str, str] | None = None
        self._tokens: dict[tuple[str, ...], str] = {}

    def _auth(self, *scopes: str) -> dict[str, str]:
        """Authorization header for ``scopes``: none for an open registry, else a token from its realm."""
        if self._challenge is None:
            probe = self.session.get(f"{self.base_url}/v2/", timeout=30)
            header = probe.headers.get("WWW-Authenticate", "") if probe.status_code == 401 else ""
            self._challenge = parse_bearer_challenge(header) if header else {}
        if not self._challenge:
            return {}
        if scopes not in self._tokens:
            response = self.session.get(
                self._challenge["realm"],
                params={"service": self._challenge.get("service", ""), "scope": list(scopes)},
                auth=self.credentials,
                timeout=30,
            )
            response.raise_for_status()
            self._tokens[scopes] = response.json()["token"]
        return {"Authorization": f"Bearer {self._tokens[scopes]}"}

    def blob_exists(self, repository: str, digest: str) -> bool:
        response = self.session.head(
            f"{self.base_url}/v2/{repository}/blobs/{digest}",
            headers=self._auth(f"repository:{repository}:pull,push"),
            timeout=30,
        )
        return response.status_code == 200

    def push_blob(self, repository: str, digest: str, payload: bytes | Path) -> None:
        """Upload one blob unless the repository has it; mount it from a sibling repository when possible."""
        if self.blob_exists(repository, digest):
            self._pushed_to.setdefault(digest, repository)
            return
        uploads = f"{self.base_url}/v2/{repository}/blobs/uploads/"
        source = self._pushed_to.get(digest)
        if source is not None and source != repository:
            # Cross-repository mount: 201 means the registry linked the existing blob, no bytes sent.
            mounted = self.session.post(
                uploads,
                params={"mount": digest, "from": source},
                headers=self._auth(f"repository:{repository}:pull,push", f"repository:{source}:pull"),
                timeout=30,
            )
            if mounted.status_code == 201:
                return
            started = mounted  # 202: the registry opened an ordinary upload instead
        else:
            started = self.session.post(uploads, headers=self._auth(f"repository:{repository}:pull,push"), timeout=30)
        if started.status_code != 202:
            raise RuntimeError(f"starting upload to {repository}: HTTP {started.status_code} {started.text}")
        location = requests.compat.urljoin(f"{self.base_url}/", started.headers["Location"])
        auth = self._auth(f"repository:{repository}:pull,push")
        # Monolithic upload: all bytes in the closing PUT.
        if isinstance(payload, Path):
            with payload.open("rb") as body:
                finished = self.session.put(
                    location,
                    params={"digest": digest},
                    data=body,
                    headers={
                        **auth,
                        "Content-Type": "application/octet-stream",
                        "Content-Length": str(payload.stat().st_size),
                    },
                    timeout=120,
                )
        else:
            finished = self.session.put(
                location,
                params={"digest": digest},
                data=payload,
                headers={**auth, "Content-Type": "application/octet-stream"},
                timeout=120,
            )
        if finished.status_code != 201:
            raise RuntimeError(f"finishing upload of {digest}: HTTP {finished.status_code} {finished.text}")
        self._pushed_to.setdefault(digest, repository)

    def put_manifest(self, repository: str, reference: str, manifest: bytes, media_type: str = MANIFEST_V2) -> str:
        response = self.session.put(
            f"{self.base_url}/v2/{repository}/manifests/{reference}",
            data=manifest,
            headers={**self._auth(f"repository:{repository}:pull,push"), "Content-Type": media_type},
            timeout=30,
        )
        if response.status_code != 201:
            raise RuntimeError(f"PUT manifest {repository}:{reference}: HTTP {response.status_code} {response.text}")
        return response.headers["Docker-Content-Digest"]


# --- the catalog ---


@dataclass(frozen=True)
class Blob:
    """One config or layer blob as pushed: ``content`` is kept for small blobs (everything but the GGUF)."""

    media_type: str
    digest: str
    size: int
    path: Path
    content: bytes | None = None
    name: str = ""  # the layer's "name" (tensor and json layers), as manifest/layer.go writes it

    def descriptor(self) -> dict[str, object]:
        descriptor: dict[str, object] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.name:
            descriptor["name"] = self.name
        return descriptor


@dataclass(frozen=True)
class ModelEntry:
    repository: str  # e.g. "library/tinyllama"
    tag: str
    manifest: bytes
    digest: str  # sha256 of the manifest bytes (Docker-Content-Digest)
    config: Blob
    layers: tuple[Blob, ...]
    gguf_path: Path | None  # the (first) model GGUF; None for tensor and cloud models
    kind: str = "chat"  # one of testbed.zoo.KINDS
    capabilities: tuple[str, ...] = ("completion",)  # what ollama's Model.Capabilities() computes
    embedding_length: int = 0  # GGUF <arch>.embedding_length of the main model; 0 without a GGUF
    requires: str = ""  # config "requires", "" when none
    restore_only: bool = False  # no Modelfile can carry the model
    restore_only_reason: str = ""

    @property
    def config_json(self) -> dict[str, object]:
        value: dict[str, object] = json.loads(self.config.content or b"{}")
        return value

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def short_name(self) -> str:
        """The name ollama users type: "tinyllama:1.1b", "acme/tiny-assistant:v1"."""
        repository = self.repository.removeprefix("library/")
        return f"{repository}:{self.tag}"

    def layer(self, media_type: str) -> Blob:
        for blob in self.layers:
            if blob.media_type == media_type:
                return blob
        raise KeyError(f"{self.reference} has no {media_type} layer")

    def layers_of(self, media_type: str) -> tuple[Blob, ...]:
        """Every layer of ``media_type``, in manifest order (a split model has several model layers)."""
        return tuple(blob for blob in self.layers if blob.media_type == media_type)

    def blobs(self) -> tuple[Blob, ...]:
        return (self.config, *self.layers)


def normalize_reference(name: str) -> str:
    """ollama's short names → "namespace/model:tag" ("tinyllama" → "library/tinyllama:latest")."""
    repository, _, tag = name.partition(":")
    if "/" not in repository:
        repository = f"library/{repository}"
    return f"{repository}:{tag or 'latest'}"


@dataclass
class Catalog:
    models: dict[str, ModelEntry] = field(default_factory=dict)  # keyed by "library/tinyllama:latest"
    blob_paths: dict[str, Path] = field(default_factory=dict)  # digest → local file with those bytes

    def __getitem__(self, name: str) -> ModelEntry:
        return self.models[normalize_reference(name)]

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(self.models.values())

    def __len__(self) -> int:
        return len(self.models)

    def repositories(self) -> list[str]:
        return sorted({entry.repository for entry in self.models.values()})

    def tags(self, repository: str) -> list[str]:
        return sorted(entry.tag for entry in self.models.values() if entry.repository == repository)

    def by_kind(self, kind: str) -> list[ModelEntry]:
        """Entries of one zoo kind ("chat", "embedding", …; testbed.zoo.KINDS), in seeding order."""
        if kind not in KINDS:
            raise KeyError(f"unknown model kind {kind!r}; kinds: {', '.join(KINDS)}")
        return [entry for entry in self.models.values() if entry.kind == kind]

    def kinds(self) -> dict[str, list[str]]:
        """kind → short names of its entries ("llava:7b", …)."""
        return {kind: [entry.short_name for entry in self.by_kind(kind)] for kind in KINDS}


# --- what gets seeded (the definitions live in testbed.zoo) ---


class _BlobStore:
    """Write each blob once, content-addressed (``sha256-<hex>``, ollama's on-disk naming)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.paths: dict[str, Path] = {}

    def add_bytes(self, media_type: str, data: bytes, name: str = "") -> Blob:
        digest = sha256_digest(data)
        path = self.root / digest.replace(":", "-")
        if not path.exists():
            partial = path.with_suffix(".partial")
            partial.write_bytes(data)
            partial.replace(path)
        self.paths[digest] = path
        return Blob(media_type, digest, len(data), path, data, name)

    def add_file(self, media_type: str, path: Path, name: str = "") -> Blob:
        digest = sha256_file(path)
        self.paths[digest] = path
        return Blob(media_type, digest, path.stat().st_size, path, None, name)


@dataclass(frozen=True)
class _Prepared:
    """One zoo model ready to push: its blobs (config first) and manifest bytes."""

    spec: ZooModel
    config: Blob
    layers: tuple[Blob, ...]
    manifest: bytes
    gguf_path: Path | None


def _prepare(spec: ZooModel, store: _BlobStore, ggufs: dict[str, GGUFFile]) -> _Prepared:
    layers = []
    for layer in spec.layers:
        if layer.gguf is not None:
            layers.append(store.add_file(layer.media_type, ggufs[layer.gguf].path, layer.name))
        else:
            layers.append(store.add_bytes(layer.media_type, layer.content or b"", layer.name))
    config_json = dict(spec.config)
    if spec.rootfs:
        config_json["rootfs"] = {"type": "layers", "diff_ids": [layer.digest for layer in layers]}
    config = store.add_bytes(CONFIG_V1, json_bytes(config_json))
    manifest = json_bytes(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_V2,
            "config": config.descriptor(),
            "layers": [layer.descriptor() for layer in layers],
        }
    )
    model_ggufs = [layer.gguf for layer in spec.layers if layer.media_type == MEDIA_MODEL and layer.gguf]
    return _Prepared(spec, config, tuple(layers), manifest, ggufs[model_ggufs[0]].path if model_ggufs else None)


def _push(pusher: RegistryPusher, prepared: _Prepared) -> list[ModelEntry]:
    """Push one model's blobs, then its manifest under each tag; the catalog entries for it."""
    spec = prepared.spec
    for blob in (prepared.config, *prepared.layers):
        pusher.push_blob(spec.repository, blob.digest, blob.path)
    entries = []
    for tag in spec.tags:
        served_digest = pusher.put_manifest(spec.repository, tag, prepared.manifest)
        if served_digest != sha256_digest(prepared.manifest):
            raise RuntimeError(f"registry stored {spec.repository}:{tag} as {served_digest}, not our bytes")
        entries.append(
            ModelEntry(
                spec.repository,
                tag,
                prepared.manifest,
                served_digest,
                prepared.config,
                prepared.layers,
                prepared.gguf_path,
                kind=spec.kind,
                capabilities=spec.capabilities,
                embedding_length=spec.embedding_length,
                requires=spec.requires,
                restore_only=spec.restore_only,
                restore_only_reason=spec.restore_only_reason,
            )
        )
    return entries


def seed_models(registry_url: str, work_dir: Path, *, pusher: RegistryPusher | None = None) -> Catalog:
    """Build the zoo (testbed.zoo) and push it to the registry; return the catalog of what was pushed.

    Models are pushed four at a time (each model's blobs before its manifests); the catalog keeps the zoo's order.
    """
    store = _BlobStore(work_dir / "blobs")
    pusher = pusher or RegistryPusher(registry_url)
    ggufs, models = zoo_models(work_dir / "gguf")
    prepared = [_prepare(spec, store, ggufs) for spec in models]
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="seed") as pool:
        pushed = list(pool.map(lambda item: _push(pusher, item), prepared))
    catalog = Catalog()
    for entries in pushed:
        for entry in entries:
            catalog.models[entry.reference] = entry
    catalog.blob_paths.update(store.paths)
    return catalog


# --- token auth, the way ghcr.io hands out anonymous pull tokens ---


def parse_bearer_challenge(header: str) -> dict[str, str]:
    """``Bearer realm="...",service="...",scope="..."`` → {"realm": ..., "service": ..., "scope": ...}."""
    scheme, _, params = header.partition(" ")
    if scheme.lower() != "bearer":
        return {}
    return {key.lower(): value for key, value in re.findall(r'(\w+)="([^"]*)"', params)}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    """A small token server on loopback: anonymous clients get pull-only JWTs, the seeder push ones too.

    Tokens are RS256 JWTs whose ``x5c`` header carries the self-signed certificate that docker-registry is
    configured to trust (``rootcertbundle``), which is how Distribution's token auth verifies them.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        host: str = "127.0.0.1",
        service: str = "ollama-airgap-testbed-registry",
        issuer: str = "ollama-airgap-testbed-token-issuer",
        token_lifetime: int = 300,
    ) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.service = service
        self.issuer = issuer
        self.token_lifetime = token_lifetime
        self.credentials = ("testbed-seeder", secrets.token_urlsafe(16))
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cert_path = state_dir / "token-signer.pem"
        self.cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self.issued: list[dict[str, object]] = []  # claims of every token handed out, for tests to inspect
        self._server = ThreadingHTTPServer((host, 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, name="token-issuer", daemon=True)
        self._thread.start()

    @property
    def realm(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/token"

    @property
    def auth_config(self) -> TokenAuthConfig:
        return TokenAuthConfig(self.realm, self.service, self.issuer, self.cert_path)

    def issue(self, scopes: list[str], *, may_push: bool, subject: str = "") -> str:
        """A signed token granting, per requested ``repository:NAME:ACTIONS`` scope, the allowed actions."""
        allowed = {"pull", "push"} if may_push else {"pull"}
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            repository, _, actions = rest.rpartition(":")
            granted = sorted(set(actions.split(",")) & allowed)
            if kind == "repository" and repository:
                access.append({"type": kind, "name": repository, "actions": granted})
        now = int(time.time())
        claims: dict[str, object] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + self.token_lifetime,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        header = {
            "typ": "JWT",
            "alg": "RS256",
            "x5c": [base64.b64encode(self._cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        self.issued.append(claims)
        return f"{signing_input}.{_b64url(signature)}"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class TokenHandler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                if url.path != "/token":
                    self._reply(404, {"errors": [{"code": "NOT_FOUND"}]})
                    return
                query = urllib.parse.parse_qs(url.query)
                subject, may_push = "", False
                authorization = self.headers.get("Authorization", "")
                if authorization.lower().startswith("basic "):
                    user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
                    if (user, password) != issuer.credentials:
                        self._reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
                        return
                    subject, may_push = user, True
                scopes = [scope for value in query.get("scope", []) for scope in value.split(" ") if scope]
                token = issuer.issue(scopes, may_push=may_push, subject=subject)
                issued_at = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                self._reply(
                    200,
                    {
                        "token": token,
                        "access_token": token,
                        "expires_in": issuer.token_lifetime,
                        "issued_at": issued_at,
                    },
                )

            def _reply(self, status: int, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:  # quiet: tests read `issued` instead
                return

        return TokenHandler

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
