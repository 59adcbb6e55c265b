#!/usr/bin/env bash
# Starts the mini HPC center as containers on kind's Docker network (idempotent):
#   hpc-ctl (slurmctld), hpc-c1 + hpc-c2 (slurmd), hpc-login (sshd + Slurm client).
# All share $HPCHUB_STATE/home as /home (the kind node mounts it too, for Spin). The SSH
# user CA key pair and the login node's host key are made once in $HPCHUB_STATE so
# re-runs and restarts keep them (the chart gets them with --set-file).
# Usage: up.sh [kind-node-ip]   (resolved from the cluster when omitted)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
source "$root/hack/kind/versions.env"
source "$root/hack/kind/state.env"
NET="${KIND_NETWORK:-kind}"
source "$root/hack/mini-hpc/containers.sh"
# Before anything is built, started or removed: these names must be free or ours.
mini_hpc_claim hpc-ctl hpc-c1 hpc-c2 hpc-login
node_ip="${1:-$(docker inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$CLUSTER_NAME-control-plane")}"
image="$("$root/hack/mini-hpc/build.sh" | tail -n1)"

mkdir -p "$HPCHUB_STATE/home" "$HPCHUB_STATE/ssh-ca" "$HPCHUB_STATE/ssh-host"
[ -f "$HPCHUB_STATE/ssh-ca/ca" ] || ssh-keygen -q -t ed25519 -N '' -C hpchub-kind-ca -f "$HPCHUB_STATE/ssh-ca/ca"
[ -f "$HPCHUB_STATE/ssh-host/ssh_host_ed25519_key" ] ||
  ssh-keygen -q -t ed25519 -N '' -C hpc-login -f "$HPCHUB_STATE/ssh-host/ssh_host_ed25519_key"
echo "hpc-login $(cut -d' ' -f1,2 "$HPCHUB_STATE/ssh-host/ssh_host_ed25519_key.pub")" >"$HPCHUB_STATE/known_hosts"

# start NAME ROLE [extra docker args...]: (re)creates the container when it is missing,
# stopped, or from another image (hack/mini-hpc/containers.sh: only ours).
start() {
  local name="$1" role="$2"
  shift 2
  mini_hpc_start "$name" "$image" "$NET" --add-host "hpchub-dev.local:$node_ip" \
    -v "$HPCHUB_STATE/home:/home" "$@" -- "$role"
}
start hpc-ctl ctl
start hpc-c1 compute
start hpc-c2 compute
start hpc-login login \
  -v "$HPCHUB_STATE/ssh-host:/etc/ssh/host:ro" \
  -v "$HPCHUB_STATE/ssh-ca/ca.pub:/etc/ssh/hpchub_ca.pub:ro"

# Ready when sshd answers and both compute nodes are idle in Slurm.
for _ in $(seq 1 60); do
  if docker exec hpc-login sh -c 'sinfo -h -N -o "%N %t" 2>/dev/null' | grep -cE '^hpc-c[12] idle' | grep -qx 2 &&
    docker exec hpc-login sh -c 'ssh-keyscan -T 2 -p 22 localhost >/dev/null 2>&1'; then
    echo "mini-hpc: ready (login hpc-login, Slurm nodes hpc-c1 hpc-c2 idle)"
    exit 0
  fi
  sleep 2
done
echo "mini-hpc: not ready after 120 s; sinfo says:" >&2
docker exec hpc-login sinfo -N >&2 || true
docker logs --tail 20 hpc-ctl >&2 || true
exit 1
