#!/usr/bin/env bash
# helm upgrade --install of the chart on the kind cluster with the dev + kind values and
# the keys make up keeps in $HPCHUB_STATE. Used by up.sh and by the e2e tests (which
# reinstall after their `helm uninstall` test). Extra arguments go to helm (e.g. --set).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
source "$root/hack/kind/state.env"
# The chart's appVersion (chart/hpchub/Chart.yaml) unless the caller built another tag.
HPCHUB_TAG="${HPCHUB_TAG:-$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$root/chart/hpchub/Chart.yaml")}"
HELM="${HELM:-$root/.tools/bin/helm}"
export KUBECONFIG="${KUBECONFIG:-$KUBECONFIG_PATH}"
# The mini HPC center's network (hpcNetwork.cidrs: SSH to hpc-login, connect-back from it)
# is the kind Docker network, whose subnet Docker picks when the cluster is created:
# 172.18.0.0/16 on a fresh machine, the next free one when another network held it then.
# The NetworkPolicies must name the real one (values-dev.yaml has a placeholder).
net="${KIND_NETWORK:-kind}"
cidr="$(docker network inspect -f '{{range .IPAM.Config}}{{println .Subnet}}{{end}}' "$net" | grep -m1 -E '^[0-9.]+/[0-9]+$')"
# The hub's SSH connections leave the kind node masqueraded to the node's own address on
# that network (the ptp CNI's ipMasq): the one source address its certificates may carry
# (sshCA.sourceAddresses).
node_ip="$(docker inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" "$CLUSTER_NAME-control-plane")"
[ -n "$node_ip" ] || { echo "helm-install: no address of $CLUSTER_NAME-control-plane on network $net" >&2; exit 1; }
exec "$HELM" upgrade --install "$HPCHUB_RELEASE" "$root/chart/hpchub" \
  --namespace "$HPCHUB_NAMESPACE" --create-namespace \
  -f "$root/config/values-dev.yaml" -f "$root/config/values-kind.yaml" \
  --set "hub.image.tag=$HPCHUB_TAG" --set "proxy.image.tag=$HPCHUB_TAG" --set "spin.image.tag=$HPCHUB_TAG" \
  --set "hpcNetwork.cidrs={$cidr}" --set "sshCA.sourceAddresses={$node_ip/32}" \
  --set-file "sshCA.privateKey=$HPCHUB_STATE/ssh-ca/ca" \
  --set-file "systems.mini.ssh.knownHosts=$HPCHUB_STATE/known_hosts" \
  --wait --timeout 10m "$@"
