#!/usr/bin/env bash
# Builds the mini HPC center image (images/mini-hpc) FROM the registry-free Debian base.
# Tagged by a hash of its inputs, so an unchanged image is reused.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
"$root/hack/kind/debian-base.sh" hpchub-kind/debian:bookworm
src="$root/images/mini-hpc"
# What a site installs on its login nodes (config/login-node), installed here the same way;
# the status account exactly as the operator guide's steps say (run by the login node's
# entrypoint: hack/doc-block.py prints them from docs/operator-guide.md).
login_files=("$root/config/login-node/hpchub-principals" "$root/config/login-node/hpchub-status-command")
steps="$("$root/hack/doc-block.py" "$root/docs/operator-guide.md" status-account-setup)"
sum="$( (cat "$src"/* "${login_files[@]}"; echo "$steps") | sha256sum | cut -c1-12)"
IMAGE="${MINI_HPC_IMAGE:-hpchub/mini-hpc:$sum}"
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  ctx="$(mktemp -d)"
  trap 'rm -rf "$ctx"' EXIT
  cp "$src"/* "${login_files[@]}" "$ctx/"
  echo "$steps" >"$ctx/status-account.sh"
  mkdir -p "$ctx/extra-ca"
  cp /usr/local/share/ca-certificates/*.crt "$ctx/extra-ca/" 2>/dev/null || true
  echo "mini-hpc: building $IMAGE"
  docker build -q -t "$IMAGE" "$ctx" >/dev/null
fi
docker tag "$IMAGE" hpchub/mini-hpc:latest
echo "$IMAGE"
