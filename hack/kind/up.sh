#!/usr/bin/env bash
# `make up`: a local kind cluster, the project's images loaded, the mini HPC center
# started beside it, the chart installed with config/values-dev.yaml + values-kind.yaml.
# Idempotent: every step reuses what is already there. Prints the URL and a test login.
# Expects the project images (hpchub/{hub,proxy,singleuser}:$HPCHUB_TAG) to exist: kind.mk
# runs `make images` first.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/hack/kind"
source "$here/versions.env"
source "$here/state.env"
# The chart's appVersion (chart/hpchub/Chart.yaml) unless the caller built another tag.
HPCHUB_TAG="${HPCHUB_TAG:-$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$root/chart/hpchub/Chart.yaml")}"
KIND="$KIND_CACHE/bin/tools/kind-$KIND_VERSION"
export KUBECONFIG="$KUBECONFIG_PATH"
t0=$(date +%s)
step() { echo "== up: $* ($(($(date +%s) - t0))s)"; }

step "OCI runtime wrapper (only where docker run --privileged fails)"
"$here/install-runtime.sh"
step "kind node image $NODE_IMAGE"
"$here/build-node-image.sh" 2> >(grep -v -E 'DEPRECATED|buildx|docs.docker|^\s*$' >&2)
step "kind cluster $CLUSTER_NAME"
"$here/cluster.sh" create
node_ip="$(docker inspect -f '{{(index .NetworkSettings.Networks "kind").IPAddress}}' "$CLUSTER_NAME-control-plane")"
"$here/coredns-hosts.sh" hpchub-dev.local "$node_ip"
step "load images"
for img in hub proxy singleuser; do
  "$KIND" load docker-image --name "$CLUSTER_NAME" "hpchub/$img:$HPCHUB_TAG" 2>&1 | grep -v '^$' || true
done
step "mini HPC center"
"$root/hack/mini-hpc/up.sh" "$node_ip"
step "helm upgrade --install $HPCHUB_RELEASE"
"$here/helm-install.sh"
# Same tag, new build (the dev loop): restart what runs the old image, as kind load does
# not touch running pods.
ids="$(for img in hub proxy singleuser; do docker image inspect -f '{{.Id}}' "hpchub/$img:$HPCHUB_TAG"; done)"
if [ -f "$HPCHUB_STATE/loaded-images" ] && [ "$ids" != "$(cat "$HPCHUB_STATE/loaded-images")" ]; then
  step "images changed since the last make up: restarting hub and proxy"
  kubectl -n "$HPCHUB_NAMESPACE" rollout restart deployment -l app.kubernetes.io/instance="$HPCHUB_RELEASE"
  kubectl -n "$HPCHUB_NAMESPACE" rollout status deployment -l app.kubernetes.io/instance="$HPCHUB_RELEASE" --timeout=5m
fi
echo "$ids" >"$HPCHUB_STATE/loaded-images"
step "wait for every running pod in $HPCHUB_NAMESPACE to be Ready"
# A Job's pod that finished (an uninstall hook's, kept when helm was stopped mid-uninstall)
# is never Ready: waiting for it would fail make up on a healthy release.
kubectl -n "$HPCHUB_NAMESPACE" wait --for=condition=Ready pod --all \
  --field-selector=status.phase!=Succeeded --timeout=5m
# The port the node publishes the proxy's NodePort on, as the cluster was created with it
# (HPCHUB_HTTP_PORT then; a later value applies only to a new cluster).
url="http://$(docker port "$CLUSTER_NAME-control-plane" 30080/tcp | head -n1)/"
for _ in $(seq 1 60); do
  curl -fsS -o /dev/null "${url}hub/api" && break
  sleep 2
done
curl -fsS "${url}hub/api" >/dev/null
step "done"
cat <<MSG

  hpchub is up:   $url
  test login:     alice / hpchub-dev   (also bob; uid 1000/1001 on the mini HPC center)
  kubectl:        export KUBECONFIG=$KUBECONFIG_PATH
  mini HPC:       docker exec -it -u alice hpc-login bash   (sinfo, squeue, sbatch)
  tests:          make test-e2e        tear down: make down

MSG
