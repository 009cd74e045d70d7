#!/usr/bin/env bash
# The project's test command (README; CI runs exactly this through .ci/run): set up, lint, then every test.
# Needs root: the integration tests boot systemd hosts in network namespaces and tear them down again.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
ruff check .
ruff format --check .
mypy
exec python -m pytest "$@"
