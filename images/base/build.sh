#!/usr/bin/env bash
# Builds the Debian base image the project's images start FROM when no container registry
# is reachable: debootstrap (minbase) from Debian's package mirror, then `docker import`.
# Where a registry exists, pass BASE_IMAGE=debian:bookworm-slim to `make images` instead.
# Cached: an existing image of the same tag is reused.
set -euo pipefail
image="${1:-hpchub/debian-base:bookworm}"
suite="${DEBIAN_SUITE:-bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "base: $image exists, reusing it"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "base: debootstrap missing (hack/install-deps.sh installs it)" >&2; exit 1; }
root="$(mktemp -d /var/tmp/hpchub-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase "$suite" "$root" "$mirror" >/dev/null
# Keep images small and apt non-interactive, as the official slim images do.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
printf 'APT::Install-Recommends "0";\nAPT::Install-Suggests "0";\n' >"$root/etc/apt/apt.conf.d/99hpchub-norecommends"
tar -C "$root" -c . | docker import \
  --change 'ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
echo "base: built $image"
