"""Slurm spawner against the real one-host Slurm: REST start, proxy, stop, outages."""

from __future__ import annotations

import re
import time

import pytest

from tests.harness import minihpc

pytestmark = pytest.mark.integration


def running_jobs(slurm: minihpc.Slurm, user: str) -> list[dict[str, str]]:
    return [j for j in slurm.squeue(user) if j["state"] in ("RUNNING", "PENDING", "CONFIGURING")]


def test_slurm_server_answers_through_proxy_and_stop_leaves_no_job(
    hub: minihpc.Hub, slurm: minihpc.Slurm
) -> None:
    user = "hpcbob"
    r = hub.start_server(user, "mini-exclusive")
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(user, "mini-exclusive")
    hub.wait_answering(user, "mini-exclusive")
    jobs = running_jobs(slurm, user)
    assert len(jobs) == 1 and jobs[0]["name"].startswith("hpchub-") and jobs[0]["state"] == "RUNNING"
    (pid,) = minihpc.user_processes(user, hub)
    assert minihpc.token_on_any_command_line(pid) is None
    hub.stop_server(user, "mini-exclusive")
    assert slurm.squeue(user) == []


def test_configurable_options_reach_the_job(hub: minihpc.Hub, slurm: minihpc.Slurm) -> None:
    user = "hpcbob"
    options = {"partition": "long", "time": "02:00:00", "extra_directives": ["--comment=hpchub-test"]}
    r = hub.start_server(user, "mini-configurable", options)
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(user, "mini-configurable")
    hub.wait_answering(user, "mini-configurable")
    (job,) = running_jobs(slurm, user)
    out = minihpc.run("scontrol", "show", "job", job["id"], env=slurm.env).stdout
    assert "Partition=long" in out and "TimeLimit=02:00:00" in out and "Comment=hpchub-test" in out
    hub.stop_server(user, "mini-configurable")
    assert slurm.squeue(user) == []


def test_gpus_are_per_node_as_the_form_says(hub: minihpc.Hub, slurm: minihpc.Slurm) -> None:
    # The form, the schema and the validator mean GPUs per node (partition gpu: maxGpus 2
    # per node, 2 nodes). Two nodes with two GPUs each must give the job four GPUs.
    user = "hpcalice"
    r = hub.start_server(user, "mini-configurable", {"partition": "gpu", "nodes": 2, "gpus": 2})
    assert r.status_code in (201, 202), r.text
    try:
        hub.wait_ready(user, "mini-configurable")
        (job,) = running_jobs(slurm, user)
        detail = minihpc.run("scontrol", "show", "job", "-d", job["id"], env=slurm.env).stdout
        # What Slurm allocated: two GPUs on each of the two nodes.
        assert "NumNodes=2 " in detail, detail
        assert "JOB_GRES=gpu:4" in detail, detail
        per_node = re.findall(r"^\s+Nodes=(\S+) .*GRES=gpu:(\d+)", detail, re.M)
        assert per_node == [("gpu[01-02]", "2")] or sorted(per_node) == [("gpu01", "2"), ("gpu02", "2")], (
            detail
        )
        # What it was asked: a per-node request (squeue %b is the job's TRES per node).
        asked = minihpc.run("squeue", "-h", "-j", job["id"], "-o", "%b", env=slurm.env).stdout.strip()
        assert asked == "gres:gpu:2", asked
        # The notebook itself sees its node's two GPUs.
        (pid,) = minihpc.user_processes(user, hub)
        environ = minihpc.Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert b"CUDA_VISIBLE_DEVICES=0,1" in environ
    finally:
        hub.stop_server(user, "mini-configurable")
    assert slurm.squeue(user) == []


def test_email_on_start_reaches_the_job_slurm_received(hub: minihpc.Hub, slurm: minihpc.Slurm) -> None:
    # A user choice on every Slurm level: here a fixed level (its "Options…" form).
    user = "hpcbob"
    r = hub.start_server(user, "mini-exclusive", {"email_on_start": True})
    assert r.status_code in (201, 202), r.text
    try:
        hub.wait_ready(user, "mini-exclusive")
        (job,) = running_jobs(slurm, user)
        out = minihpc.run("scontrol", "show", "job", job["id"], env=slurm.env).stdout
        assert re.search(r"\bMailUser=hpcbob\b", out) and re.search(r"\bMailType=BEGIN\b", out), out
    finally:
        hub.stop_server(user, "mini-exclusive")
    assert slurm.squeue(user) == []


