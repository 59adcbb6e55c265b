#!/usr/bin/env bash
# Makes the hub's connect-back name (hpchub-dev.local in values-dev.yaml) resolve inside
# the cluster to the kind node, as it would on a real site's DNS: the mini HPC containers
# get it from --add-host, pods from this CoreDNS `hosts` block. Idempotent.
# Usage: coredns-hosts.sh NAME IP
set -euo pipefail
name="$1" ip="$2"
cur="$(kubectl -n kube-system get configmap coredns -o jsonpath='{.data.Corefile}')"
new="$(python3 - "$name" "$ip" "$cur" <<'PY'
import re, sys
name, ip, corefile = sys.argv[1:]
block = f"    hosts {{\n       {ip} {name}\n       fallthrough\n    }}\n"
corefile = re.sub(r"    hosts \{\n.*?\n    \}\n", "", corefile, flags=re.S)
corefile = corefile.replace("    ready\n", "    ready\n" + block, 1)
print(corefile, end="")
PY
)"
if [ "$new" != "$cur" ]; then
  kubectl -n kube-system create configmap coredns --from-literal=Corefile="$new" --dry-run=client -o yaml |
    kubectl -n kube-system apply -f - >/dev/null 2>&1 ||
    kubectl -n kube-system patch configmap coredns --type merge -p "$(python3 -c 'import json,sys; print(json.dumps({"data": {"Corefile": sys.argv[1]}}))' "$new")" >/dev/null
  # CoreDNS's reload plugin picks the change up within ~30 s; restart to apply it now.
  kubectl -n kube-system rollout restart deployment coredns >/dev/null
  kubectl -n kube-system rollout status deployment coredns --timeout=2m >/dev/null
  echo "coredns: $name -> $ip"
fi
