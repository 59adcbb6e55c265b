# Sourced by hack/mini-hpc/up.sh: the mini HPC center's containers, and only those.
# Every container up.sh creates carries the label hpchub.mini-hpc=1; a container of the
# same name without it is someone else's (another project's hpc-login, a container kept
# for debugging) and is never removed or replaced.

MINI_HPC_LABEL="hpchub.mini-hpc=1"

# mini_hpc_claim NAME...: fails, naming each one, when a container of one of these names
# exists that up.sh did not create. Run before anything is started or removed.
mini_hpc_claim() {
  local name label foreign=()
  for name in "$@"; do
    label="$(docker container inspect -f '{{index .Config.Labels "hpchub.mini-hpc"}}' "$name" 2>/dev/null)" || continue
    [ "$label" = 1 ] ||
      foreign+=("$name ($(docker container inspect -f '{{.Config.Image}}, {{.State.Status}}' "$name"))")
  done
  ((${#foreign[@]} == 0)) && return 0
  {
    echo "mini-hpc: refusing to touch container(s) it did not create:"
    printf '  %s\n' "${foreign[@]}"
    echo "The mini HPC center needs these names (its Slurm and SSH configuration use them)."
    echo "Rename or remove them yourself (docker rename NAME NEW, docker rm -f NAME), then run make up again."
  } >&2
  return 1
}

# mini_hpc_start NAME IMAGE NETWORK [docker run args...] -- ROLE: (re)creates NAME from
# IMAGE when it is missing, stopped, from another image or started with other arguments; a
# running one of the same image and arguments stays. The arguments count because they hold
# what changes under a kept container: the kind node's address (--add-host) moves when the
# cluster is made again, and a login node still naming the old one cannot reach the hub.
# Only ever removes or keeps a container carrying the label; any other one is refused.
mini_hpc_start() {
  local name="$1" image="$2" net="$3"
  shift 3
  mini_hpc_claim "$name" || return 1
  local args=()
  while (($#)) && [ "$1" != -- ]; do
    args+=("$1")
    shift
  done
  shift
  local config
  config="$(printf '%s\0' "$image" "$net" "${args[@]}" -- "$@" | sha256sum | cut -c1-16)"
  if [ "$(docker container inspect -f '{{.State.Running}} {{.Config.Image}} {{index .Config.Labels "hpchub.mini-hpc.config"}}' "$name" 2>/dev/null)" = "true $image $config" ]; then
    return 0
  fi
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker run -d --name "$name" --hostname "$name" --network "$net" \
    --label "$MINI_HPC_LABEL" --label "hpchub.mini-hpc.config=$config" \
    --restart unless-stopped "${args[@]}" "$image" "$@" >/dev/null
  echo "mini-hpc: started $name ($*)"
}
