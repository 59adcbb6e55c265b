#!/usr/bin/env bash
# Imports a Debian bookworm minbase root filesystem as a Docker image, the FROM of every
# image the offline kind path builds (node base, control-plane images, mini HPC center).
# No container registry is reachable here, so debootstrap + `docker import` it is.
# Usage: debian-base.sh [image]; no-op when the image exists.
set -euo pipefail
IMAGE="${1:-hpchub-kind/debian:bookworm}"
if docker image inspect "$IMAGE" >/dev/null 2>&1; then exit 0; fi
command -v debootstrap >/dev/null || {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}
root="$(mktemp -d /var/tmp/hpchub-debootstrap.XXXXXX)"
trap 'rm -rf "$root"' EXIT
echo "debian-base: debootstrap bookworm -> $IMAGE"
debootstrap --variant=minbase bookworm "$root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >/dev/null
# Smaller, reproducible-ish: drop apt lists and caches; images run apt-get update first.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' - "$IMAGE" >/dev/null
echo "debian-base: $IMAGE ready"
