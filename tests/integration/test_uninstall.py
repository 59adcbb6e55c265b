"""`python -m hpchub.uninstall` (the chart's pre-delete hook) against the real hub: every
running server is stopped by its own spawner, so no notebook process or Slurm job is left."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests

from tests.harness import minihpc

pytestmark = pytest.mark.integration


def test_uninstall_hook_stops_every_server_and_leaves_no_process_or_job(
    hub: minihpc.Hub, slurm: minihpc.Slurm
) -> None:
    user = "hpcbob"
    hub.start_servers(user, ("mini-shared", "mini-exclusive"), timeout=180)
    assert minihpc.user_processes(user, hub)
    assert slurm.squeue(user)

    # The hook's own token, with the scopes the chart's "uninstall" role gives it (the hub
    # sets that role up from HPCHUB_UNINSTALL_TOKEN, as in the chart): not the harness's
    # admin token, which would hide a role missing a scope the hook needs.
    token = hub.uninstall_token
    me = requests.get(f"{hub.api}/user", headers={"Authorization": f"token {token}"}, timeout=10)
    assert me.ok and (me.json()["kind"], me.json()["name"]) == ("service", "uninstall"), me.text
    refused = requests.post(
        f"{hub.api}/users/{user}/servers/mini-configurable",
        headers={"Authorization": f"token {token}"},
        json={"user_options": {}},
        timeout=10,
    )
    assert refused.status_code == 403, refused.text  # it may stop servers, not start them
    env = {**os.environ, "HPCHUB_UNINSTALL_TOKEN": token}  # from env, never argv
    proc = subprocess.run(
        [sys.executable, "-m", "hpchub.uninstall", "--api-url", hub.api, "--timeout", "120"],
        env=env,
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all user servers stopped" in proc.stdout
    assert hub.server_model(user, "mini-shared") is None
    assert hub.server_model(user, "mini-exclusive") is None
    minihpc.wait_for(lambda: not minihpc.user_processes(user, hub), 15, "notebook processes to exit")
    minihpc.wait_for(lambda: not slurm.squeue(user), 30, "the Slurm job to be gone")


def test_uninstall_hook_refuses_to_run_without_a_token(hub: minihpc.Hub) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HPCHUB_UNINSTALL_TOKEN"}
    proc = subprocess.run(
        [sys.executable, "-m", "hpchub.uninstall", "--api-url", hub.api],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "HPCHUB_UNINSTALL_TOKEN" in proc.stderr


def run_hook(api_url: str, token: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The hook as the chart's Job runs it: token and the release's names in its environment."""
    env = {
        **os.environ,
        "HPCHUB_UNINSTALL_TOKEN": token,
        "HPCHUB_RELEASE": "site",
        "HPCHUB_NAMESPACE": "jhub",
    }
    return subprocess.run(
        [sys.executable, "-m", "hpchub.uninstall", "--api-url", api_url, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_uninstall_hook_fails_and_says_how_to_finish_when_the_hub_does_not_answer() -> None:
    # Nothing listens there: the hub is down (crash-looping, scaled to 0, its node lost).
    api = f"http://127.0.0.1:{minihpc.free_port()}/hub/api"
    proc = run_hook(api, "t0k", "--hub-wait", "4", timeout=60)
    out = proc.stdout + proc.stderr
    # Helm must see a failed hook (and stop the uninstall), not a warning and exit 0.
    assert proc.returncode == 3, out
    assert f"the hub did not answer at {api}" in out
    assert "Nothing was stopped" in out
    # Where the log stays, how to finish, and how to find what is left by hand.
    assert "kubectl --namespace jhub logs job/site-stop-servers" in out
    assert "helm uninstall site --namespace jhub --no-hooks" in out
    assert "app.kubernetes.io/managed-by=kubespawner,app.kubernetes.io/instance=site" in out
    assert "scancel <job id>" in out


def test_uninstall_hook_waits_for_the_reaper_and_names_the_job_it_could_not_cancel(
    hub: minihpc.Hub, slurm: minihpc.Slurm
) -> None:
    """A stop slurmctld could not confirm sits in the reaper's table: the hook must not
    report success (the hub would be deleted and nothing would ever cancel the job)."""
    user = "hpccarol"
    r = hub.start_server(user, "mini-exclusive")
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(user, "mini-exclusive", timeout=180)
    (job,) = [j["id"] for j in slurm.squeue(user)]
    slurm.stop_ctld()
    try:
        r = hub.request("DELETE", f"/users/{user}/servers/mini-exclusive")
        assert r.status_code in (202, 204), r.text
        # The spawner gives up confirming (stop_confirm_seconds) and hands the job over.
        minihpc.wait_for(lambda: hub.server_model(user, "mini-exclusive") is None, 180, "the stop")
        proc = run_hook(hub.api, hub.api_token, "--timeout", "20")
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1, out
        assert "UNINSTALL STOPPED" in out
        assert f"Slurm job {job} of {user} (server mini-exclusive, system mini)" in out
        assert f"by hand: scancel {job}   (on a login node of mini, as {user} or root)" in out
        assert "helm uninstall site --namespace jhub" in out
    finally:
        slurm.start_ctld()
    # slurmctld is back: the hook asks the reaper to retry now, and then succeeds.
    proc = run_hook(hub.api, hub.api_token, "--timeout", "150")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no cancellation pending" in proc.stdout
    assert slurm.squeue(user) == []