def test_running_server_survives_slurmctld_outage(hub: minihpc.Hub, slurm: minihpc.Slurm) -> None:
    user = "hpcalice"
    hub.start_server(user, "mini-exclusive")
    hub.wait_ready(user, "mini-exclusive")
    (job,) = running_jobs(slurm, user)
    errors = ("hpchub_scheduler_errors_total", frozenset({"system": "mini", "operation": "query"}.items()))
    errors_before = hub.metrics()[errors]
    slurm.stop_ctld()
    try:
        # The hub's polls (every 2s; squeue itself gives up after ~8s) meet "Unable to
        # contact slurm controller" — at least two of them, and the server stays.
        minihpc.wait_for(
            lambda: hub.log_text().count(f"cannot check Slurm job {job['id']}") >= 2,
            60,
            "polls during the outage",
        )
        # Operators see the outage in /hub/metrics too (hpchub_scheduler_errors_total).
        assert hub.metrics()[errors] > errors_before
        assert hub.server_model(user, "mini-exclusive")["ready"], "server dropped during the outage"
        hub.wait_answering(user, "mini-exclusive")
    finally:
        slurm.start_ctld()
    # The same job runs and the server is still there ...
    minihpc.wait_for(
        lambda: [j["id"] for j in running_jobs(slurm, user)] == [job["id"]], 60, "slurmctld back", interval=1
    )
    assert hub.server_model(user, "mini-exclusive")["ready"]
    # ... and the hub's polls succeed again: one sees the job cancelled from outside (a poll
    # stuck in the outage would keep the server forever, ready, as above).
    slurm.scancel(job["id"])
    minihpc.wait_for(
        lambda: hub.server_model(user, "mini-exclusive") is None,
        30,
        "a poll after the outage to see the cancel",
    )
    assert f"Slurm job {job['id']} of {user}:mini-exclusive ended: " in hub.log_text()
    minihpc.wait_for(lambda: slurm.squeue(user) == [], 60, "the cancelled job to leave the queue", interval=1)


def test_job_cancelled_from_outside_marks_server_stopped(hub: minihpc.Hub, slurm: minihpc.Slurm) -> None:
    user = "hpccarol"
    hub.start_server(user, "mini-exclusive")
    hub.wait_ready(user, "mini-exclusive")
    (job,) = running_jobs(slurm, user)
    slurm.scancel(job["id"])
    minihpc.wait_for(lambda: hub.server_model(user, "mini-exclusive") is None, 30, "hub to notice the cancel")
    # The status board may catch the job while it completes (after scancel) or once cancelled.
    ended = f"Slurm job {job['id']} of {user}:mini-exclusive ended: "
    assert f"{ended}CANCELLED" in hub.log_text() or f"{ended}COMPLETING" in hub.log_text()
    assert not hub.answers(user, "mini-exclusive")
    # Slurm lists a cancelled job as COMPLETING until its processes are gone; it must then
    # leave the queue (a job still RUNNING or PENDING here would fail the wait).
    minihpc.wait_for(lambda: slurm.squeue(user) == [], 60, "the cancelled job to leave the queue", interval=1)


def test_job_dying_before_the_server_answers_fails_fast_with_its_output(
    hub: minihpc.Hub, slurm: minihpc.Slurm
) -> None:
    user = "hpccarol"
    marker = minihpc.Path(f"/home/{user}/fail-start.sh")
    marker.write_text("echo 'hpchub-test: module python not found' >&2\nexit 3\n")
    try:
        r = hub.start_server(user, "mini-exclusive", {"startup_script": "~/fail-start.sh"})
    finally:
        marker.unlink()
    assert r.status_code == 500, r.text
    message = r.json()["message"]
    # Failed because the job ended, not because the start timeout ran out waiting for it.
    assert "ended (" in message and "before the server started" in message
    assert "module python not found" in message
    assert "did not start" not in message and "timeout" not in message.lower()
    assert slurm.squeue(user) == [] or all(
        j["state"] not in ("RUNNING", "PENDING") for j in slurm.squeue(user)
    )


