"""Servers running under an earlier hpchub are adopted by this one (spawner state version 2).

The layouts come from the real code: tests/integration/data/state-0.1.0.json holds the
rows a hub of 0.1.0 wrote (and the keys of the layout before phases). Each test starts a
real SSH server and a real Slurm job, kills the hub, rewrites their rows in the hub's
database into the old layout (the live run's values in the old keys, nothing else), and
starts the hub again: the very same process and job must be adopted, answer through the
proxy, be saved back as version 2, and stop cleanly.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.harness import minihpc

pytestmark = pytest.mark.integration

USER = "hpcalice"
SERVERS = ("mini-shared", "mini-exclusive")
OLD = json.loads((Path(__file__).parent / "data" / "state-0.1.0.json").read_text())


def rows(hub: minihpc.Hub) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(hub.dir / "jupyterhub.sqlite") as db:
        found = db.execute(
            "SELECT spawners.name, spawners.state FROM spawners JOIN users ON users.id = spawners.user_id"
            " WHERE users.name = ?",
            (USER,),
        ).fetchall()
    return {name: json.loads(state) for name, state in found if name in SERVERS}


def old_row(layout: dict[str, Any], live: dict[str, Any]) -> dict[str, Any]:
    """The old layout's keys with the live run's values (a key the old layout had and the
    live row lacks would be a bug in this test, not in the code under test)."""
    missing = set(layout) - set(live)
    assert not missing, f"the live row lacks {missing}: {live}"
    return {key: live[key] for key in layout}


@pytest.mark.parametrize("layout", ["with phases", "before phases"])
def test_servers_of_an_earlier_version_are_adopted(
    hub: minihpc.Hub, slurm: minihpc.Slurm, layout: str
) -> None:
    hub.start_servers(USER, SERVERS, answering=True)
    pids = set(minihpc.user_processes(USER, hub))
    jobs = [j["id"] for j in slurm.squeue(USER)]
    assert len(pids) == 2 and len(jobs) == 1, (pids, jobs)

    hub.kill_hub()
    live = rows(hub)
    assert {name: state["version"] for name, state in live.items()} == dict.fromkeys(SERVERS, 2)
    written = {name: old_row(OLD[layout][name], live[name]) for name in SERVERS}
    assert all("version" not in state for state in written.values())
    with sqlite3.connect(hub.dir / "jupyterhub.sqlite") as db:
        for name, state in written.items():
            db.execute(
                "UPDATE spawners SET state = ? WHERE name = ?"
                " AND user_id = (SELECT id FROM users WHERE name = ?)",
                (json.dumps(state), name, USER),
            )
    hub.start_hub()

    for server in SERVERS:
        hub.wait_ready(USER, server, timeout=120)
        hub.wait_answering(USER, server)
    # The same process and the same job: adopted, nothing started twice, nothing lost.
    assert set(minihpc.user_processes(USER, hub)) == pids
    assert [j["id"] for j in slurm.squeue(USER)] == jobs
    model = hub.request("GET", f"/users/{USER}").json()["servers"]
    for server in SERVERS:
        state = model[server]["state"]
        assert state["version"] == 2 and state["phase"] == "running", state
        assert state["run_id"] == live[server]["run_id"]
    assert model["mini-exclusive"]["state"]["job_id"] == jobs[0]

    for server in SERVERS:
        hub.stop_server(USER, server)
    minihpc.wait_for(lambda: not minihpc.user_processes(USER, hub), 15, "the notebook process to exit")
    minihpc.wait_for(lambda: slurm.squeue(USER) == [], 60, "the job to leave the queue", interval=1)
