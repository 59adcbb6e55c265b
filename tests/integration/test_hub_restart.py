"""Restarting the hub leaves SSH and Slurm servers running, reachable, and tracked."""

from __future__ import annotations

import sqlite3
from pathlib import Path

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


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_a_killed_hub_takes_its_managed_culler_with_it_as_its_pod_does(
    workdir: Path, sshd: minihpc.SSHD
) -> None:
    """In the chart the culler runs in the hub's container and dies with it; the harness's
    hub stands for that container. Before this, every SIGKILLed test hub left its culler
    running (4 after test_endings_stops), polling a hub that was gone."""
    values = minihpc.test_values(sshd, [("127.0.0.1", sshd.port)])
    values["culling"] = {**values.get("culling", {}), "enabled": True}
    hub = minihpc.Hub(workdir, values, sshd.ca_key, name="hub-culler-group")
    hub.start()
    try:
        assert hub.hub is not None
        culler = minihpc.wait_for(
            lambda: [(pid, t) for pid, t in hub.hub.descendants() if "hpchub.culler" in _cmdline(pid)],
            30,
            "the hub's managed culler",
        )
        hub.kill_hub()
        # SIGKILLed at once; gone (or a zombie for init to reap) within a moment
        minihpc.wait_for(
            lambda: not [pid for pid, t in culler if minihpc.live(pid, t)],
            5,
            "the culler to end with its hub",
        )
    finally:
        hub.stop()
