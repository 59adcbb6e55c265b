#!/usr/bin/env bash
# CI's end-to-end stage: `make up`, `make test-e2e`, `make down`, with timings. Meant to be
# called from .ci/run after `make test`. The cold path (empty caches: Go builds, node image,
# project images) takes well under CI's 90 minutes on a 2-core machine; if the remaining
# budget (HPCHUB_CI_E2E_BUDGET_MIN, default 60) is below what a cold run needs
# (HPCHUB_CI_E2E_COLD_MIN, default 25), the stage is skipped with a message saying so.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
source hack/kind/versions.env
budget="${HPCHUB_CI_E2E_BUDGET_MIN:-60}"
need="${HPCHUB_CI_E2E_COLD_MIN:-25}"
if ! docker image inspect "$NODE_IMAGE" >/dev/null 2>&1 && ((budget < need)); then
  echo "ci-e2e: SKIPPED make up / make test-e2e: the kind node image $NODE_IMAGE is not cached and a cold"
  echo "ci-e2e: build needs ~${need} min, more than the ${budget} min left in CI's budget."
  exit 0
fi
t0=$(date +%s)
rc=0
make up || rc=$?
t1=$(date +%s)
if ((rc == 0)); then make test-e2e || rc=$?; fi
t2=$(date +%s)
make down || true
echo "ci-e2e: make up $((t1 - t0)) s, make test-e2e $((t2 - t1)) s, exit $rc"
exit "$rc"
