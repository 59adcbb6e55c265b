#!/usr/bin/env bash
# What `make up` / `make test-e2e` need, on a fresh machine too: hack/install-deps.sh up
# (Docker, debootstrap, gcc, Go, helm, kubectl, the Python packages), then a running dockerd.
# Idempotent and quick when everything is there.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
"$root/hack/install-deps.sh" up
"$root/hack/start-dockerd.sh"
