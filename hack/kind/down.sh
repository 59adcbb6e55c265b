#!/usr/bin/env bash
# `make down`: removes the kind cluster and the mini HPC center. Keeps the caches (node
# image, Go builds) and $HPCHUB_STATE/{ssh-ca,ssh-host} so the next `make up` is warm;
# PURGE=1 also deletes the state directory (homes included).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
source "$root/hack/kind/versions.env"
source "$root/hack/kind/state.env"
"$root/hack/kind/cluster.sh" delete
"$root/hack/mini-hpc/down.sh"
if [ "${PURGE:-0}" = 1 ]; then rm -rf "$HPCHUB_STATE"; fi
echo "down: done"
