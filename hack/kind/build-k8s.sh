#!/usr/bin/env bash
# Builds the Kubernetes binaries a kind node needs (kubelet, kubeadm, kubectl, the
# control-plane components, kube-proxy) plus etcd, CoreDNS and kind itself, from the Go
# module proxy only: no GitHub, no container registry (see /work/shared/ENVIRONMENT.md).
#
# k8s.io/kubernetes cannot be `go install`ed directly: its go.mod replaces every staging
# repo with ./staging/src/..., which only works inside the repo. A throw-away wrapper module
# requires k8s.io/kubernetes and replaces each staging repo with its published v0.<minor>.<patch>.
#
# Output: $KIND_CACHE/bin/<k8s version>/ ; a finished directory carries a .done stamp so a
# second run is a no-op.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
out="$KIND_CACHE/bin/$K8S_VERSION"
if [ -f "$out/.done" ]; then echo "build-k8s: cached in $out"; exit 0; fi
mkdir -p "$out"
# 2 cores: keep the compiler from oversubscribing; strip symbols to save time and space.
export GOFLAGS="-mod=mod -buildvcs=false" GOMAXPROCS="${GOMAXPROCS:-2}" CGO_ENABLED=0
ldflags="-s -w"
p="-p ${BUILD_JOBS:-2}"

wrap="$KIND_CACHE/src/k8s-$K8S_VERSION"
mkdir -p "$wrap"
staging_ver="v0.${K8S_VERSION#v1.}"
go mod download -json "k8s.io/kubernetes@$K8S_VERSION" >/dev/null
gomod="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.mod"
{
  echo "module hpchub.local/k8sbuild"
  echo
  echo "go 1.24"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  echo "replace ("
  sed -n '/^replace (/,/^)/p' "$gomod" | awk '$2=="=>" && $3 ~ /^\.\/staging/ {print "\t" $1 " => " $1 " '"$staging_ver"'"}'
  echo ")"
} >"$wrap/go.mod"
# Blank imports keep `go mod tidy` from dropping the commands we build.
cat >"$wrap/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubeadm"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
cd "$wrap"
go mod tidy -e >/dev/null 2>&1 || true
version_ldflags="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${K8S_VERSION#v1.}"
version_ldflags="$version_ldflags -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitTreeState=clean"
# kubelet needs cgo off too on Debian; everything static so it runs in any base.
# shellcheck disable=SC2086
go build $p -trimpath -ldflags "$ldflags $version_ldflags" -o "$out/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy \
  k8s.io/kubernetes/cmd/kubeadm k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubectl
touch "$out/.done"
echo "build-k8s: built $(ls "$out" | tr '\n' ' ') in $out"
