"""The ollama-airgap test bed: real systemd hosts, local upstream mirrors and the ollama stand-in.

Everything the project is proven on runs on this machine: Debian bookworm hosts booted by systemd-nspawn in their
own network namespaces, Debian's docker-registry seeded the way registry.ollama.ai serves models, and nginx serving
a GitHub-releases-shaped tree of ollama release archives that carry the stand-in as ``bin/ollama``.
"""
