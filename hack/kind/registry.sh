#!/usr/bin/env bash
# A container registry for tests, built like the rest of the offline kind path: the
# `registry` of github.com/distribution/distribution (CNCF Distribution, what most site
# registries run or build on) from the Go module proxy, static, in an image FROM scratch.
#   registry.sh start NAME PORT   (re)starts container NAME on kind's Docker network,
#                                 published on 127.0.0.1:PORT (Docker pushes to
#                                 localhost:PORT without TLS); prints the image
#   registry.sh stop NAME         removes it (and its storage)
# The binary is cached under $KIND_CACHE/bin/tools like build-tools.sh's.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/versions.env"
DISTRIBUTION_VERSION="${DISTRIBUTION_VERSION:-v3.0.0}"
IMAGE="hpchub-kind/registry:$DISTRIBUTION_VERSION"
NET="${KIND_NETWORK:-kind}"

build() {
  local bin="$KIND_CACHE/bin/tools/registry-$DISTRIBUTION_VERSION"
  if [ ! -x "$bin" ]; then
    echo "registry: building distribution $DISTRIBUTION_VERSION from the Go module proxy" >&2
    mkdir -p "$(dirname "$bin")"
    local gobin
    gobin="$(mktemp -d)"
    GOBIN="$gobin" GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 \
      go install -p "${BUILD_JOBS:-2}" -trimpath -ldflags '-s -w' \
      "github.com/distribution/distribution/v3/cmd/registry@$DISTRIBUTION_VERSION"
    mv "$gobin/registry" "$bin.tmp" && mv "$bin.tmp" "$bin"
    rmdir "$gobin"
  fi
  if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    local ctx
    ctx="$(mktemp -d)"
    cp "$bin" "$ctx/registry"
    cat >"$ctx/config.yml" <<'YAML'
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
YAML
    printf 'FROM scratch\nCOPY registry /registry\nCOPY config.yml /etc/distribution/config.yml\nEXPOSE 5000\nENTRYPOINT ["/registry", "serve", "/etc/distribution/config.yml"]\n' >"$ctx/Dockerfile"
    docker build -q -t "$IMAGE" "$ctx" >/dev/null
    rm -rf "$ctx"
  fi
}

case "${1:-}" in
  start)
    name="$2" port="$3"
    build
    # Only ever replaces a registry this script started.
    if docker container inspect "$name" >/dev/null 2>&1; then
      [ "$(docker container inspect -f '{{index .Config.Labels "hpchub.test-registry"}}' "$name")" = 1 ] ||
        { echo "registry: a container named $name exists that this script did not start" >&2; exit 1; }
      docker rm -f -v "$name" >/dev/null
    fi
    docker network inspect "$NET" >/dev/null 2>&1 || docker network create "$NET" >/dev/null
    docker run -d --name "$name" --network "$NET" -p "127.0.0.1:$port:5000" \
      --label hpchub.test-registry=1 "$IMAGE" >/dev/null
    for _ in $(seq 1 30); do
      curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && { echo "$IMAGE"; exit 0; }
      sleep 1
    done
    echo "registry: $name does not answer on 127.0.0.1:$port" >&2
    docker logs --tail 20 "$name" >&2 || true
    exit 1
    ;;
  stop)
    if [ "$(docker container inspect -f '{{index .Config.Labels "hpchub.test-registry"}}' "$2" 2>/dev/null)" = 1 ]; then
      docker rm -f -v "$2" >/dev/null
    fi
    ;;
  *)
    echo "usage: $0 start NAME PORT | stop NAME" >&2
    exit 2
    ;;
esac
