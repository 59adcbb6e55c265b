"""Every way a Slurm server ends, made to happen for real on the mini HPC center's Slurm, is
recorded (hpchub.endings, in the hub's database) by the poll that sees it: the cause in
words, the scheduler's own State/ExitCode/Reason, elapsed against the limit, memory used
against the request, the last lines of the job's output and the options it was started
with (Relaunch). config/mini-hpc/slurm.conf makes the causes possible: jobacct_gather with
OverMemoryKill (a job over its --mem is killed), a preempting partition ("urgent" over
"gpu"), a node an operator sets DOWN.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from hpchub import endings
from hpchub.endings import Ending
from tests.harness import minihpc

pytestmark = pytest.mark.integration

SERVER = "mini-configurable"
# The poll that sees an end records it before it returns; the hub drops the server when it
# returns. So the ending is there at once; 5 s is the bound, on a loaded machine.
RECORDED_WITHIN = 5


def ending_of(hub: minihpc.Hub, user: str, server: str, since: float) -> Ending | None:
    return endings.last(hub.db_engine(), user, server, since)


def wait_for_ending(hub: minihpc.Hub, user: str, server: str, since: float, timeout: float) -> Ending:
    """The ending the hub records once a poll sees the server end: wait (up to ``timeout``)
    for the hub to drop the server, then it must be recorded within RECORDED_WITHIN."""
    minihpc.wait_for(lambda: hub.server_model(user, server) is None, timeout, f"{user}/{server} to end", 0.5)
    return minihpc.wait_for(
        lambda: ending_of(hub, user, server, since), RECORDED_WITHIN, f"the ending of {user}/{server}"
    )


def job_of(slurm: minihpc.Slurm, user: str) -> dict[str, str]:
    (job,) = [j for j in slurm.squeue(user) if j["state"] == "RUNNING"]
    return job


def start(hub: minihpc.Hub, user: str, options: dict) -> float:
    since = time.time()
    outcome, message = hub.start_outcome(user, SERVER, options)
    assert outcome == "ready", message
    return since


def cancelled_from_outside(hub: minihpc.Hub, slurm: minihpc.Slurm, user: str) -> tuple[float, dict[str, str]]:
    """A running server whose job its user then cancels from their own shell (`scancel`,
    as the user guide allows): when it started, and its job."""
    since = start(hub, user, {"partition": "debug"})
    job = job_of(slurm, user)
    slurm.as_user(user, "scancel", job["id"])
    return since, job


def nodes_of(slurm: minihpc.Slurm, job_id: str) -> str:
    return minihpc.run("squeue", "-h", "-j", job_id, "-o", "%N", env=slurm.env).stdout.strip()


async def _execute_and_leave(url: str, headers: dict[str, str], code: str) -> None:
    conn = await websocket_connect(HTTPRequest(url, headers=headers, connect_timeout=30))
    header = {"msg_id": uuid.uuid4().hex, "msg_type": "execute_request", "session": uuid.uuid4().hex}
    content = {"code": code, "silent": False, "store_history": False, "allow_stdin": False}
    msg = {"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": "shell"}
    conn.write_message(json.dumps(msg))
    await asyncio.sleep(2)  # the request is with the kernel; what follows ends the job
    conn.close()


def run_in_a_kernel(hub: minihpc.Hub, user: str, server: str, code: str) -> None:
    """Start a kernel in the user's server (through the proxy, as JupyterLab would) and
    give it ``code`` to run; not waiting for it (it ends the job)."""
    base = f"{hub.public}/user/{user}/{server}"
    headers = {"Authorization": f"token {hub.api_token}"}
    r = requests.post(f"{base}/api/kernels", json={"name": "python3"}, headers=headers, timeout=60)
    assert r.status_code == 201, r.text
    asyncio.run(_execute_and_leave(f"ws{base[4:]}/api/kernels/{r.json()['id']}/channels", headers, code))


def test_a_job_over_its_memory_is_recorded_as_out_of_memory(hub: minihpc.Hub, slurm: minihpc.Slurm) -> None:
    user = "hpcalice"
    options = {"partition": "debug", "extra_directives": ["--mem=400M"]}
    since = start(hub, user, options)
    job = job_of(slurm, user)
    # The notebook's kernel fills 900 MB (touched, so it is resident): jobacct_gather sees the
    # job over its 400 MB within 2 s and slurmstepd kills it (OverMemoryKill).
    run_in_a_kernel(hub, user, SERVER, "import time\nx = b'x' * (900 * 2**20)\ntime.sleep(120)\n")
    e = wait_for_ending(hub, user, SERVER, since, 60)
    assert e.cause == "out_of_memory", e
    # What Slurm 22.05 without cgroups says: FAILED on signal 9; slurmstepd's own line in the
    # job's output says it was the memory and how much.
    assert e.details["state"] == "FAILED" and e.details["exit_code"] == "0:9", e.details
    assert e.details["requested_memory_bytes"] == 400 * 2**20
    assert e.details["max_rss_bytes"] > 400 * 2**20
    assert e.words.startswith("ran out of memory: ") and e.words.endswith(" used of 400 MiB requested"), (
        e.words
    )
    assert f"StepId={job['id']}.batch exceeded memory limit" in e.log_tail
    assert e.options == options and e.backend == "slurm" and (e.system, e.level) == ("mini", "configurable")
    assert e.shown


def test_a_job_at_its_time_limit_is_recorded_with_its_limit_and_run_time(
    hub: minihpc.Hub, slurm: minihpc.Slurm
) -> None:
    user = "hpcbob"
    options = {"partition": "debug", "time": "00:01:00"}
    since = start(hub, user, options)
    # Slurm checks time limits every 30 s and gives KillWait (30 s) after TERM.
    e = wait_for_ending(hub, user, SERVER, since, 180)
    assert e.cause == "time_limit", e
    assert (e.details["state"], e.details["reason"]) == ("TIMEOUT", "TimeLimit"), e.details
    assert e.details["limit_seconds"] == 60 and e.details["elapsed_seconds"] >= 60, e.details
    assert e.words == "reached its time limit of 0:01:00"
    assert "DUE TO TIME LIMIT" in e.log_tail and e.options == options


def test_a_node_set_down_is_recorded_as_node_failure(hub: minihpc.Hub, slurm: minihpc.Slurm) -> None:
    user = "hpccarol"
    since = start(hub, user, {"partition": "gpu", "nodes": 1})
    node = nodes_of(slurm, job_of(slurm, user)["id"])
    try:
        minihpc.run(
            "scontrol", "update", f"NodeName={node}", "State=DOWN", "Reason=hpchub test", env=slurm.env
        )
        e = wait_for_ending(hub, user, SERVER, since, 60)
    finally:
        # ReturnToService=2 brings it back as soon as its slurmd answers; RESUME if not yet.
        minihpc.run("scontrol", "update", f"NodeName={node}", "State=RESUME", check=False, env=slurm.env)
        minihpc.wait_for(slurm._nodes_idle, 60, f"{node} back", interval=1)
    assert e.cause == "node_failure", e
    assert (e.details["state"], e.details["reason"]) == ("NODE_FAIL", "NodeDown"), e.details
    assert e.details["nodes"] == node and e.words == "stopped: its node failed"
    assert "DUE TO NODE FAILURE" in e.log_tail


def test_a_preempted_job_is_recorded_as_preempted(hub: minihpc.Hub, slurm: minihpc.Slurm) -> None:
    user = "hpcalice"
    since = start(hub, user, {"partition": "gpu", "nodes": 1})
    # Partition "urgent" (a higher tier on the same nodes) needs both GPU nodes whole.
    urgent = minihpc.run(
        "sbatch", "--parsable", "-p", "urgent", "-N", "2", "--exclusive", "-o", "/dev/null", "--wrap", "sleep 60",
        env=slurm.env,
    ).stdout.strip()  # fmt: skip
    try:
        e = wait_for_ending(hub, user, SERVER, since, 60)
    finally:
        slurm.scancel(urgent)
    assert e.cause == "preempted", e
    assert e.details["state"] == "PREEMPTED" and e.words == "was preempted"
    assert "DUE TO PREEMPTION" in e.log_tail


def test_scancel_by_the_user_outside_hpchub_is_recorded_as_cancelled(
    hub: minihpc.Hub, slurm: minihpc.Slurm
) -> None:
    user = "hpcbob"
    since, job = cancelled_from_outside(hub, slurm, user)
    e = wait_for_ending(hub, user, SERVER, since, 60)
    assert e.cause == "cancelled", e
    assert e.details["state"] == "CANCELLED" and e.words == "was cancelled outside hpchub"
    assert f"JOB {job['id']} ON mini01 CANCELLED AT" in e.log_tail


def test_a_failed_start_up_script_is_recorded_with_its_exit_code_and_output(
    hub: minihpc.Hub, slurm: minihpc.Slurm
) -> None:
    user = "hpccarol"
    body, code = minihpc.FAILING_STARTUP_SCRIPTS[0]
    since = time.time()
    with minihpc.script_in_home(user, body, "failing-start") as script:
        outcome, message = hub.start_outcome(user, "mini-exclusive", {"startup_script": script})
    assert outcome == "failed", message
    e = minihpc.wait_for(lambda: ending_of(hub, user, "mini-exclusive", since), RECORDED_WITHIN, "the ending")
    assert e.cause == "startup_script", e
    assert (
        e.details["exit_code"] == str(code)
        and e.words == f"could not start: the start-up script exited with {code}"
    )
    assert "environment myenv not found" in e.log_tail
    assert "before the server started" in e.details["message"]
    assert e.options == {"startup_script": script}


def test_a_refused_start_is_recorded_with_the_message_the_user_saw(hub: minihpc.Hub) -> None:
    user = "hpcbob"
    marker = minihpc.Path(f"/home/{user}/.hpchub-over-quota")  # the test values' quota check
    marker.touch()
    since = time.time()
    try:
        outcome, message = hub.start_outcome(user, "mini-exclusive")
    finally:
        marker.unlink()
    assert outcome == "failed" and "over quota" in message, message
    e = minihpc.wait_for(lambda: ending_of(hub, user, "mini-exclusive", since), RECORDED_WITHIN, "the ending")
    assert e.cause == "start_failed" and e.words == "could not start"
    assert "over quota" in e.details["message"]


def test_an_end_while_the_hub_is_down_is_recorded_when_it_is_back(
    hub: minihpc.Hub, slurm: minihpc.Slurm
) -> None:
    user = "hpcalice"
    since = start(hub, user, {"partition": "debug"})
    job = job_of(slurm, user)
    hub.stop_hub()
    try:
        slurm.as_user(user, "scancel", job["id"])
        minihpc.wait_for(lambda: not slurm.squeue(user), 60, "the job to end", interval=1)
    finally:
        hub.start_hub()
    e = wait_for_ending(hub, user, SERVER, since, 60)
    assert e.cause == "cancelled" and e.details["state"] == "CANCELLED", e
    # And it stays: a further restart reads the same record from the database.
    hub.stop_hub()
    hub.start_hub()
    again = ending_of(hub, user, SERVER, since)
    assert again is not None and again.id == e.id and again.words == "was cancelled outside hpchub"


def test_ends_are_counted_by_cause_in_the_metrics(hub: minihpc.Hub, slurm: minihpc.Slurm) -> None:
    user = "hpccarol"
    series = (
        "hpchub_server_ends_total",
        frozenset({"system": "mini", "level": "configurable", "cause": "cancelled"}.items()),
    )
    before = hub.metrics()
    # Every cell has a series per cause from the start (0 before any end).
    assert (
        "hpchub_server_ends_total",
        frozenset({"system": "mini", "level": "shared", "cause": "lifetime"}.items()),
    ) in before
    since, _ = cancelled_from_outside(hub, slurm, user)
    wait_for_ending(hub, user, SERVER, since, 60)
    assert hub.metrics()[series] == before[series] + 1
