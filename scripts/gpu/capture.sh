#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: record nvidia-smi's outputs in the layout of tests/fixtures/nvidia-smi/<name>/
# and prove the GPU works under ollama.service's sandbox: sandbox-check.sh where systemd is PID 1, else
# confined_workload.py (the parts of the sandbox the kernel applies without systemd), with and without MDWE.
#
#   scripts/gpu/capture.sh OUT_DIR [FIXTURE_NAME]
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:?usage: capture.sh OUT_DIR [FIXTURE_NAME]}
name=${2:-captured}
mkdir -p "$out/$name"
nvidia-smi -q -x >"$out/$name/q-x.xml"
nvidia-smi -L >"$out/$name/L.txt"
nvidia-smi --query-gpu=index,uuid,compute_cap --format=csv,noheader >"$out/$name/query-gpu.csv"
{
  echo "# $(date -u +%FT%TZ) $(uname -r)"
  nvidia-smi
  echo "# device nodes"; ls -l /dev/nvidia* /dev/dri 2>&1
  ls -lR /dev/nvidia-caps 2>&1
  echo "# /proc/devices"; cat /proc/devices
  echo "# PID 1: $(cat /proc/1/comm)"
} >"$out/$name/machine.txt" 2>&1
python=${PYTHON:-python3}
if [ -d /run/systemd/system ]; then
  for profile in standard strict; do
    "$here/sandbox-check.sh" --profile "$profile" --out "$out" >"$out/sandbox-$profile.txt" 2>&1
    echo "sandbox-check $profile: exit $?" | tee -a "$out/summary.txt"
  done
else
  echo "systemd is not PID 1 ($(cat /proc/1/comm)): confined_workload.py instead of sandbox-check.sh" \
    | tee -a "$out/summary.txt"
  work=$(mktemp -d /tmp/gpu-confined.XXXXXX)
  cp "$here/workload.py" "$here/confined_workload.py" "$work/"
  chmod -R a+rX "$work"
  for mode in "" --mdwe; do
    HOME=$work "$python" "$work/confined_workload.py" --user nobody $mode >"$out/confined${mode:-}.json" 2>&1
    echo "confined_workload ${mode:-(no mdwe)}: exit $?" | tee -a "$out/summary.txt"
  done
  "$python" "$here/workload.py" >"$out/unconfined.json" 2>&1
  echo "unconfined workload: exit $?" | tee -a "$out/summary.txt"
fi
