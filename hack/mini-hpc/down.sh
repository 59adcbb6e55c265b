#!/usr/bin/env bash
# Removes the mini HPC center's containers (only those up.sh labelled).
set -euo pipefail
ids="$(docker ps -aq --filter label=hpchub.mini-hpc=1)"
[ -z "$ids" ] || docker rm -f $ids >/dev/null
echo "mini-hpc: removed"
