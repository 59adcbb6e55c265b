#!/usr/bin/env bash
# CI's end-to-end stage: `make up`, `make test-e2e` (the images' smoke tests and the e2e
# tests), `make test-existing-cluster`, `make down`, with timings. It always runs: a cold
# machine builds the kind node image (~8 min on 2 cores), the images (~4 min) and the
# mini HPC center (~2 min), which .ci/run's budget includes. Any failure fails CI.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
t0=$(date +%s)
rc=0
make up || rc=$?
t1=$(date +%s)
if ((rc == 0)); then make test-e2e || rc=$?; fi
t2=$(date +%s)
# The README's install on an existing cluster: a second kind cluster from the same node
# image and a local registry (~2 min warm, plus the registry's build on a cold machine).
if ((rc == 0)); then make test-existing-cluster || rc=$?; fi
t3=$(date +%s)
make down || true
echo "ci-e2e: make up $((t1 - t0)) s, make test-e2e $((t2 - t1)) s, make test-existing-cluster $((t3 - t2)) s, exit $rc"
exit "$rc"
