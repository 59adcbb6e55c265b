#!/usr/bin/env bash
# `make test-fresh-debian`: the README's set-up on a fresh Debian 12 with no pyenv, in a
# container of the locally built Debian base (images/base/build.sh; no registry): this
# tree copied in, `make` installed as the README says, and Debian's own Go (1.19, older
# than Kubernetes 1.34 needs) installed to show it is not used. Then, as root:
#   make test                  the whole install path (apt, helm, the venv), then the tests
#                              in FRESH_TESTS (default: a unit file and one integration test
#                              with real sshd, Slurm, hub and proxy)
#   hack/install-deps.sh all   .ci/run's install stage (Docker, debootstrap, Go, ...)
#   a build that needs Go 1.24: refused by Debian's Go, done by the Go hack/install-go.sh
#                              put first on make's PATH
# Needs Docker (run it under the kind lock on shared machines). FRESH_SRC: another tree to
# copy (e.g. an older checkout, to see it fail). The container is removed afterwards.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
src="${FRESH_SRC:-$root}"
BASE="${FRESH_BASE:-hpchub/debian-base:bookworm}"
TESTS="${FRESH_TESTS:-tests/unit/test_grid.py tests/integration/test_uninstall.py::test_uninstall_hook_stops_every_server_and_leaves_no_process_or_job}"
"$root/images/base/build.sh" "$BASE"
name="hpchub-fresh-debian-$$"
trap 'docker rm -f "$name" >/dev/null 2>&1 || true' EXIT
# The machine's own TLS settings come along (a TLS-inspecting egress proxy's CA, and the
# variables that point pip, npm and requests at the system's bundle), as on this host.
env_args=()
for v in PIP_CERT REQUESTS_CA_BUNDLE NODE_EXTRA_CA_CERTS SSL_CERT_FILE CURL_CA_BUNDLE GIT_SSL_CAINFO; do
  [ -z "${!v:-}" ] || env_args+=(-e "$v=${!v}")
done
# --privileged: root on the project's machines holds every capability (the tests read
# other users' /proc/<pid>/environ, which needs CAP_SYS_PTRACE); a container's root does not.
docker run -d --privileged --name "$name" --hostname fresh-debian "${env_args[@]}" "$BASE" sleep infinity >/dev/null
docker exec "$name" mkdir -p /usr/local/share/ca-certificates
for crt in /usr/local/share/ca-certificates/*.crt; do
  [ -e "$crt" ] && docker cp "$crt" "$name:/usr/local/share/ca-certificates/"
done
# The tree as it is on disk, without git data, tools, caches or build output.
tar -C "$src" --exclude-vcs --exclude=./.tools --exclude=__pycache__ --exclude=.pytest_cache \
  --exclude=.ruff_cache --exclude=node_modules --exclude=./tests/artifacts -c . |
  docker exec -i "$name" sh -c 'mkdir -p /src && tar -x -C /src'
t0=$(date +%s)
step() { echo "== fresh-debian: $* ($(($(date +%s) - t0)) s)"; }
in_c() { docker exec -w /src "$name" bash -c "$1"; }

step "the machine: $(in_c '. /etc/os-release; echo "$PRETTY_NAME"'); python3: $(in_c 'command -v python3 || echo none'); pyenv: $(in_c 'command -v pyenv || echo none')"
step "the README's first step on a bare Debian: apt-get install make; plus Debian's golang-go"
in_c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends make golang-go >/dev/null && /usr/bin/go version'
step "make test PYTEST_ADDOPTS='$TESTS'"
in_c "make test PYTEST_ADDOPTS='-p no:cacheprovider $TESTS'"
step "Go: a module that needs Go 1.24 (range over an int), first with Debian's Go 1.19"
in_c 'mkdir -p /tmp/gocheck && cd /tmp/gocheck &&
  printf "module gocheck\n\ngo 1.24\n" >go.mod &&
  printf "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfor i := range 3 {\n\t\tfmt.Print(i)\n\t}\n\tfmt.Println()\n}\n" >main.go &&
  if /usr/bin/go run . 2>&1; then echo "Debian'"'"'s Go built it: this check proves nothing" >&2; exit 1; fi'
step ".ci/run's install stage (hack/install-deps.sh all: Docker, debootstrap, Go, ...), then the same build with the Go first on make's PATH (.tools/bin)"
in_c 'hack/install-deps.sh all && export PATH=/src/.tools/bin:$PATH && cd /tmp/gocheck &&
  echo "go on make'"'"'s PATH: $(go version)" && go run .'
step "done"
