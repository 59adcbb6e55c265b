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
    for server in ("mini-shared", "mini-exclusive"):
        r = hub.start_server(user, server)
        assert r.status_code in (201, 202), r.text
    for server in ("mini-shared", "mini-exclusive"):
        hub.wait_ready(user, server, timeout=180)
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
