"""A hub killed while servers are queued or starting finds them again (adoption).

Each test SIGKILLs the real hub (no clean shutdown, as when its node or pod is lost) and
starts a new hub process on the same database, then checks with squeue and /proc that
the very same job / process is kept: no second sbatch, no lost queue place, no orphan.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from tests.harness import minihpc

from .test_slurm_spawner import progress_events

pytestmark = pytest.mark.integration

SERVER = "mini-exclusive"


def jobs(slurm: minihpc.Slurm, user: str) -> list[tuple[str, str]]:
    return [(j["id"], j["state"]) for j in slurm.squeue(user)]


def one_job(slurm: minihpc.Slurm, user: str, state: str) -> str:
    found = jobs(slurm, user)
    return found[0][0] if len(found) == 1 and found[0][1] == state else ""


def adopted_then_stopped(hub: minihpc.Hub, slurm: minihpc.Slurm, user: str, job: str) -> None:
    """The adopted server becomes ready on its own job (never a second one), and a stop
    leaves nothing in the queue (once Slurm has finished COMPLETING it)."""
    hub.wait_ready(user, SERVER, timeout=120)
    hub.wait_answering(user, SERVER)
    assert jobs(slurm, user) == [(job, "RUNNING")]
    hub.stop_server(user, SERVER)
    minihpc.wait_for(lambda: slurm.squeue(user) == [], 60, "the job to leave the queue", interval=1)


def test_queued_job_keeps_its_place_and_server_across_a_hub_kill(
    hub: minihpc.Hub, slurm: minihpc.Slurm
) -> None:
    user = "hpcalice"
    with slurm.fill_node():
        r = hub.start_server(user, SERVER)
        assert r.status_code == 202, r.text
        job = minihpc.wait_for(lambda: one_job(slurm, user, "PENDING"), 60, "the job to queue")
        hub.kill_hub()
        hub.start_hub()
        # The same job, still queued: its place in the queue is kept and nothing was resubmitted.
        assert jobs(slurm, user) == [(job, "PENDING")]
        model = minihpc.wait_for(
            lambda: (m := hub.server_model(user, SERVER)) and m["pending"] == "spawn" and m,
            60,
            "the server to be pending again",
        )
        assert not model["ready"]
        events = progress_events(hub, user, SERVER, "expected start")
        assert (
            f"Slurm job {job} on Mini HPC is PENDING (Resources), expected start 20" in events[-1]["message"]
        )
    # The blocker is gone: the job starts and the adopted server becomes ready.
    adopted_then_stopped(hub, slurm, user, job)


def test_job_that_started_while_the_hub_was_down_is_adopted(hub: minihpc.Hub, slurm: minihpc.Slurm) -> None:
    user = "hpcbob"
    with slurm.fill_node() as blocker:
        r = hub.start_server(user, SERVER)
        assert r.status_code == 202, r.text
        job = minihpc.wait_for(lambda: one_job(slurm, user, "PENDING"), 60, "the job to queue")
        hub.kill_hub()
        slurm.scancel(blocker)
        minihpc.wait_for(lambda: one_job(slurm, user, "RUNNING") == job, 60, "the job to run")
        # Wait until the server listens (its address file), so the new hub finds a
        # server that started while no hub was there.
        minihpc.wait_for(
            lambda: any(Path(f"/home/{user}/.hpchub/jobs").glob("*/address")), 60, "the job's address file"
        )
        hub.start_hub()
    adopted_then_stopped(hub, slurm, user, job)


def test_stop_of_an_adopted_queued_server_cancels_its_job(hub: minihpc.Hub, slurm: minihpc.Slurm) -> None:
    user = "hpccarol"
    with slurm.fill_node():
        r = hub.start_server(user, SERVER)
        assert r.status_code == 202, r.text
        job = minihpc.wait_for(lambda: one_job(slurm, user, "PENDING"), 60, "the job to queue")
        hub.kill_hub()
        hub.start_hub()
        minihpc.wait_for(
            lambda: (hub.server_model(user, SERVER) or {}).get("pending") == "spawn", 60, "the adoption"
        )
        # JupyterHub answers a DELETE of a server pending a start-up check with a 500;
        # an adopted server is a pending spawn, which a DELETE stops like any other.
        r = hub.request("DELETE", f"/users/{user}/servers/{SERVER}")
        assert r.status_code in (202, 204), r.text
        minihpc.wait_for(lambda: hub.server_model(user, SERVER) is None, 90, "the server to stop")
        assert slurm.squeue(user) == []
        assert f"Slurm job {job} of {user}:{SERVER} cancelled" in hub.log_text()


def test_ssh_launch_in_flight_when_the_hub_is_killed_is_adopted(hub: minihpc.Hub) -> None:
    user = "hpcalice"
    home = Path(f"/home/{user}")
    script = home / "slow-start.sh"
    script.write_text("sleep 6\n")  # the launch is in flight for a while
    before = set((home / ".hpchub/ssh").glob("*")) if (home / ".hpchub/ssh").exists() else set()
    t0 = time.time()
    try:
        requests.post(
            f"{hub.api}/users/{user}/servers/mini-shared",
            headers={"Authorization": f"token {hub.api_token}"},
            json={"user_options": {"startup_script": "~/slow-start.sh"}},
            timeout=3,
        )
    except requests.exceptions.ReadTimeout:
        pass  # the hub answers after its 10s slow-spawn timeout; it is killed before that

    def launching() -> Path | None:
        for d in (home / ".hpchub/ssh").glob("*"):
            if d not in before and (d / "launcher").exists() and d.stat().st_mtime >= t0 - 1:
                return d
        return None

    run_dir = minihpc.wait_for(launching, 60, "the launcher to start")
    hub.kill_hub()
    hub.start_hub()
    try:
        hub.wait_ready(user, "mini-shared", timeout=120)
        hub.wait_answering(user, "mini-shared")
        pids = minihpc.user_processes(user, hub)
        assert len(pids) == 1, pids  # the one launched before the kill; nothing relaunched
        assert (run_dir / "pid").read_text().strip() == pids[0]
    finally:
        script.unlink()
    hub.stop_server(user, "mini-shared")
    minihpc.wait_for(lambda: not minihpc.user_processes(user, hub), 15, "the notebook process to exit")


def test_tunnel_server_follows_the_hub_to_its_new_address(hub: minihpc.Hub) -> None:
    """On Kubernetes a new hub pod has a new IP: the forwards are re-opened there and the
    route and DB row move to it. Here the new "pod" listens and is reached on 127.0.0.2."""
    import yaml

    user, server = "hpccarol", "tunnel-shared"
    r = hub.start_server(user, server)
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(user, server)
    hub.wait_answering(user, server)
    assert hub.routes()[f"/user/{user}/{server}"]["target"].startswith("http://127.0.0.1:")
    original = hub.values_file.read_text()
    moved = yaml.safe_load(original)
    moved["systems"]["tunnel"]["ssh"].update(tunnelBindAddress="127.0.0.2", tunnelConnectHost="127.0.0.2")
    hub.kill_hub()
    hub.values_file.write_text(yaml.safe_dump(moved))
    try:
        hub.start_hub()
        minihpc.wait_for(
            lambda: (
                hub.routes()
                .get(f"/user/{user}/{server}", {})
                .get("target", "")
                .startswith("http://127.0.0.2:")
            ),
            60,
            "the route to move to the new address",
        )
        hub.wait_answering(user, server)
        assert hub.server_model(user, server)["ready"]
        # The notebook -> hub direction too: the notebook checks a new token with the new
        # hub through its relay and the re-opened Unix-socket forward.
        r = hub.request("POST", f"/users/{user}/tokens", json={"note": "tunnel move", "expires_in": 600})
        assert r.status_code in (200, 201), r.text
        token = r.json()["token"]
        minihpc.wait_for(
            lambda: (
                requests.get(
                    f"{hub.public}/user/{user}/{server}/api/contents",
                    headers={"Authorization": f"token {token}"},
                    timeout=10,
                    allow_redirects=False,
                ).status_code
                == 200
            ),
            60,
            "the notebook to accept a token checked with the new hub",
        )
        hub.stop_server(user, server)
    finally:
        hub.kill_hub()
        hub.values_file.write_text(original)
        hub.start_hub()
