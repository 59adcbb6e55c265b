#!/usr/bin/env bash
# Creates (idempotently) or deletes the hpchub kind cluster.
#   cluster.sh create | delete | kubeconfig
# One control-plane node from the offline node image (build-node-image.sh), the shared home
# directory of the mini HPC center mounted at /var/hpchub/home (Spin mounts it by hostPath),
# and the proxy's NodePort (30080) published on 127.0.0.1:$HPCHUB_HTTP_PORT only (default
# 30080; another port where that one is taken, fixed when the cluster is created). The kubeconfig is written to
# $HPCHUB_STATE/kubeconfig, never over ~/.kube/config.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/versions.env"
source "$here/state.env"
KIND="$KIND_CACHE/bin/tools/kind-$KIND_VERSION"
cmd="${1:-create}"

case "$cmd" in
  create)
    mkdir -p "$HPCHUB_STATE/home"
    if "$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
      echo "cluster: kind cluster $CLUSTER_NAME exists"
      # After a dockerd or machine restart the node container may be stopped.
      if [ "$(docker inspect -f '{{.State.Running}}' "$CLUSTER_NAME-control-plane")" != true ]; then
        docker start "$CLUSTER_NAME-control-plane" >/dev/null
      fi
      "$KIND" get kubeconfig --name "$CLUSTER_NAME" >"$KUBECONFIG_PATH"
      published="$(docker port "$CLUSTER_NAME-control-plane" 30080/tcp | head -n1)"
      if [ "$published" != "127.0.0.1:$HPCHUB_HTTP_PORT" ]; then
        echo "cluster: $CLUSTER_NAME publishes the console on $published; HPCHUB_HTTP_PORT=$HPCHUB_HTTP_PORT applies when a cluster is created (make down, then make up)" >&2
      fi
      for _ in $(seq 1 90); do
        KUBECONFIG="$KUBECONFIG_PATH" kubectl get --raw /readyz >/dev/null 2>&1 && exit 0
        sleep 2
      done
      echo "cluster: API server of $CLUSTER_NAME not ready after 180 s" >&2
      exit 1
    fi
    cfg="$HPCHUB_STATE/kind-config.yaml"
    cat >"$cfg" <<YAML
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: $CLUSTER_NAME
networking:
  # The node image's static ptp CNI config uses 10.244.0.0/24 (single node).
  podSubnet: 10.244.0.0/16
  kubeProxyMode: iptables
nodes:
  - role: control-plane
    image: $NODE_IMAGE
    extraMounts:
      - hostPath: $HPCHUB_STATE/home
        containerPath: /var/hpchub/home
    extraPortMappings:
      - containerPort: 30080
        hostPort: $HPCHUB_HTTP_PORT
        listenAddress: 127.0.0.1
YAML
    KIND_EXPERIMENTAL_PROVIDER=docker "$KIND" create cluster --name "$CLUSTER_NAME" \
      --config "$cfg" --kubeconfig "$KUBECONFIG_PATH" --wait 5m
    ;;
  delete)
    if [ -x "$KIND" ] && "$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
      "$KIND" delete cluster --name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG_PATH"
    fi
    rm -f "$KUBECONFIG_PATH"
    ;;
  kubeconfig)
    echo "$KUBECONFIG_PATH"
    ;;
  *)
    echo "usage: $0 create|delete|kubeconfig" >&2
    exit 2
    ;;
esac
