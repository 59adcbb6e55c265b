#!/usr/bin/env bash
# Builds the container images a kind node needs before any pod can start — the
# control-plane images kubeadm asks for, etcd, CoreDNS, pause — plus the default CNI
# (kube-router, policy only) and default storage (local-path-provisioner) images, all from
# the binaries build-k8s.sh / build-tools.sh made and the Debian base. Tags are exactly the
# names kubeadm and kind's manifests use, so nothing is ever pulled.
# Output: one `docker save` archive, $KIND_CACHE/images-<K8S_VERSION>.tar (cached).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/versions.env"
out="$KIND_CACHE/images-$K8S_VERSION-hpchub1.tar"
if [ -s "$out" ]; then echo "build-images: cached $out"; exit 0; fi
bin="$KIND_CACHE/bin/$K8S_VERSION"
tools="$KIND_CACHE/bin/tools"
ctx="$KIND_CACHE/ctx/images"
rm -rf "$ctx" && mkdir -p "$ctx"

"$here/debian-base.sh" hpchub-kind/debian:bookworm
# Network tools base for kube-proxy and kube-router (iptables/ipset/conntrack); the others
# are static binaries and use it too, so containerd stores the shared layers only once.
cat >"$ctx/Dockerfile.netbase" <<'DF'
FROM hpchub-kind/debian:bookworm
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      iptables ipset conntrack kmod nftables ca-certificates >/dev/null \
    && rm -rf /var/lib/apt/lists/*
DF
docker build -q -t hpchub-kind/netbase:bookworm -f "$ctx/Dockerfile.netbase" "$ctx" >/dev/null

# image TAG BINARY [ENTRYPOINT-JSON]
build() {
  local tag="$1" binary="$2" entry="${3:-}" d
  d="$(mktemp -d "$ctx/b.XXXX")"
  cp "$binary" "$d/bin"
  {
    echo "FROM hpchub-kind/netbase:bookworm"
    echo "COPY bin /usr/local/bin/$(basename "$tag" | cut -d: -f1)"
    [ -n "$entry" ] && echo "ENTRYPOINT $entry"
  } >"$d/Dockerfile"
  docker build -q -t "$tag" "$d" >/dev/null
  echo "build-images: $tag"
}
k="registry.k8s.io"
for c in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
  build "$k/$c:$K8S_VERSION" "$bin/$c"
done
build "$k/etcd:$ETCD_IMAGE_TAG" "$tools/etcd-$ETCD_VERSION"
# CoreDNS's upstream image runs /coredns as its entrypoint; kubeadm passes only args.
build "$k/coredns/coredns:$COREDNS_VERSION" "$tools/coredns-$COREDNS_VERSION" '["/usr/local/bin/coredns"]'
build "hpchub-kind/kube-router:$KUBE_ROUTER_VERSION" "$tools/kube-router-$KUBE_ROUTER_VERSION" '["/usr/local/bin/kube-router"]'
# kind's storage manifest names these two images; reuse the names so the manifest stays kind's.
build "docker.io/kindest/local-path-provisioner:v20250214-acbabc1a" "$tools/local-path-provisioner-$LOCAL_PATH_VERSION"
docker tag hpchub-kind/debian:bookworm docker.io/kindest/local-path-helper:v20241212-8ac705d0

# pause: a single static binary, nothing else.
d="$(mktemp -d "$ctx/b.XXXX")"
cp "$tools/pause-$PAUSE_VERSION" "$d/pause"
printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$d/Dockerfile"
docker build -q -t "$k/pause:$PAUSE_VERSION" "$d" >/dev/null
echo "build-images: $k/pause:$PAUSE_VERSION"

docker save -o "$out.tmp" \
  "$k/kube-apiserver:$K8S_VERSION" "$k/kube-controller-manager:$K8S_VERSION" \
  "$k/kube-scheduler:$K8S_VERSION" "$k/kube-proxy:$K8S_VERSION" \
  "$k/etcd:$ETCD_IMAGE_TAG" "$k/coredns/coredns:$COREDNS_VERSION" "$k/pause:$PAUSE_VERSION" \
  "hpchub-kind/kube-router:$KUBE_ROUTER_VERSION" \
  "docker.io/kindest/local-path-provisioner:v20250214-acbabc1a" \
  "docker.io/kindest/local-path-helper:v20241212-8ac705d0"
mv "$out.tmp" "$out"
rm -rf "$ctx"
echo "build-images: $out ($(du -h "$out" | cut -f1))"
