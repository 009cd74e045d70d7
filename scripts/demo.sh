#!/usr/bin/env bash
# The main job on built-in defaults, end to end on this machine (as root):
#   1. set up (Debian packages + .venv),
#   2. start the test bed: local mirrors of GitHub releases / registry.ollama.ai and N systemd hosts,
#   3. `bundle build bundles/demo.yaml` from those mirrors, then `bundle verify` and `bundle inspect`,
#   4. `ansible-playbook site.yml` to the hosts, twice (the second run must report changed=0),
#   5. the testinfra suite against the hosts,
# and tear everything down again. DEMO_HOSTS=N picks the number of hosts (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"

work=$(mktemp -d /var/tmp/ollama-airgap-demo.XXXXXX)
cleanup() { airgap-testbed down || true; rm -rf "$work"; }
trap cleanup EXIT

step() { printf '\n=== %s\n' "$*"; }

step "test bed: mirrors and ${DEMO_HOSTS:-2} systemd hosts"
airgap-testbed up --hosts "${DEMO_HOSTS:-2}" > "$work/testbed.json"
inventory=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["inventory"])' "$work/testbed.json")
mapfile -t mirrors < <(python -c 'import json,sys; [print(f"--mirror={m}") for m in json.load(open(sys.argv[1]))["mirrors"]]' "$work/testbed.json")

# bundles/demo.yaml plus the test bed's Open WebUI stand-in image (pushed to the local registry by `up`).
python - "$work/testbed.json" "$work/demo.yaml" <<'PY'
import json, sys, yaml
state = json.load(open(sys.argv[1]))
spec = yaml.safe_load(open("bundles/demo.yaml"))
spec["images"] = [state["webui_image"]]
yaml.safe_dump(spec, open(sys.argv[2], "w"))
PY

step "bundle build bundles/demo.yaml + Open WebUI image (${mirrors[*]})"
bundle build "$work/demo.yaml" -o "$work/demo.tar" --cache "$work/cache" "${mirrors[@]}"
bundle verify "$work/demo.tar"
bundle inspect "$work/demo.tar"

step "ansible-playbook site.yml"
printf 'bundle_src: %s\n' "$work/demo.tar" > "$work/vars.yml"
ansible-playbook -i "$inventory" site.yml -e "@$work/vars.yml"

step "ansible-playbook site.yml again: nothing changes, nothing is re-sent"
ansible-playbook -i "$inventory" site.yml -e "@$work/vars.yml" | tee "$work/second.log"
if grep -E 'changed=[1-9]' "$work/second.log"; then
    echo "demo: the second run changed something" >&2
    exit 1
fi

step "testinfra suite"
python -m pytest tests/infra -q --hosts=ansible://ollama_hosts --ansible-inventory="$inventory" \
    --ansible-extra-vars="$work/vars.yml"
step "demo: done"
