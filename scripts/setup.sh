#!/usr/bin/env bash
# Set up a fresh Debian 12 machine (as root) for ollama-airgap's demo and tests: the Debian packages the test bed
# runs on, and a virtual environment (.venv) holding the project and its development tools.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
    debootstrap systemd-container iproute2 openssh-client   # test hosts: nspawn + netns + ssh
    docker-registry nginx-light                             # registry.ollama.ai / ghcr.io and GitHub releases mirrors
    podman skopeo runc                                      # container image checks
    docker.io strace                                        # the role's docker unit; real Open WebUI's recorder
    nftables                                                # the air-gapped control node's recorder
    zstd rsync curl tar coreutils python3-venv              # archives and the benchmarks' baselines
)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'

# The repository is the collection ollama_airgap.deploy: ansible.cfg's collections_path finds it through this link
# (the same link ansible-lint makes). ln -sfn replaces a stale link; .ansible/ is not tracked.
collection_link=.ansible/collections/ansible_collections/ollama_airgap/deploy
mkdir -p "$(dirname "$collection_link")"
if [[ -d $collection_link && ! -L $collection_link ]]; then rm -r "$collection_link"; fi  # an installed copy shadows
ln -sfn ../../../.. "$collection_link"
echo "setup: done (venv: $(pwd)/.venv)"
