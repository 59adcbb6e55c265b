#!/usr/bin/env bash
# Builds the offline kind node image $NODE_IMAGE (see versions.env) the way
# `kind build node-image` does, but without any registry or GitHub download:
#   1. node base: Debian + kind's base-image files (from the sigs.k8s.io/kind Go module)
#      + Debian's containerd/runc/CNI plugins (node/Dockerfile.base);
#   2. Kubernetes binaries into /usr/bin, /kind/version, default CNI/storage manifests;
#   3. the control-plane/etcd/CoreDNS/pause/kube-router/local-path images imported into the
#      node's containerd (content only, like kind), then `docker commit`.
# Cached by tag: a second run with the same versions returns at once.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/versions.env"
if docker image inspect "$NODE_IMAGE" >/dev/null 2>&1; then
  echo "build-node-image: $NODE_IMAGE cached"
  exit 0
fi
start=$(date +%s)
"$here/debian-base.sh" hpchub-kind/debian:bookworm

kind_dir="$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
base_tag="hpchub-kind/node-base:$KIND_VERSION-$NODE_HASH"
if ! docker image inspect "$base_tag" >/dev/null 2>&1; then
  ctx="$KIND_CACHE/ctx/node-base"
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp -r "$kind_dir/images/base/files" "$ctx/kind-files"
  chmod -R u+w "$ctx"
  # Debian's containerd package ships its own config.toml: a pre-existing one stops dpkg at
  # a conffile prompt. Ours (node/containerd-config.toml) is copied after the install.
  rm -rf "$ctx/kind-files/etc/containerd"
  cp "$here/node/Dockerfile.base" "$here/node/containerd-config.toml" "$here/node/10-hpchub-ptp.conflist" "$ctx/"
  echo "build-node-image: building $base_tag"
  docker build -q -t "$base_tag" -f "$ctx/Dockerfile.base" "$ctx" >/dev/null
  rm -rf "$ctx"
fi

# `build-node-image.sh base` stops here (lets the apt-heavy part run beside the Go builds).
[ "${1:-}" = base ] && exit 0
"$here/build-k8s.sh"
"$here/build-tools.sh"
"$here/build-images.sh"

bin="$KIND_CACHE/bin/$K8S_VERSION"
images="$KIND_CACHE/images-$K8S_VERSION-hpchub1.tar"
cid="$(docker run -d --entrypoint=sleep --security-opt seccomp=unconfined "$base_tag" infinity)"
trap 'docker rm -f -v "$cid" >/dev/null 2>&1 || true' EXIT
for b in kubelet kubeadm kubectl; do
  docker cp "$bin/$b" "$cid:/usr/bin/$b"
done
docker exec "$cid" sh -c "chown root:root /usr/bin/kubelet /usr/bin/kubeadm /usr/bin/kubectl && chmod 0755 /usr/bin/kubelet /usr/bin/kubeadm /usr/bin/kubectl && mkdir -p /kind/manifests && printf '%s' '$K8S_VERSION' >/kind/version"
sed "s/KUBE_ROUTER_VERSION/$KUBE_ROUTER_VERSION/" "$here/node/kube-router.yaml" | docker exec -i "$cid" sh -c 'cat >/kind/manifests/default-cni.yaml'
# kind's own default-storage manifest, verbatim (its image names are the ones build-images.sh tags).
python3 - "$kind_dir/pkg/build/nodeimage/const_storage.go" <<'PY' | docker exec -i "$cid" sh -c 'cat >/kind/manifests/default-storage.yaml'
import re, sys
src = open(sys.argv[1]).read()
consts = dict(re.findall(r'const (\w+Image) = "([^"]+)"', src))
body = re.search(r"const defaultStorageManifest = `(.*?)\n`\n", src, re.S).group(1) + "\n"
body = re.sub(r"` \+ (\w+) \+ `", lambda m: consts[m.group(1)], body)
sys.stdout.write(body)
PY
# Check that kubeadm wants exactly the images we built (a version bump must fail here,
# not as an ImagePullBackOff inside a cluster that cannot pull).
want="$(docker exec "$cid" kubeadm config images list --kubernetes-version "$K8S_VERSION" 2>/dev/null | sort)"
have="$(tar -xOf "$images" manifest.json | python3 -c 'import json,sys; print("\n".join(t for m in json.load(sys.stdin) for t in (m.get("RepoTags") or [])))' | sort)"
missing="$(comm -23 <(echo "$want") <(echo "$have"))"
if [ -n "$missing" ]; then
  echo "build-node-image: kubeadm needs images that were not built: $missing" >&2
  exit 1
fi
docker exec "$cid" bash -c 'nohup containerd >/dev/null 2>&1 & for i in $(seq 1 30); do ctr version >/dev/null 2>&1 && exit 0; sleep 1; done; exit 1'
docker exec -i "$cid" ctr --namespace=k8s.io images import --label=io.cri-containerd.pinned=pinned \
  --all-platforms --no-unpack --digests - <"$images" >/dev/null
docker exec "$cid" ctr --namespace=k8s.io images list -q | grep -v '^sha256:' | sed 's/^/build-node-image: imported /'
docker exec "$cid" bash -c 'kill $(cat /run/containerd/containerd.pid 2>/dev/null || pidof containerd); sleep 2; rm -rf /tmp/* /var/log/*.log'
docker commit \
  --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' \
  --change 'ENV HTTP_PROXY="" HTTPS_PROXY="" NO_PROXY=""' \
  "$cid" "$NODE_IMAGE" >/dev/null
echo "build-node-image: $NODE_IMAGE built in $(($(date +%s) - start))s ($(docker image inspect -f '{{.Size}}' "$NODE_IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
