"""ollama stand-in: a stdlib-only Python 3 package that imitates the `ollama` binary for the air-gap test bed.

No package registry ships the real ollama binary, so the test bed's release archives carry this package as one
executable zipapp `bin/ollama` (`testbed.standin_server.zipapp_bytes(version)`, with the version baked in as
`_version.py`). It must run under a bare Debian bookworm `/usr/bin/python3` (3.11, standard library only).

What is imitated, from which ollama source file and for which ollama version: IMITATES.md next to this file.

Modules, by concern:
  version      the baked-in version and version comparisons
  util         errors, slog lines, Go-style JSON/time, format.Human*
  envconfig    OLLAMA_* settings (envconfig/config.go)
  names        model names (types/model/name.go)
  ggufread     GGUF metadata reader (fs/ggml, fs/gguf)
  store        manifests, blobs, prune (manifest/, server/images.go)
  model        Model and GetModel (server/images.go)
  modelfile    Modelfile grammar and CreateRequest (parser/parser.go)
  create       /api/create (server/create.go)
  create_layers  base layers from files (kinds, split GGUFs) or from a model (server/create.go, server/model.go)
  capabilities Model.Capabilities / CheckCapabilities (server/images.go)
  cloud        cloud models, OLLAMA_NO_CLOUD, OLLAMA_REMOTES (internal/modelref, internal/cloud, server/routes.go)
  runtime      loaded models, load refusals, fake completion and embeddings, GPU (server/sched.go, discover/)
  http_base    gin plumbing: CORS, allowed hosts, NDJSON (server/routes.go)
  inference    /api/generate, /api/chat with their capability checks (server/routes.go)
  embed        /api/embed, /api/embeddings (server/routes.go)
  show         /api/show (server/routes.go GetModelInfo)
  routes       the other routes (server/routes.go)
  serve        `ollama serve`
  cli          the CLI client (cmd/cmd.go, api/client.go)
"""

from __future__ import annotations

from .envconfig import parse_host
from .names import parse_name
from .store import MANIFEST_MEDIA_TYPE
from .version import VERSION

__all__ = ["MANIFEST_MEDIA_TYPE", "VERSION", "parse_host", "parse_name"]
