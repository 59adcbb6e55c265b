"""Stop every user server through the hub's REST API before `helm uninstall` removes the
hub (the chart's pre-delete hook runs `python -m hpchub.uninstall`).

Without it, Spin pods (owned by no Kubernetes object), login-node notebooks and Slurm jobs
would outlive the release: only the hub knows them. Each server is stopped by its own
spawner, so a Slurm job is scancel'ed and confirmed gone, a login-node process gets TERM
then KILL, a Spin pod is deleted.

The token comes from the environment (the chart's Secret) or, with hub.existingSecret,
from that Secret mounted as files (derived from its cookie secret when it has no
``hub.uninstall-token``, as the hub derives it); never from the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from .hubsecrets import EXISTING_SECRET_DIR, HubSecrets, SecretError

Servers = dict[str, list[str]]


class HubAPI:
    def __init__(self, api_url: str, token: str, timeout: float = 30) -> None:
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str) -> tuple[int, Any]:
        req = urllib.request.Request(
            self.api_url + path, method=method, headers={"Authorization": f"token {self.token}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                body = r.read()
                return r.status, json.loads(body) if body else None
        except urllib.error.HTTPError as e:
            return e.code, None

    def running(self) -> Servers:
        """user -> names of servers that are running or starting/stopping."""
        status, users = self.request("GET", "/users?state=active&limit=10000")
        if status != 200:
            raise RuntimeError(f"listing users failed with HTTP {status}")
        return {u["name"]: sorted(u.get("servers") or {}) for u in users if u.get("servers")}

    def stop(self, user: str, server: str) -> int:
        status, _ = self.request("DELETE", f"/users/{quote(user)}/servers/{quote(server)}")
        return status


def stop_all(
    api: HubAPI,
    timeout: float = 300,
    interval: float = 2,
    log: Callable[[str], None] = print,
) -> Servers:
    """Ask the hub to stop every server and wait until none is left. Returns what is left."""
    deadline = time.monotonic() + timeout
    asked: set[tuple[str, str]] = set()
    left = api.running()
    while left:
        for user, names in left.items():
            for name in names:
                if (user, name) not in asked:
                    status = api.stop(user, name)
                    log(f"stop {user}/{name or '(default)'}: HTTP {status}")
                    asked.add((user, name))
        if time.monotonic() > deadline:
            break
        time.sleep(interval)
        left = api.running()
    return left


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--api-url", default=os.environ.get("HPCHUB_HUB_API_URL", "http://hub:8081/hub/api"))
    p.add_argument("--timeout", type=float, default=float(os.environ.get("HPCHUB_STOP_TIMEOUT", "300")))
    p.add_argument("--hub-wait", type=float, default=60, help="seconds to wait for the hub to answer")
    args = p.parse_args(argv)
    token = os.environ.get("HPCHUB_UNINSTALL_TOKEN", "")
    existing = os.environ.get("HPCHUB_EXISTING_SECRET", "")
    if not token and existing:
        directory = os.environ.get("HPCHUB_EXISTING_SECRET_DIR", EXISTING_SECRET_DIR)
        try:
            token = HubSecrets(existing, directory, os.environ).uninstall_token() or ""
        except SecretError as e:
            print(e, file=sys.stderr)
            return 2
    if not token:
        print("HPCHUB_UNINSTALL_TOKEN is not set", file=sys.stderr)
        return 2
    api = HubAPI(args.api_url, token)
    deadline = time.monotonic() + args.hub_wait
    while True:
        try:
            api.running()
            break
        except (OSError, RuntimeError) as e:
            if time.monotonic() > deadline:
                # Do not block the uninstall on a broken hub, but say what may be left.
                print(
                    f"WARNING: the hub did not answer ({e}); user servers were NOT stopped. "
                    "Spin pods (label app.kubernetes.io/managed-by=kubespawner), login-node "
                    "notebooks and Slurm jobs of this release may still be running.",
                    file=sys.stderr,
                )
                return 0
            time.sleep(2)
    left = stop_all(api, timeout=args.timeout)
    if left:
        print(f"WARNING: still running after {args.timeout:.0f}s: {left}", file=sys.stderr)
        return 1
    print("all user servers stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
