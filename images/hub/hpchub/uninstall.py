"""Stop every user server through the hub's REST API before `helm uninstall` removes the
hub (the chart's pre-delete hook runs `python -m hpchub.uninstall`).

Without it, Spin pods (owned by no Kubernetes object), login-node notebooks and Slurm jobs
would outlive the release: only the hub knows them. Each server is stopped by its own
spawner, so a Slurm job is scancel'ed and confirmed gone, a login-node process gets TERM
then KILL, a Spin pod is deleted. A stop that could not be confirmed (slurmctld down, a
login node unreachable) is held by the hub's reaper; the hook waits for those too
(GET /hub/api/hpchub/leftovers, hpchub/leftovers.py).

The hook succeeds only when nothing is left. Otherwise it exits non-zero, so Helm stops the
uninstall with the release (hub, database) in place, and its log names every server, job
and process left and how to finish: the Job and its pod stay for `kubectl logs`. That
includes a hub that does not answer: then nothing could be stopped or even listed.

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
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from .hubsecrets import EXISTING_SECRET_DIR, HubSecrets, SecretError

Servers = dict[str, list[str]]

# Exit codes: Helm sees any non-zero one as a failed hook.
OK, LEFT, NO_TOKEN, NO_HUB = 0, 1, 2, 3


class HubAPI:
    def __init__(self, api_url: str, token: str, timeout: float = 30) -> None:
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str) -> tuple[int, Any]:
        req = urllib.request.Request(
            self.api_url + path,
            method=method,
            headers={"Authorization": f"token {self.token}"},
            data=b"" if method == "POST" else None,
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

    def leftovers(self) -> dict[str, list[dict[str, Any]]]:
        """Servers still active and cancellations the reaper holds (hpchub/leftovers.py)."""
        status, body = self.request("GET", "/hpchub/leftovers")
        if status != 200 or not isinstance(body, dict):
            raise RuntimeError(f"GET /hpchub/leftovers answered HTTP {status}")
        return {
            "servers": list(body.get("servers") or []),
            "cancellations": list(body.get("cancellations") or []),
        }

    def retry(self) -> int:
        status, _ = self.request("POST", "/hpchub/leftovers/retry")
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


def wait_for_reaper(
    api: HubAPI,
    timeout: float,
    interval: float = 3,
    retry_every: float = 20,
    log: Callable[[str], None] = print,
) -> dict[str, list[dict[str, Any]]]:
    """Wait until the hub holds no server and no unconfirmed cancellation; asks the reaper
    to retry now and then (its own backoff reaches a minute). Returns what is left."""
    deadline = time.monotonic() + timeout
    next_retry = 0.0
    shown: set[int] = set()
    while True:
        left = api.leftovers()
        if not left["servers"] and not left["cancellations"]:
            return left
        for row in left["cancellations"]:
            if row.get("id") not in shown:
                shown.add(row.get("id"))
                log(
                    f"waiting for the reaper: {row.get('what')} of {row.get('username')}: {row.get('reason')}"
                )
        now = time.monotonic()
        if now >= deadline:
            return left
        if left["cancellations"] and now >= next_retry:
            api.retry()
            next_retry = now + retry_every
        time.sleep(min(interval, max(deadline - now, 0.1)))


class Names:
    """The release's names the messages show (the chart passes them to the hook)."""

    def __init__(self, release: str, namespace: str, job: str = "", hub: str = "") -> None:
        self.release = release
        self.namespace = namespace
        self.job = job or f"{release}-stop-servers"
        self.hub = hub or f"{release}-hub"


def _server_by_hand(s: Mapping[str, Any], names: Names) -> str:
    namespace = names.namespace
    user, server, backend = s.get("user", ""), s.get("server", ""), s.get("backend", "")
    if s.get("by_hand"):  # a batch job: the hub asked its scheduler adapter
        return str(s["by_hand"])
    if backend == "kubernetes":
        return (
            f"kubectl --namespace {namespace} delete pod -l "
            f"hub.jupyter.org/username={user},hub.jupyter.org/servername={server}"
        )
    if backend == "ssh" and s.get("host"):
        return (
            f"on {s['host']}, as {user} or root: end the jupyterhub-singleuser process whose "
            f"run directory is under ~{user}/.hpchub/ssh/ (kill -TERM -<its pid>)"
        )
    return f"see the hub's log: kubectl --namespace {namespace} logs deployment/{names.hub}"


