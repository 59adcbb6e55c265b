#!/usr/bin/env bash
# Installs what `make up` / `make test-e2e` need beyond a Debian machine with Go:
# a running dockerd, debootstrap, helm (via the lead's hack/install-deps.sh when missing)
# and the e2e tests' Python packages. Idempotent and quick when everything is there.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
"$root/hack/start-dockerd.sh"
missing=()
for p in debootstrap gcc libc6-dev openssh-client; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "install-tools: Go is needed (the Kubernetes binaries are built from the Go module proxy)" >&2; exit 1; }
[ -x "$root/.tools/bin/helm" ] || "$root/hack/install-deps.sh"
python3 -c 'import kubernetes, pytest, requests' 2>/dev/null ||
  python3 -m pip install -q --disable-pip-version-check -r "$root/tests/e2e/requirements.txt"