@pytest.mark.parametrize(("body", "code"), minihpc.FAILING_STARTUP_SCRIPTS)
def test_failing_startup_script_in_a_job_is_reported_with_its_exit_code_and_output(
    hub: minihpc.Hub, slurm: minihpc.Slurm, body: str, code: int
) -> None:
    # The same words as on a login node (test_ssh_spawner.py), from the job's output file.
    user = "hpccarol"
    with minihpc.script_in_home(user, body, "failing-start") as script:
        r = hub.start_server(user, "mini-exclusive", {"startup_script": script})
    assert r.status_code == 500, r.text
    message = r.json()["message"]
    assert f"the start-up script {script} failed with exit code {code}; Slurm job " in message, message
    assert "before the server started" in message and "did not start" not in message
    # The last lines of its output, stdout and stderr both; not the report line itself.
    assert "loading my environment" in message and "environment myenv not found" in message
    assert "hpchub: the start-up script failed" not in message
    assert hub.server_model(user, "mini-exclusive") is None
    minihpc.wait_for(
        lambda: not [j for j in slurm.squeue(user) if j["state"] in ("RUNNING", "PENDING")],
        30,
        "the job to end",
    )


def progress_events(hub: minihpc.Hub, user: str, server: str, until: str, timeout: float = 30) -> list[dict]:
    """Read the hub's progress event stream until an event message contains ``until``."""
    import json

    import requests

    events: list[dict] = []
    url = f"{hub.api}/users/{user}/servers/{server}/progress"
    headers = {"Authorization": f"token {hub.api_token}"}
    deadline = time.monotonic() + timeout
    with requests.get(url, headers=headers, stream=True, timeout=timeout) as r:
        for line in r.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                events.append(json.loads(line[5:]))
                if until in events[-1].get("message", ""):
                    return events
            if time.monotonic() > deadline:
                break
    raise AssertionError(f"no progress event with {until!r}: {events}")


def test_pending_job_reports_reason_and_stop_cancels_it(hub: minihpc.Hub, slurm: minihpc.Slurm) -> None:
    user = "hpcbob"
    # Fill the node so the notebook's job has to wait for resources.
    with slurm.fill_node():
        r = hub.start_server(user, "mini-exclusive")
        assert r.status_code == 202, r.text  # still pending after the hub's slow-spawn timeout
        events = progress_events(hub, user, "mini-exclusive", "expected start")
        assert "is PENDING (Resources), expected start 20" in events[-1]["message"]
        (job,) = [j for j in slurm.squeue(user) if j["state"] == "PENDING"]
        model = hub.server_model(user, "mini-exclusive")
        assert model["pending"] == "spawn" and not model["ready"]
        # Stopping a queued server cancels its job; nothing is left in the queue.
        hub.stop_server(user, "mini-exclusive")
        assert slurm.squeue(user) == []
        assert f"Slurm job {job['id']} of {user}:mini-exclusive cancelled" in hub.log_text()


def test_start_timeout_cancels_the_queued_job(hub: minihpc.Hub, slurm: minihpc.Slurm) -> None:
    user = "hpccarol"
    with slurm.fill_node():
        r = hub.start_server(user, "impatient-exclusive")  # slurm.startTimeoutSeconds: 8
        # The start times out while the job is queued (before or after the hub's 10s
        # slow-spawn answer): either way the job must be cancelled and confirmed gone.
        assert r.status_code in (202, 500), r.text
        minihpc.wait_for(
            lambda: hub.server_model(user, "impatient-exclusive") is None, 40, "the start to time out"
        )
        minihpc.wait_for(lambda: slurm.squeue(user) == [], 20, "the job to be cancelled")
        log = hub.log_text()
        submitted = re.search(r"submitted Slurm job (\d+) for hpccarol:impatient-exclusive", log)
        assert submitted, "no job was submitted"
        assert f"Slurm job {submitted.group(1)} of {user}:impatient-exclusive cancelled" in log
        assert "failed to start in 8 seconds" in log