def leftovers_report(left: Mapping[str, list[Mapping[str, Any]]], names: Names) -> str:
    """What is still there, one entry each with how to end it by hand, and how to go on."""
    release, namespace = names.release, names.namespace
    lines = [
        "UNINSTALL STOPPED: the hub could not confirm that every user server is gone.",
        f"(This log is kept: kubectl --namespace {namespace} logs job/{names.job})",
    ]
    servers, held = left.get("servers") or [], left.get("cancellations") or []
    if servers:
        lines.append(f"Servers still active ({len(servers)}):")
        for s in servers:
            where = f"job {s['job_id']}" if s.get("job_id") else (s.get("host") or "?")
            lines.append(
                f"  - {s.get('user')}/{s.get('server')} ({s.get('backend') or 'unknown backend'}, "
                f"{s.get('state')}, {where})"
            )
            lines.append(f"      by hand: {_server_by_hand(s, names)}")
    if held:
        lines.append(f"Stops the hub's reaper has not confirmed ({len(held)}):")
        for r in held:
            lines.append(
                f"  - {r.get('what')} of {r.get('username')} (server {r.get('server')}, system "
                f"{r.get('system')}): {r.get('reason')}; {r.get('attempts')} attempt(s), last: "
                f"{r.get('last_error') or '-'}"
            )
            lines.append(f"      by hand: {r.get('by_hand')}")
    lines += [
        "The release, the hub and its database are still installed and the hub keeps trying.",
        "To finish: fix what blocks the stops (slurmctld, the login nodes), then run",
        f"  helm uninstall {release} --namespace {namespace}",
        "again. To remove the release anyway, cancel each entry above by hand, then",
        f"  helm uninstall {release} --namespace {namespace} --no-hooks",
        f"  kubectl --namespace {namespace} delete job {names.job}",
    ]
    return "\n".join(lines)


def no_hub_report(api_url: str, waited: float, error: str, names: Names, halfway: bool = False) -> str:
    release, namespace = names.release, names.namespace
    done = (
        "Some stops were asked for, but what is left can no longer be listed"
        if halfway
        else "Nothing was stopped, and nothing could be listed"
    )
    return "\n".join(
        [
            f"UNINSTALL STOPPED: the hub did not answer at {api_url} for {waited:.0f} s ({error}).",
            f"{done}: only the hub knows which Slurm jobs, login-node notebooks and Spin pods",
            "its users run, and which stops its reaper has not confirmed yet. The release, the",
            "hub's Deployment and its database are kept, and so is this log:",
            f"  kubectl --namespace {namespace} logs job/{names.job}",
            "To finish: get the hub running again, then run helm uninstall again:",
            f"  kubectl --namespace {namespace} get pods -l app.kubernetes.io/instance={release}",
            f"  kubectl --namespace {namespace} logs deployment/{names.hub}",
            f"  helm uninstall {release} --namespace {namespace}",
            "To remove the release anyway (you then find and end what it left by hand):",
            f"  helm uninstall {release} --namespace {namespace} --no-hooks",
            f"  kubectl --namespace {namespace} delete pod -l "
            f"app.kubernetes.io/managed-by=kubespawner,app.kubernetes.io/instance={release}",
            "  Slurm, on a login node of each system: squeue --noheader --format='%i %u %j' | grep ' hpchub-'"
            " then scancel <job id> (every job hpchub submits is named hpchub-<run id>)",
            "  login nodes: each user's ~/.hpchub/ssh/<run id>/pid names a notebook process left running",
            f"  kubectl --namespace {namespace} delete job {names.job}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--api-url", default=os.environ.get("HPCHUB_HUB_API_URL", "http://hub:8081/hub/api"))
    p.add_argument(
        "--timeout",
        type=float,
        default=float(os.environ.get("HPCHUB_STOP_TIMEOUT", "240")),
        help="seconds for everything: stopping servers and the reaper confirming its cancellations",
    )
    p.add_argument("--hub-wait", type=float, default=60, help="seconds to wait for the hub to answer")
    p.add_argument("--release", default=os.environ.get("HPCHUB_RELEASE", "hpchub"))
    p.add_argument("--namespace", default=os.environ.get("HPCHUB_NAMESPACE", "default"))
    p.add_argument("--job", default=os.environ.get("HPCHUB_HOOK_JOB", ""), help="this hook's Job")
    p.add_argument("--hub-deployment", default=os.environ.get("HPCHUB_HUB_DEPLOYMENT", ""))
    args = p.parse_args(argv)
    names = Names(args.release, args.namespace, args.job, args.hub_deployment)
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
        return NO_TOKEN
    api = HubAPI(args.api_url, token)
    start = time.monotonic()
    hub_deadline = start + min(args.hub_wait, args.timeout)
    while True:
        try:
            api.leftovers()  # also proves the hub has the leftovers API and the token its scopes
            break
        except (OSError, RuntimeError) as e:
            if time.monotonic() > hub_deadline:
                waited = time.monotonic() - start
                print(no_hub_report(args.api_url, waited, str(e), names), file=sys.stderr)
                return NO_HUB
            time.sleep(2)
    deadline = start + args.timeout
    try:
        stop_all(api, timeout=max(deadline - time.monotonic(), 0))
        left = wait_for_reaper(api, timeout=max(deadline - time.monotonic(), 0))
    except (OSError, RuntimeError) as e:
        # The hub went away halfway: what is left can no longer be listed.
        waited = time.monotonic() - start
        print(no_hub_report(args.api_url, waited, str(e), names, halfway=True), file=sys.stderr)
        return NO_HUB
    if left["servers"] or left["cancellations"]:
        print(leftovers_report(left, names), file=sys.stderr)
        return LEFT
    print("all user servers stopped; no cancellation pending")
    return OK


if __name__ == "__main__":
    sys.exit(main())
