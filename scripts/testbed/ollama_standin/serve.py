"""`ollama serve` (server/routes.go Serve)."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import sys
import threading
from http.server import ThreadingHTTPServer
from typing import Any

from .cloud import cloud_disabled, remotes
from .envconfig import allowed_origins, env_bool, join_host_port, models_dir, parse_host
from .routes import Handler
from .runtime import Runtime, detect_gpu
from .store import Store
from .util import human_bytes2, log
from .version import VERSION, at_least


class StandinHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], store: Store, runtime: Runtime, family: int) -> None:
        self.address_family = family
        self.store = store
        self.runtime = runtime
        self.origins = allowed_origins()
        self.bound_loopback = False
        super().__init__(address, Handler)
        try:
            self.bound_loopback = ipaddress.ip_address(str(self.server_address[0])).is_loopback
        except ValueError:
            self.bound_loopback = False


def serve() -> int:
    """`ollama serve`."""
    host = parse_host()
    store = Store(models_dir())
    log("INFO", "server config", env=_env_summary())
    store.fix_blobs()
    if not env_bool("OLLAMA_NOPRUNE"):
        store.prune()
    gpu = detect_gpu()
    runtime = Runtime(store, gpu)
    family = socket.AF_INET6 if ":" in host.host else socket.AF_INET
    try:
        httpd = StandinHTTPServer((host.host, host.port), store, runtime, family)
    except OSError as err:
        print(f"Error: listen tcp {host.hostport}: bind: {err.strerror.lower() if err.strerror else err}",
              file=sys.stderr)  # fmt: skip
        return 1
    bound_host, bound_port = httpd.server_address[:2]
    log("INFO", f"Listening on {join_host_port(str(bound_host), bound_port)} (version {VERSION})")
    if gpu:
        log("INFO", "inference compute", source="types.go", id="GPU-0", library="CUDA", compute="9.0", name=gpu,
            description=gpu, driver="12.4", type="discrete", total="79.1 GiB", available="78.6 GiB")  # fmt: skip
    else:
        log("INFO", "inference compute", source="types.go", id="cpu", library="cpu", compute="", name="cpu",
            description="cpu", libdirs="ollama", driver="", pci_id="", type="", total=_mem_total(),
            available=_mem_total())  # fmt: skip

    def stop(_signum: int, _frame: Any) -> None:
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()
    return 0


def _mem_total() -> str:
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return human_bytes2(int(pages))
    except (ValueError, OSError):
        return "0 B"


def _env_summary() -> str:
    """envconfig.AsMap as the "server config" line prints it (the settings the stand-in reads)."""
    values = {
        "OLLAMA_HOST": parse_host().url(),
        "OLLAMA_KEEP_ALIVE": os.environ.get("OLLAMA_KEEP_ALIVE", "5m0s"),
        "OLLAMA_MODELS": str(models_dir()),
        "OLLAMA_NOPRUNE": str(env_bool("OLLAMA_NOPRUNE")).lower(),
        "OLLAMA_ORIGINS": "[" + " ".join(allowed_origins()) + "]",
    }
    if at_least("0.16.2"):
        values["OLLAMA_NO_CLOUD"] = str(cloud_disabled()).lower()
    if at_least("0.12.0"):
        values["OLLAMA_REMOTES"] = "[" + " ".join(remotes()) + "]"
    return "map[" + " ".join(f"{name}:{values[name]}" for name in sorted(values)) + "]"
