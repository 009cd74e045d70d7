"""The upstream mirrors `bundle build` downloads from, rebuilt locally from real parts.

- a Distribution v2 registry (Debian's docker-registry) seeded like registry.ollama.ai, standing in for
  https://registry.ollama.ai and https://ghcr.io;
- nginx serving a GitHub-releases-shaped tree, standing in for https://github.com/ollama/ollama/releases/download.

    mirrors = start_mirrors(state_dir)
    mirrors.registry_url        # http://127.0.0.1:PORT
    mirrors.release_base_url    # http://127.0.0.1:PORT/ollama/ollama/releases/download
    mirrors.catalog["tinyllama:1.1b"].digest
    mirrors.stop()
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from testbed import config
from testbed.depot_release import build_depot_release
from testbed.nginx import NginxServer, start_release_server
from testbed.registry import (
    Catalog,
    RegistryPusher,
    RegistryServer,
    TokenIssuer,
    seed_models,
    start_registry,
)
from testbed.releases import RELEASES_PATH, ReleaseTree, build_release_tree, latest_version


@dataclass
class Mirrors:
    registry: RegistryServer
    releases_server: NginxServer
    catalog: Catalog
    releases: ReleaseTree
    state_dir: Path
    token_issuer: TokenIssuer | None = None  # set when the registry demands Bearer tokens, like ghcr.io

    @property
    def registry_url(self) -> str:
        """Base URL replacing https://registry.ollama.ai and https://ghcr.io."""
        return self.registry.url

    @property
    def registry_host(self) -> str:
        """host:port, as a registry name in image references ("127.0.0.1:5000/library/tinyllama")."""
        return f"{self.registry.host}:{self.registry.port}"

    @property
    def release_base_url(self) -> str:
        """Base URL replacing https://github.com/ollama/ollama/releases/download."""
        return f"{self.releases_server.url}/{RELEASES_PATH}"

    @property
    def pids(self) -> tuple[int, ...]:
        return (self.registry.pid, self.releases_server.pid)

    def stop(self) -> None:
        """Stop both servers by PID (nginx first; each stop is a no-op once done)."""
        try:
            self.releases_server.stop()
        finally:
            try:
                self.registry.stop()
            finally:
                if self.token_issuer is not None:
                    self.token_issuer.stop()


def start_mirrors(
    state_dir: Path = config.STATE_DIR / "mirrors",
    *,
    host: str = "127.0.0.1",
    versions: tuple[str, ...] = config.OLLAMA_VERSIONS,
    fresh: bool = True,
    token_auth: bool = False,
) -> Mirrors:
    """Start the seeded registry and the release server under ``state_dir``; the caller must ``stop()`` them.

    ``fresh`` empties ``state_dir`` first, so nothing from an earlier run (other tags, old blobs) is served.
    ``token_auth`` makes the registry answer 401 + ``WWW-Authenticate: Bearer`` until a client fetches a token
    from ``mirrors.token_issuer.realm`` (anonymous → pull only), as ghcr.io does.
    Everything generated is deterministic, so digests are the same on every run.
    """
    if fresh and state_dir.exists():
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    issuer = TokenIssuer(state_dir / "token", host=host) if token_auth else None
    try:
        registry = start_registry(
            state_dir / "registry", host=host, auth=issuer.auth_config if issuer is not None else None
        )
    except BaseException:
        if issuer is not None:
            issuer.stop()
        raise
    try:
        pusher = RegistryPusher(registry.url, credentials=issuer.credentials if issuer is not None else None)
        catalog = seed_models(registry.url, state_dir / "models", pusher=pusher)
        releases = build_release_tree(state_dir / "www", versions=versions)
        build_depot_release(releases.root)  # the fleet depot's engine (fleet: {depot: true})
        server = start_release_server(
            state_dir / "nginx", releases.root, latest_version=latest_version(versions), host=host
        )
    except BaseException:
        registry.stop()
        if issuer is not None:
            issuer.stop()
        raise
    return Mirrors(registry, server, catalog, releases, state_dir, issuer)
