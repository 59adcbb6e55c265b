#!/usr/bin/env bash
# Makes `docker run --privileged` (and so kind's node containers) work on machines whose
# capability bounding set lacks caps Docker grants to privileged containers (see
# /work/shared/ENVIRONMENT.md). Only acts when a privileged probe container actually fails;
# a machine with a normal Docker is left untouched.
#
# Installs the hpchub-runc OCI runtime wrapper (oci-runtime/), registers it in
# /etc/docker/daemon.json as the default runtime (kind starts its nodes itself, so
# `--runtime` per container is not an option) and makes dockerd reload its config with
# SIGHUP (runtimes and default-runtime are reloadable), so running builds are not cut off.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/versions.env"
WRAPPER=/usr/local/bin/hpchub-runc
DAEMON_JSON=/etc/docker/daemon.json
PROBE_IMAGE=hpchub/privileged-probe:1

probe_image() {
  docker image inspect "$PROBE_IMAGE" >/dev/null 2>&1 && return 0
  # A one-file image (a static no-op binary): no registry and no debootstrap needed.
  local tmp
  tmp="$(mktemp -d)"
  printf 'package main\n\nfunc main() {}\n' >"$tmp/main.go"
  (cd "$tmp" && printf 'module probe\n\ngo 1.22\n' >go.mod &&
    CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o rootfs/true .)
  tar -C "$tmp/rootfs" -c . | docker import - "$PROBE_IMAGE" >/dev/null
  rm -rf "$tmp"
}

privileged_works() {
  docker run --rm --privileged --network none "$PROBE_IMAGE" /true >/dev/null 2>&1
}

probe_image
if privileged_works; then
  echo "install-runtime: docker run --privileged works here; nothing to do"
  exit 0
fi

echo "install-runtime: docker run --privileged fails; installing $WRAPPER"
(cd "$here/oci-runtime" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags='-s -w' -o "$WRAPPER.new" . && mv -f "$WRAPPER.new" "$WRAPPER")

mkdir -p "$(dirname "$DAEMON_JSON")"
python3 - "$DAEMON_JSON" "$WRAPPER" <<'PY'
import json, os, sys
path, wrapper = sys.argv[1], sys.argv[2]
cfg = json.load(open(path)) if os.path.exists(path) and os.path.getsize(path) else {}
cfg.setdefault("runtimes", {})["hpchub"] = {"path": wrapper}
cfg["default-runtime"] = "hpchub"
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump(cfg, f, indent=2)
    f.write("\n")
os.replace(tmp, path)
PY

pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
  kill -HUP "$pid"
  for _ in $(seq 1 20); do
    docker info --format '{{.DefaultRuntime}}' 2>/dev/null | grep -qx hpchub && break
    sleep 0.5
  done
fi
if ! docker info --format '{{.DefaultRuntime}}' | grep -qx hpchub; then
  echo "install-runtime: dockerd did not pick up $DAEMON_JSON; restart dockerd (hack/start-dockerd.sh)" >&2
  exit 1
fi
if privileged_works; then
  echo "install-runtime: docker run --privileged works now (default runtime: hpchub)"
else
  echo "install-runtime: docker run --privileged still fails:" >&2
  docker run --rm --privileged --network none "$PROBE_IMAGE" /true >&2 || true
  exit 1
fi
