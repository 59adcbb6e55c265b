"""A Slurm start is not held back by the site's poll interval (issue 19, item 17).

On a cluster with room a job runs within a second of ``sbatch``. The hub used to look at
the status board right after submitting (the job still pending) and then again only a
``slurm.pollSeconds`` later, which put up to that interval (5 s by default) on top of every
start. Now it waits for the job's address on the login node meanwhile. With pollSeconds at
60 s, against the real Slurm, sshd, hub and proxy: the server answers well within one
interval, with its route to the node Slurm names; a job that dies at once fails the start
well within one interval, with its output; a stop while the hub waits leaves no job.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.harness import minihpc

pytestmark = pytest.mark.integration

POLL = 60  # slurm.pollSeconds of this hub: the old pacing needed at least this long
SERVER = "mini-exclusive"


@pytest.fixture(scope="module")
def pace_hub(workdir: Path, sshd: minihpc.SSHD) -> Iterator[minihpc.Hub]:
    values = minihpc.test_values(sshd, [("127.0.0.1", sshd.port)])
    values["systems"]["mini"]["slurm"]["pollSeconds"] = POLL
    hub = minihpc.Hub(workdir, values, sshd.ca_key, name="pace-hub")
    hub.start()
    for user in minihpc.USERS:
        hub.ensure_user(user)
    yield hub
    hub.stop_all_servers(minihpc.USERS)
    hub.stop()


def active_jobs(slurm: minihpc.Slurm, user: str) -> list[dict[str, str]]:
    return [
        j for j in slurm.squeue(user) if j["state"] in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING")
    ]


def test_a_job_with_room_answers_well_within_one_poll_interval(
    pace_hub: minihpc.Hub, slurm: minihpc.Slurm
) -> None:
    user = "hpcbob"
    r = pace_hub.start_server(user, SERVER)
    assert r.status_code in (201, 202), r.text
    try:
        # Before: submitted, pending at the first look, looked at again only after 60 s.
        pace_hub.wait_answering(user, SERVER, timeout=POLL / 2)
        state = pace_hub.server_model(user, SERVER)["state"]
        (job,) = active_jobs(slurm, user)
        assert state["job_id"] == job["id"] and job["state"] == "RUNNING"
        # The route goes to the node Slurm names (mapped by slurm.nodeAddress), at the port
        # the job reported, which the hub confirmed before routing.
        assert state["node"] == "mini01", state
        routes = pace_hub.routes()
        assert routes[f"/user/{user}/{SERVER}"]["target"] == f"http://127.0.0.1:{state['port']}", routes
        # It was the wait on the login node that saw the server first (spawnsteps.py).
        steps = re.findall(rf"spawn steps of {user}:{SERVER}: (.*)", pace_hub.log_text())
        assert steps and "address " in steps[-1], steps
    finally:
        pace_hub.stop_server(user, SERVER)
    assert slurm.squeue(user) == []


def test_a_job_that_dies_at_once_fails_the_start_well_within_one_poll_interval(
    pace_hub: minihpc.Hub, slurm: minihpc.Slurm
) -> None:
    user = "hpccarol"
    script = Path(f"/home/{user}/pace-fail.sh")
    script.write_text("echo 'hpchub-test: no python module here' >&2\nexit 3\n")
    try:
        t0 = time.monotonic()
        outcome, message = pace_hub.start_outcome(user, SERVER, {"startup_script": "~/pace-fail.sh"})
        took = time.monotonic() - t0
    finally:
        script.unlink()
    assert outcome == "failed", message
    # It failed because the job ended (with its output), not on a timeout, and at once.
    assert "ended (" in message and "before the server started" in message, message
    assert "no python module here" in message, message
    assert took < POLL / 2, f"the start failed only after {took:.0f} s"
    minihpc.wait_for(lambda: not active_jobs(slurm, user), 30, "no job left")


def test_a_stop_while_the_hub_waits_on_the_login_node_leaves_no_job(
    pace_hub: minihpc.Hub, slurm: minihpc.Slurm
) -> None:
    user = "hpcalice"
    # The job runs, but its server is minutes away: the hub waits for its address.
    script = Path(f"/home/{user}/pace-slow.sh")
    script.write_text("sleep 300\n")
    try:
        r = pace_hub.start_server(user, SERVER, {"startup_script": "~/pace-slow.sh"})
        assert r.status_code == 202, r.text  # still pending after the hub's 10 s
        (job,) = active_jobs(slurm, user)
        assert job["state"] == "RUNNING", job
        assert pace_hub.server_model(user, SERVER)["pending"] == "spawn"
        pace_hub.stop_server(user, SERVER)
    finally:
        script.unlink()
    assert slurm.squeue(user) == [] or not active_jobs(slurm, user), slurm.squeue(user)
    assert f"Slurm job {job['id']} of {user}:{SERVER} cancelled" in pace_hub.log_text()
    # Nothing answers for this user's prefix: no route was ever added.
    r = requests.get(f"{pace_hub.public}/user/{user}/{SERVER}/api", timeout=10, allow_redirects=False)
    assert not (r.status_code == 200 and r.headers.get("Content-Type", "").startswith("application/json"))
