#!/bin/sh
# Run the benchmarks from anywhere: benchmarks/run.sh [--reps N] [--deploy] ... (see --help)
set -eu
cd "$(dirname "$0")/.."
BENCHMARKS_COMMAND="benchmarks/run.sh${*:+ $*}" PYTHONPATH="$PWD:$PWD/scripts:$PWD/src${PYTHONPATH:+:$PYTHONPATH}" exec .venv/bin/python -m benchmarks "$@"
