"""The fault suite: real faults done to the real hub, Slurm and sshd, with servers in every
state. Each case records rows of the reliability table (docs/reliability.md); the `case`
fixture then stops everything and fails on any job or process left (squeue, ps).

Kubernetes faults (hub pod deleted, helm upgrade) are in tests/e2e/test_45_faults.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from tests.harness import minihpc
from tests.integration.test_slurm_spawner import progress_events

from .conftest import (
    OUTAGE_SECONDS,
    Row,
    Table,
    extra_hubs,
    job_of,
    node_full,
    notebook_processes,
    reaper_rows,
    script_in_home,
    spawner_state,
    sshd_down,
    sshd_sessions_cut,
)

pytestmark = pytest.mark.integration

ALICE, BOB, CAROL = minihpc.USERS


def start(hub: minihpc.Hub, user: str, server: str, options: dict | None = None) -> requests.Response:
    r = hub.start_server(user, server, options)
    assert r.status_code in (201, 202), f"{user}/{server}: {r.status_code} {r.text}"
    return r


def start_async(hub: minihpc.Hub, user: str, server: str, options: dict | None = None) -> None:
    """POST a start without waiting for the hub's answer (it comes after the 10s slow-spawn
    timeout, by when a fault may have been done to the hub)."""
    try:
        requests.post(
            f"{hub.api}/users/{user}/servers/{server}",
            headers={"Authorization": f"token {hub.api_token}"},
            json={"user_options": options or {}},
            timeout=2,
        )
    except requests.exceptions.ReadTimeout:
        pass


def ready_and_answering(hub: minihpc.Hub, user: str, server: str, timeout: float = 180) -> None:
    hub.wait_ready(user, server, timeout=timeout)
    hub.wait_answering(user, server, timeout=60)


def launching_dir(user: str, since: float) -> Path | None:
    base = Path(f"/home/{user}/.hpchub/ssh")
    for d in base.glob("*") if base.exists() else ():
        if (d / "launcher").exists() and d.stat().st_mtime >= since - 1:
            return d
    return None


def last_progress(hub: minihpc.Hub, user: str, server: str, until: str) -> str:
    return str(progress_events(hub, user, server, until, timeout=60)[-1]["message"])


def test_hub_sigkill_with_servers_in_every_state(
    hub: minihpc.Hub, slurm: minihpc.Slurm, marker: str, table: Table, case: list[Row]
) -> None:
    running = [
        (ALICE, "mini-shared"),
        (ALICE, "mini-exclusive"),
        (BOB, "tunnel-shared"),
        (BOB, "tunnel-exclusive"),
    ]
    for user, server in running:
        start_async(hub, user, server)
    for user, server in running:
        ready_and_answering(hub, user, server)
    pids = set(notebook_processes(marker))
    running_jobs = sorted(job_of(slurm, ALICE) + job_of(slurm, BOB))
    # Starting: the job runs, its server is not up yet (a slow start-up script).
    slow = script_in_home(CAROL, f"faults-slow-{marker}.sh", "sleep 40\n")
    start_async(hub, CAROL, "mini-exclusive", {"startup_script": f"~/{slow.name}"})
    starting = minihpc.wait_for(lambda: job_of(slurm, CAROL, "RUNNING"), 60, "carol's job to run")[0]
    with node_full(slurm) as blocker:
        # Queued: no CPU is free.
        start_async(hub, CAROL, "mini-configurable")
        queued = minihpc.wait_for(lambda: job_of(slurm, CAROL, "PENDING"), 60, "carol's job to queue")[0]
        # Launching: an SSH start in flight (its start-up script takes a while).
        slow_ssh = script_in_home(BOB, f"faults-slow-{marker}.sh", "sleep 8\n")
        t0 = time.time()
        start_async(hub, BOB, "mini-shared", {"startup_script": f"~/{slow_ssh.name}"})
        minihpc.wait_for(lambda: launching_dir(BOB, t0), 60, "bob's launcher")
        assert spawner_state(hub, BOB, "mini-shared")["phase"] == "launching"

        hub.kill_hub()
        hub.start_hub()

        # Running servers: ready and answering through the proxy at once, same processes/jobs.
        for user, server in running:
            ready_and_answering(hub, user, server, timeout=60)
        kept = sum(hub.answers(u, s) for u, s in running)
        assert pids <= set(notebook_processes(marker))
        assert sorted(job_of(slurm, ALICE) + job_of(slurm, BOB, "RUNNING")) == running_jobs
        case.append(
            table.add(
                "hub SIGKILL while servers run (SSH, Slurm, tunnel SSH, tunnel Slurm)",
                kept=(kept, len(running)),
                saw="nothing: the notebooks kept answering through the proxy; ready again after the restart",
            )
        )
        # Queued: the same job, still pending; the server is a pending spawn again.
        assert job_of(slurm, CAROL, "PENDING") == [queued]
        queued_msg = last_progress(hub, CAROL, "mini-configurable", "expected start")
        assert f"Slurm job {queued} on Mini HPC is PENDING" in queued_msg
        minihpc.run("scancel", blocker, env=slurm.env)
        ready_and_answering(hub, CAROL, "mini-configurable")
        assert queued in job_of(slurm, CAROL, "RUNNING")
        case.append(
            table.add(
                "hub SIGKILL while a Slurm server is queued",
                queue=(1, 1),
                saw=f'console/progress after the restart: "{queued_msg}"; ready when the job started',
            )
        )
    # Starting: adopted; ready once its server answers.
    ready_and_answering(hub, CAROL, "mini-exclusive")
    assert starting in job_of(slurm, CAROL, "RUNNING")
    case.append(
        table.add(
            "hub SIGKILL while a Slurm server is starting (job running, server not up)",
            kept=(1, 1),
            saw="Starting, then Running: the same job, adopted when its server answered",
        )
    )
    ready_and_answering(hub, BOB, "mini-shared")
    bobs = [
        p
        for p in notebook_processes(marker)
        if p not in pids and minihpc.run("ps", "-o", "user=", "-p", p).stdout.strip() == BOB
    ]
    assert len(bobs) == 1, bobs  # the process launched before the kill, not a second one
    case.append(
        table.add(
            "hub SIGKILL during an SSH launch (launcher running)",
            kept=(1, 1),
            saw="Starting, then Running: the process the launcher started, found through its run directory",
        )
    )
    slow.unlink()
    slow_ssh.unlink()


def test_slurmctld_down_during_spawn_run_and_stop(
    hub: minihpc.Hub, slurm: minihpc.Slurm, table: Table, case: list[Row]
) -> None:
    start_async(hub, ALICE, "mini-exclusive")
    start_async(hub, CAROL, "mini-exclusive")
    ready_and_answering(hub, ALICE, "mini-exclusive")
    ready_and_answering(hub, CAROL, "mini-exclusive")
    alice_job = job_of(slurm, ALICE)
    carol_job = job_of(slurm, CAROL)[0]
    with node_full(slurm) as blocker:
        start_async(hub, BOB, "mini-exclusive")
        bob_job = minihpc.wait_for(lambda: job_of(slurm, BOB, "PENDING"), 60, "bob's job to queue")
        slurm.stop_ctld()
        t_down = time.monotonic()
        try:
            # A stop during the outage: accepted; the job goes to the reaper.
            r = hub.request("DELETE", f"/users/{CAROL}/servers/mini-exclusive")
            assert r.status_code in (202, 204), r.text
            minihpc.wait_for(lambda: hub.server_model(CAROL, "mini-exclusive") is None, 60, "carol's stop")
            assert [row["job_id"] for row in reaper_rows(hub)] == [carol_job]
            # A new start during the outage: refused with the scheduler's reason.
            r = hub.start_server(ALICE, "mini-configurable")
            new_start = r.json().get("message", "") if r.status_code == 500 else ""
            if r.status_code == 202:
                minihpc.wait_for(
                    lambda: hub.server_model(ALICE, "mini-configurable") is None, 120, "the start to fail"
                )
                new_start = last_failure(hub, ALICE, "mini-configurable")
            assert "slurm" in new_start.lower() or "submit" in new_start.lower(), new_start
            # The running server keeps answering; the queued spawn stays pending.
            while time.monotonic() - t_down < OUTAGE_SECONDS:
                assert hub.answers(ALICE, "mini-exclusive"), "the running server stopped answering"
                assert (hub.server_model(BOB, "mini-exclusive") or {}).get("pending") == "spawn"
                time.sleep(5)
            during = last_progress(hub, BOB, "mini-exclusive", "not answering")
        finally:
            slurm.start_ctld()
        minihpc.run("scancel", blocker, env=slurm.env)
        ready_and_answering(hub, BOB, "mini-exclusive")
    assert job_of(slurm, BOB) == bob_job and job_of(slurm, ALICE) == alice_job
    assert hub.server_model(ALICE, "mini-exclusive")["ready"]
    # The reaper cancels carol's job once slurmctld is back.
    minihpc.wait_for(lambda: not job_of(slurm, CAROL), 150, "the reaper to cancel carol's job", interval=2)
    minihpc.wait_for(
        lambda: not reaper_rows(hub) or all(r["job_id"] != carol_job for r in reaper_rows(hub)),
        30,
        "row done",
    )
    down = f"slurmctld down {OUTAGE_SECONDS:.0f} s"
    case += [
        table.add(
            f"{down} during a spawn (job queued)", queue=(1, 1), saw=f'progress: "{during}"; ready after'
        ),
        table.add(
            f"{down} while a Slurm server runs", kept=(1, 1), saw="nothing: the notebook kept answering"
        ),
        table.add(
            f"{down} during a stop",
            saw="stop accepted at once; the hub's reaper cancelled the job after slurmctld returned",
        ),
        table.add(f"{down}: a new start", saw=f'start refused: "{new_start[:160]}"'),
    ]


def last_failure(hub: minihpc.Hub, user: str, server: str) -> str:
    """The message /progress gives for a start that failed."""
    events = []
    url = f"{hub.api}/users/{user}/servers/{server}/progress"
    with requests.get(url, headers={"Authorization": f"token {hub.api_token}"}, stream=True, timeout=30) as r:
        if r.status_code != 200:
            return r.text
        for line in r.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                import json

                events.append(json.loads(line[5:]))
    return str(events[-1].get("message", "")) if events else ""


def test_sshd_restarted_mid_spawn(
    hub: minihpc.Hub, slurm: minihpc.Slurm, login1: minihpc.SSHD, marker: str, table: Table, case: list[Row]
) -> None:
    start_async(hub, ALICE, "mini-exclusive")
    ready_and_answering(hub, ALICE, "mini-exclusive")
    job = job_of(slurm, ALICE)
    slow = script_in_home(BOB, f"faults-slow2-{marker}.sh", "sleep 8\n")
    t0 = time.time()
    start_async(hub, BOB, "mini-shared", {"startup_script": f"~/{slow.name}"})
    minihpc.wait_for(lambda: launching_dir(BOB, t0), 60, "bob's launcher")
    sshd_sessions_cut(login1)  # every open SSH connection of the hub drops
    ready_and_answering(hub, BOB, "mini-shared")
    assert (
        len(
            [
                p
                for p in notebook_processes(marker)
                if minihpc.run("ps", "-o", "user=", "-p", p).stdout.strip() == BOB
            ]
        )
        == 1
    )
    minihpc.wait_for(lambda: hub.answers(ALICE, "mini-exclusive"), 30, "alice's server")
    assert job_of(slurm, ALICE) == job
    slow.unlink()
    case += [
        table.add(
            "sshd restarted (all SSH sessions cut) during an SSH launch",
            kept=(1, 1),
            saw="Starting, then Running: the launch broke off and the server was found through its run directory",
        ),
        table.add("sshd restarted while a Slurm server runs", kept=(1, 1), saw="nothing"),
    ]


def test_login_host_down_fails_over(
    hub: minihpc.Hub,
    slurm: minihpc.Slurm,
    login1: minihpc.SSHD,
    login2: minihpc.SSHD,
    marker: str,
    table: Table,
    case: list[Row],
) -> None:
    start_async(hub, ALICE, "mini-shared")
    start_async(hub, ALICE, "mini-exclusive")
    ready_and_answering(hub, ALICE, "mini-shared")
    ready_and_answering(hub, ALICE, "mini-exclusive")
    on_login1 = spawner_state(hub, ALICE, "mini-shared")
    assert on_login1["remote_host"].endswith(f":{login1.port}")
    job = job_of(slurm, ALICE)
    sshd_down(login1)
    try:
        # The Slurm server is polled through login2; a new start goes to login2.
        start(hub, BOB, "mini-shared")
        ready_and_answering(hub, BOB, "mini-shared")
        assert spawner_state(hub, BOB, "mini-shared")["remote_host"].endswith(f":{login2.port}")
        start_async(hub, CAROL, "mini-exclusive")
        ready_and_answering(hub, CAROL, "mini-exclusive")
        time.sleep(3 * hub.poll_interval)
        assert hub.server_model(ALICE, "mini-exclusive")["ready"] and job_of(slurm, ALICE) == job
        assert hub.answers(ALICE, "mini-exclusive")
        # A hub restart while the login node is down: the check of alice's notebook there
        # fails; it is retried (the server kept, still routed), never read as "gone".
        hub.kill_hub()
        hub.start_hub()
        model = minihpc.wait_for(lambda: hub.server_model(ALICE, "mini-shared"), 60, "alice's server kept")
        assert model["pending"] == "spawn" or model["ready"], model
        assert hub.answers(ALICE, "mini-shared"), "the route of the kept server was dropped"
        ready_and_answering(hub, ALICE, "mini-exclusive", timeout=60)
        # A notebook on the dead login node cannot be stopped now: the stop is accepted
        # and the reaper holds it until the node is back.
        r = hub.request("DELETE", f"/users/{ALICE}/servers/mini-shared")
        assert r.status_code in (202, 204), r.text
        minihpc.wait_for(lambda: hub.server_model(ALICE, "mini-shared") is None, 120, "alice's stop")
        held = [row for row in reaper_rows(hub) if row["backend"] == "ssh"]
        assert len(held) == 1 and held[0]["host"].endswith(f":{login1.port}"), reaper_rows(hub)
    finally:
        login1.start()
    minihpc.wait_for(
        lambda: str(on_login1["pid"]) not in notebook_processes(marker),
        150,
        "the reaper to stop alice's notebook on login1",
        interval=2,
    )
    case += [
        table.add(
            "login host down: a Slurm server submitted through it",
            kept=(1, 1),
            saw="nothing: polled through the other login host",
        ),
        table.add(
            "login host down: new SSH and Slurm starts", saw="nothing: started on the other login host"
        ),
        table.add(
            "login host down, then a hub restart: a notebook on it",
            kept=(1, 1),
            saw="Starting (being checked) while the node was down; the notebook kept answering",
        ),
        table.add(
            "login host down: stop of a notebook running on it",
            saw="stop accepted; the reaper stopped the process when the login node returned",
        ),
    ]


def test_running_job_requeued(hub: minihpc.Hub, slurm: minihpc.Slurm, table: Table, case: list[Row]) -> None:
    # Default: notebook jobs are submitted with --no-requeue; Slurm refuses to requeue them.
    start(hub, ALICE, "mini-exclusive")
    ready_and_answering(hub, ALICE, "mini-exclusive")
    (job,) = job_of(slurm, ALICE)
    r = minihpc.run("scontrol", "requeue", job, check=False, env=slurm.env)
    assert r.returncode != 0, "Slurm requeued a --no-requeue job"
    time.sleep(2 * hub.poll_interval)
    assert job_of(slurm, ALICE, "RUNNING") == [job] and hub.answers(ALICE, "mini-exclusive")
    # Where values allow requeue: the job comes back with a new port; the route follows.
    start(hub, BOB, "requeue-exclusive")
    ready_and_answering(hub, BOB, "requeue-exclusive")
    (bjob,) = job_of(slurm, BOB)
    before = hub.routes()[f"/user/{BOB}/requeue-exclusive"]["target"]
    minihpc.run("scontrol", "requeue", bjob, env=slurm.env)
    minihpc.wait_for(
        lambda: hub.routes().get(f"/user/{BOB}/requeue-exclusive", {}).get("target") not in (None, before),
        240,
        "the route to follow the requeued job",
        interval=1,
    )
    hub.wait_answering(BOB, "requeue-exclusive", timeout=60)
    assert job_of(slurm, BOB, "RUNNING") == [bjob]
    assert f"Slurm job {bjob} of {BOB}:requeue-exclusive now runs on" in hub.log_text()
    case += [
        table.add(
            f"running job requeued (scontrol requeue {job}), default --no-requeue",
            kept=(1, 1),
            saw=f"nothing: Slurm refused ({r.stderr.strip()[:80]})",
        ),
        table.add(
            "running job requeued where slurm.requeue allows it",
            kept=(1, 1),
            saw="502 while the job was requeued, then the notebook again (kernels restarted); route moved to the new port",
        ),
    ]


def test_malformed_api_requests(
    hub: minihpc.Hub, slurm: minihpc.Slurm, marker: str, table: Table, case: list[Row]
) -> None:
    start(hub, ALICE, "mini-exclusive")
    start(hub, ALICE, "mini-shared")
    ready_and_answering(hub, ALICE, "mini-exclusive")
    ready_and_answering(hub, ALICE, "mini-shared")
    jobs, procs = job_of(slurm), set(notebook_processes(marker))
    bad_bodies: list[tuple[str, str, object]] = []
    names = [
        "mini-nosuch",
        "nosuch-shared",
        "MINI-SHARED",
        "mini",
        "a" * 40,
        "mini-shared%2F..",
        "-",
        "mini-exclusive",
    ]
    options = [
        {"nodes": "x"},
        {"nodes": -1},
        {"time": "99:99:99"},
        {"partition": "nope"},
        {"partition": "debug; rm -rf ~"},
        {"account": "$(id)"},
        {"extra_directives": ["--wrap=rm -rf ~"]},
        {"extra_directives": "--mem=1G"},
        {"startup_script": "; touch /tmp/pwned"},
        {"startup_script": "../../etc/passwd"},
        {"qos": ["normal"]},
        {"gpus": 10**9},
        {"reservation": "\n#SBATCH --uid=0"},
        {"version": {"x": 1}},
        {"nodes": None, "time": []},
    ]
    for name in names:
        for opts in options:
            bad_bodies.append(("POST", f"/users/{BOB}/servers/{name}", {"user_options": opts}))
    # (An empty JSON list or null is what JupyterHub reads as "no body": a plain start.)
    for raw in [
        "{",
        '{"user_options": [1]}',
        '{"user_options": 5}',
        '{"user_options": "x"}',
        "\x00\xff",
        "a" * 100_000,
    ]:
        for name in ("mini-configurable", "mini-shared", "mini-nosuch"):
            bad_bodies.append(("RAW", f"/users/{CAROL}/servers/{name}", raw))
    statuses: dict[int, int] = {}
    for method, path, body in bad_bodies[:179]:
        if method == "RAW":
            r = requests.post(
                hub.api + path,
                data=str(body).encode("utf-8", "surrogateescape"),
                headers={"Authorization": f"token {hub.api_token}", "Content-Type": "application/json"},
                timeout=60,
            )
        else:
            r = hub.request(method, path, json=body)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
    extra = [
        ("DELETE", f"/users/{BOB}/servers/mini-nosuch"),
        ("DELETE", "/users/nosuchuser/servers/mini-shared"),
        ("GET", f"/users/{BOB}/servers/mini-nosuch/progress"),
        ("PATCH", f"/users/{ALICE}/servers/mini-exclusive"),
        ("POST", "/users/%00/servers/mini-shared"),
    ]
    while sum(statuses.values()) < 200:
        method, path = extra[sum(statuses.values()) % len(extra)]
        r = hub.request(method, path)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
    assert sum(statuses.values()) == 200
    # Anything a stopped-in-time bad start left is stopped by the `case` fixture; what
    # matters here: no 5xx, nothing submitted or launched, the running servers kept.
    five = {k: v for k, v in statuses.items() if k >= 500}
    assert not five, statuses
    time.sleep(2)
    assert job_of(slurm) == jobs and set(notebook_processes(marker)) == procs
    assert hub.answers(ALICE, "mini-exclusive") and hub.answers(ALICE, "mini-shared")
    codes = ", ".join(f"{n}x {k}" for k, n in sorted(statuses.items()))
    case.append(
        table.add(
            "200 malformed API requests (bad names, options, bodies, methods)",
            kept=(2, 2),
            saw=f"{codes} (no 5xx); nothing reached sbatch or a shell",
        )
    )


@pytest.fixture
def sshproxy_hub(workdir, login1: minihpc.SSHD, values: dict, marker: str):
    """A second hub on the same center whose users' only way onto the login nodes is the
    short-lived certificate their sign-in got from a key service (sshproxy; no hub CA)."""
    import copy

    import asyncssh

    from tests.harness.loop import LoopThread
    from tests.idp import keyservice

    loop = LoopThread()
    svc = keyservice.KeyService(
        {ALICE: keyservice.Account("pw-alice", "424242")},
        ca=asyncssh.read_private_key(str(login1.ca_key)),
        cert_lifetime=CERT_LIFETIME,
    )
    server, url = loop.call(keyservice.start, svc)
    v = copy.deepcopy(values)
    v["auth"] = {"type": "sshproxy", "allowAllUsers": True, "sshproxy": {"url": url}}
    v["sshCA"] = {"enabled": False}
    v.pop("identity", None)  # the service account's lookup needs the hub's CA
    h = minihpc.Hub(
        workdir,
        v,
        workdir / "no-ca",
        name="sshproxy-hub",
        traits={"SSHProxyAuthenticator": {"expiry_margin": 0}, "SlurmSpawner": {"stop_confirm_seconds": 10}},
    )
    h.start()
    extra_hubs.append(h)
    try:
        yield h
    finally:
        extra_hubs.remove(h)
        h.stop()
        loop.call(server.stop)
        loop.close()


CERT_LIFETIME = 150
# The hub treats a certificate as expired this long before it does (sshca.py margin).
EXPIRED_AFTER = CERT_LIFETIME - 60


def test_expired_credentials_never_block_poll_or_stop(
    sshproxy_hub: minihpc.Hub, slurm: minihpc.Slurm, marker: str, table: Table, case: list[Row]
) -> None:
    hub = sshproxy_hub
    t0 = time.monotonic()
    browser = hub.session_of(ALICE, "pw-alice", "424242")
    try:
        _expired_credentials_case(hub, slurm, marker, table, case, browser, t0)
    finally:
        # Whatever failed: fresh credentials let the hub (and its reaper) clean up.
        hub.session_of(ALICE, "pw-alice", "424242")


def _expired_credentials_case(
    hub: minihpc.Hub,
    slurm: minihpc.Slurm,
    marker: str,
    table: Table,
    case: list[Row],
    browser: requests.Session,
    t0: float,
) -> None:
    servers = ["mini-shared", "mini-exclusive"]
    for server in servers:
        start_async(hub, ALICE, server)
    for server in servers:
        ready_and_answering(hub, ALICE, server)
    assert time.monotonic() - t0 < EXPIRED_AFTER, (
        "the servers took longer to start than the certificate lived"
    )
    pids = set(notebook_processes(marker))
    job = job_of(slurm, ALICE)
    time.sleep(max(0.0, EXPIRED_AFTER - (time.monotonic() - t0)) + 3 * hub.poll_interval)
    # Expired: polls go on over the connection still open; the servers are kept.
    for server in servers:
        assert hub.server_model(ALICE, server)["ready"] and hub.answers(ALICE, server)
    assert "using an open connection" in hub.log_text()
    # A restart: no connection is open any more; the servers answer, so they are kept.
    hub.kill_hub()
    hub.start_hub()
    for server in servers:
        ready_and_answering(hub, ALICE, server, timeout=60)
    assert pids <= set(notebook_processes(marker)) and job_of(slurm, ALICE) == job
    # The console asks the user to sign in again: a banner while the sign-in itself is
    # still valid for the hub, the sign-in page once it has lapsed.
    r = browser.get(f"{hub.public}/hub/home", timeout=30, allow_redirects=False)
    redirected = r.status_code in (302, 303) and "/hub/login" in r.headers.get("Location", "")
    banner = r.status_code == 200 and "sign in again" in r.text
    assert redirected or banner, f"the console did not ask to sign in again: {r.status_code} {r.text[-2000:]}"
    asked = "the sign-in page" if redirected else "a banner: sign in again"
    # Stops cannot run now: accepted, held by the reaper until the user signs in again.
    for server in servers:
        r = hub.request("DELETE", f"/users/{ALICE}/servers/{server}")
        assert r.status_code in (202, 204), r.text
    for server in servers:
        minihpc.wait_for(lambda s=server: hub.server_model(ALICE, s) is None, 120, f"{server} stopped")
    assert len(reaper_rows(hub)) == 2 and job_of(slurm, ALICE) == job
    hub.session_of(ALICE, "pw-alice", "424242")
    minihpc.wait_for(
        lambda: not job_of(slurm, ALICE) and not (pids & set(notebook_processes(marker))),
        150,
        "the reaper to stop both once alice signed in again",
        interval=2,
    )
    case += [
        table.add(
            "user's SSH certificate expired (sshproxy), servers running",
            kept=(2, 2),
            saw="nothing: polls used the connection still open",
        ),
        table.add(
            "user's SSH certificate expired, then a hub restart",
            kept=(2, 2),
            saw=f"the console asked to sign in again ({asked}); the notebooks kept answering",
        ),
        table.add(
            "user's SSH certificate expired: stop",
            saw="stop accepted; the console says it is pending; done when the user signed in again",
        ),
    ]
