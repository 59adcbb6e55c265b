#!/usr/bin/env bash
# Starts dockerd in the background when no Docker engine answers (PID 1 here is not
# systemd, so nothing else will). Waits until `docker info` works.
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
command -v dockerd >/dev/null || { echo "start-dockerd: dockerd not installed (run hack/install-deps.sh)" >&2; exit 1; }
mkdir -p /var/log
nohup dockerd >/var/log/hpchub-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then echo "start-dockerd: dockerd is up"; exit 0; fi
  sleep 1
done
echo "start-dockerd: dockerd did not come up; last log lines:" >&2
tail -n 20 /var/log/hpchub-dockerd.log >&2
exit 1
