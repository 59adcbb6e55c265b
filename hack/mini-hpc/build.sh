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
login_files=("$root/config/login-node/hpchub-principals" "$root/config/login-node/hpchub-status-command"
  "$root/config/login-node/hpchub-extend-command")
steps="$("$root/hack/doc-block.py" "$root/docs/operator-guide.md" status-account-setup)"
extend_steps="$("$root/hack/doc-block.py" "$root/docs/operator-guide.md" extend-account-setup)"
# The notebook-side package (images/singleuser/hpchub-notebook), without local build outputs.
pkg="$root/images/singleuser/hpchub-notebook"
pkg_files() {
  (cd "$pkg" && find . -type f -not -path '*/node_modules/*' -not -path './lib/*' \
     -not -path '*/labextension/*' -not -path '*/__pycache__/*' -not -path './.ruff_cache/*' -not -path './.yarn/*' \
     -not -name tsconfig.tsbuildinfo | LC_ALL=C sort)
}
sum="$( (cat "$src"/* "${login_files[@]}" <(pkg_files) <(cd "$pkg" && pkg_files | xargs cat); echo "$steps"; echo "$extend_steps") | sha256sum | cut -c1-12)"
IMAGE="${MINI_HPC_IMAGE:-hpchub/mini-hpc:$sum}"
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  ctx="$(mktemp -d)"
  trap 'rm -rf "$ctx"' EXIT
  cp "$src"/* "${login_files[@]}" "$ctx/"
  echo "$steps" >"$ctx/status-account.sh"
  echo "$extend_steps" >"$ctx/extend-account.sh"
  mkdir "$ctx/hpchub-notebook"
  (cd "$pkg" && pkg_files | tar -cf - -T -) | tar -C "$ctx/hpchub-notebook" -xf -
  mkdir -p "$ctx/extra-ca"
  cp /usr/local/share/ca-certificates/*.crt "$ctx/extra-ca/" 2>/dev/null || true
  echo "mini-hpc: building $IMAGE"
  docker build -q -t "$IMAGE" "$ctx" >/dev/null
fi
docker tag "$IMAGE" hpchub/mini-hpc:latest
echo "$IMAGE"
