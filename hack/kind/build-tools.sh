#!/usr/bin/env bash
# Builds, from the Go module proxy only, everything besides Kubernetes that the offline kind
# path needs: kind itself, etcd, CoreDNS, kube-router (the NetworkPolicy enforcer: kindnetd's
# nftables-queue enforcement does not work on this kernel, see ENVIRONMENT.md),
# local-path-provisioner (kind's default StorageClass) and a static pause binary.
# Each result is cached under $KIND_CACHE/bin/tools/ by name and version.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/versions.env"
tools="$KIND_CACHE/bin/tools"
mkdir -p "$tools"
export GOFLAGS="-mod=mod -buildvcs=false" GOMAXPROCS="${GOMAXPROCS:-2}" CGO_ENABLED=0
p="-p ${BUILD_JOBS:-2}"

# go_install NAME VERSION PACKAGE@VERSION: for modules whose go.mod has no replace directives.
go_install() {
  local name="$1" version="$2" pkg="$3" dest="$tools/$1-$2"
  [ -x "$dest" ] && return 0
  local gobin
  gobin="$(mktemp -d)"
  echo "build-tools: $name $version"
  # shellcheck disable=SC2086
  GOBIN="$gobin" go install $p -trimpath -ldflags '-s -w' "$pkg"
  mv "$gobin"/* "$dest.tmp" && mv "$dest.tmp" "$dest"
  rmdir "$gobin"
}

go_install kind "$KIND_VERSION" "sigs.k8s.io/kind@$KIND_VERSION"
go_install coredns "$COREDNS_VERSION" "github.com/coredns/coredns@$COREDNS_VERSION"
go_install kube-router "$KUBE_ROUTER_VERSION" "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$KUBE_ROUTER_VERSION"
go_install local-path-provisioner "$LOCAL_PATH_VERSION" "github.com/rancher/local-path-provisioner@$LOCAL_PATH_VERSION"

# etcd's server module replaces its siblings with ../ paths, so `go install` refuses it;
# a wrapper module that just requires it builds it with the published siblings.
if [ ! -x "$tools/etcd-$ETCD_VERSION" ]; then
  echo "build-tools: etcd $ETCD_VERSION"
  w="$KIND_CACHE/src/etcd-$ETCD_VERSION"
  mkdir -p "$w"
  printf 'module hpchub.local/etcdbuild\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >"$w/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >"$w/tools.go"
  (cd "$w" && go mod tidy -e >/dev/null 2>&1 || true
    # shellcheck disable=SC2086
    go build $p -trimpath -ldflags '-s -w' -o "$tools/etcd-$ETCD_VERSION.tmp" go.etcd.io/etcd/server/v3)
  mv "$tools/etcd-$ETCD_VERSION.tmp" "$tools/etcd-$ETCD_VERSION"
fi

# pause: the sandbox process of every pod. Kubernetes' own is a tiny C program; this is
# the same idea (sleep until a signal, reap children), linked statically.
if [ ! -x "$tools/pause-$PAUSE_VERSION" ]; then
  echo "build-tools: pause $PAUSE_VERSION"
  src="$(mktemp -d)"
  cat >"$src/pause.c" <<'C'
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void sigdown(int signo) { (void)signo; exit(0); }
static void sigreap(int signo) { (void)signo; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction down = {.sa_handler = sigdown}, reap = {.sa_handler = sigreap, .sa_flags = SA_NOCLDSTOP};
  sigaction(SIGINT, &down, NULL);
  sigaction(SIGTERM, &down, NULL);
  sigaction(SIGCHLD, &reap, NULL);
  for (;;) pause();
}
C
  gcc -O2 -static -o "$tools/pause-$PAUSE_VERSION" "$src/pause.c"
  strip "$tools/pause-$PAUSE_VERSION"
  rm -rf "$src"
fi
echo "build-tools: done ($(ls "$tools" | tr '\n' ' '))"
