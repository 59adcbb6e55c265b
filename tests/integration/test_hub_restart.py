"""Restarting the hub leaves SSH and Slurm servers running, reachable, and tracked."""

from __future__ import annotations

import sqlite3

import pytest

from tests.harness import minihpc

user_processes = minihpc.user_processes

pytestmark = pytest.mark.integration


def test_hub_restart_keeps_ssh_and_slurm_servers(hub: minihpc.Hub, slurm: minihpc.Slurm) -> None:
    user = "hpcalice"
    hub.start_servers(user, ("mini-shared", "mini-exclusive"))
    pids = set(user_processes(user, hub))
    jobs = [j["id"] for j in slurm.squeue(user)]
    assert len(jobs) == 1

    hub.stop_hub()
    # The proxy keeps routing while the hub is down.
    for server in ("mini-shared", "mini-exclusive"):
        hub.wait_answering(user, server)
    hub.start_hub()

    for server in ("mini-shared", "mini-exclusive"):
        assert hub.server_model(user, server)["ready"], f"{server} lost by the restart"
        hub.wait_answering(user, server)
    assert set(user_processes(user, hub)) == pids
    assert [j["id"] for j in slurm.squeue(user)] == jobs
    # The state came back from a sqlite file in write-ahead-log mode (hub.db.sqlite's
    # default; the mode is kept in the file).
    with sqlite3.connect(hub.dir / "jupyterhub.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)

    # Found again: stop works from the state the new hub loaded from its DB.
    for server in ("mini-shared", "mini-exclusive"):
        hub.stop_server(user, server)
    minihpc.wait_for(lambda: not user_processes(user, hub), 15, "the notebook process to exit")
    assert slurm.squeue(user) == []
