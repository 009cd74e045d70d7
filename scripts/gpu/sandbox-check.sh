#!/usr/bin/env bash
# Run a real GPU workload (a matrix multiply checked against the CPU) under `systemd-run` with exactly the
# sandboxing of ollama.service, to show that the GPU works inside the sandbox (issue 16; docs/hardening.md).
#
#   scripts/gpu/sandbox-check.sh [--profile standard|strict] [--unit /etc/systemd/system/ollama.service]
#                                [--user NAME] [--out DIR]
#
# The properties are read from the unit itself (scripts/gpu/unit_properties.py): the role's template rendered with
# its defaults and --profile, or a deployed unit with --unit. Where the unit's user or writable paths do not exist on
# this host (ollama not deployed), the check runs as --user (default nobody) with a scratch directory instead.
# Workloads: scripts/gpu/workload.py (torch if it imports, else the CUDA driver API with a PTX kernel, i.e. the
# driver's JIT) and, when nvcc is present, matmul.cu built twice: native code and PTX only (JIT at load).
# Set PYTHON to an interpreter with torch that lives outside /home and /root (ProtectHome hides those).
#
# Exit: 0 every workload passed inside the sandbox; 1 a workload that passes outside fails inside;
#       2 no usable GPU even outside the sandbox (nothing proven); 3 setup error. Needs root and systemd as PID 1.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
profile=standard unit_file="" run_user=nobody out_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=$2; shift 2 ;;
    --unit) unit_file=$2; shift 2 ;;
    --user) run_user=$2; shift 2 ;;
    --out) out_dir=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 3 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "run as root (systemd-run of a system unit)" >&2; exit 3; }
[ -d /run/systemd/system ] || { echo "systemd is not PID 1 here" >&2; exit 3; }
helper_python=$repo/.venv/bin/python
[ -x "$helper_python" ] || helper_python=python3
python=${PYTHON:-$(command -v python3)}

work=$(mktemp -d /run/ollama-gpu-sandbox.XXXXXX)  # /run: not hidden by ProtectHome/PrivateTmp
trap 'rm -rf "$work"' EXIT
cp "$here/workload.py" "$work/"
chmod 0755 "$work"
chmod 0644 "$work/workload.py"
mkdir "$work/home"  # HOME and the writable path when the unit's own do not exist here (CUDA's JIT cache goes there)
chown "$run_user" "$work/home"
log=$work/report.txt
say() { echo "$*" | tee -a "$log"; }

source_args=(--profile "$profile")
[ -n "$unit_file" ] && source_args=(--unit "$unit_file")
mapfile -t props < <("$helper_python" "$here/unit_properties.py" "${source_args[@]}" --if-missing \
  --writable "$work/home" --user "$run_user")
[ "${#props[@]}" -gt 5 ] || { echo "could not derive the unit's properties" >&2; exit 3; }
for name in LD_LIBRARY_PATH CUDA_VISIBLE_DEVICES HIP_VISIBLE_DEVICES ROCR_VISIBLE_DEVICES; do
  [ -n "${!name:-}" ] && props+=("--setenv=$name=${!name}")
done

workloads=("$python $work/workload.py")
if command -v nvcc >/dev/null && command -v nvidia-smi >/dev/null; then
  cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
  nvcc -O2 -o "$work/matmul-native" -gencode "arch=compute_$cc,code=sm_$cc" "$here/matmul.cu"
  nvcc -O2 -o "$work/matmul-ptx-jit" -gencode "arch=compute_$cc,code=compute_$cc" "$here/matmul.cu"
  chmod 0755 "$work"/matmul-*
  workloads+=("$work/matmul-native" "$work/matmul-ptx-jit")
fi

say "# ollama GPU sandbox check: $(hostname) $(date -u +%FT%TZ), systemd $(systemctl --version | head -1 | cut -d' ' -f2)"
say "# unit: ${unit_file:-roles/ollama/templates/ollama.service.j2 (profile $profile)}"
command -v nvidia-smi >/dev/null && say "# $(nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader | head -1)"
say "# properties:"
printf '#   %s\n' "${props[@]}" | tee -a "$log"

# The sandbox itself first: systemd must accept every property, and the kernel must show the confinement.
if ! probe=$(systemd-run --quiet --wait --pipe --collect --unit "ollama-gpu-sandbox-probe-$$" "${props[@]}" \
    -- /bin/sh -c 'grep -E "^(Uid|CapEff|CapBnd|NoNewPrivs|Seccomp):" /proc/self/status
                   ls -d /dev/nvidia* /dev/dri/* /dev/kfd 2>/dev/null || echo "no GPU device nodes"' 2>&1); then
  say "the sandbox could not be set up: $probe"
  exit 3
fi
say "# inside the sandbox (probe):"
while IFS= read -r line; do say "#   $line"; done <<<"$probe"

status=0 outside_ok=0
for workload in "${workloads[@]}"; do
  # shellcheck disable=SC2086 # a workload is a command line
  if outside=$($workload 2>&1); then outside_ok=1; else
    say "outside the sandbox: $workload: $outside"
    continue
  fi
  say "outside the sandbox: $workload: $outside"
  # shellcheck disable=SC2086
  if inside=$(systemd-run --quiet --wait --pipe --collect --unit "ollama-gpu-sandbox-$$" "${props[@]}" \
      -- $workload 2>&1); then
    say "inside the sandbox:  $workload: $inside"
  else
    say "INSIDE THE SANDBOX FAILED: $workload: $inside"
    status=1
  fi
done
if [ "$outside_ok" -eq 0 ]; then
  say "RESULT: no usable GPU on this host, even outside the sandbox: nothing proven"
  status=2
elif [ "$status" -eq 0 ]; then
  say "RESULT: the GPU works under ollama.service's sandboxing"
else
  say "RESULT: the sandbox breaks GPU use (see above)"
fi
if [ -n "$out_dir" ]; then
  mkdir -p "$out_dir"
  cp "$log" "$out_dir/sandbox-check-$(hostname)-$profile-$(date -u +%Y%m%dT%H%M%SZ).txt"
fi
exit "$status"
