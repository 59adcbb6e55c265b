"""The walltime guard's hub side against the real hub, proxy, sshd and Slurm: the status
endpoint hpchub-notebook polls, Extend within and past the cap (``scontrol show job`` has
the word), nobody reading or extending another user's server (API tokens, the server's own
token, a cookie, the console's form), the extend account's forced command refusing what a
hostile request asks, for real under sshd and sudo, a job the user submitted in another
shape than the hub's (an sbatch wrapper first on her PATH adding --partition, --exclusive or
--requeue) refused Extend, and SIGUSR1
before a login-node notebook's lifetime ends.

The hub here is this module's own: system "mini" with ``slurm.extend`` on (cap 1:00:00; the
exclusive level's job has 30 minutes), "brief" a login node whose notebooks live 3 minutes
and save 170 s before the end, "brisk" a Slurm level of 2-minute jobs that save 60 s before
it (the short guard of tests/walltime's 4-minute proof in JupyterLab).
"""

from __future__ import annotations

import copy
import pwd
import re
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.harness import minihpc

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVER = "mini-exclusive"  # partition debug, 30 minutes
SHARED = "mini-shared"
BRIEF = "brief-shared"
BRISK = "brisk-exclusive"  # 2 minutes, USR1 60 s before the end
ALICE, BOB = "hpcalice", "hpcbob"
HOSTILE = minihpc.HOSTILE_USER
CAP = "01:00:00"


@pytest.fixture(scope="module")
def walltime_hub(workdir: Path, sshd: minihpc.SSHD) -> Iterator[minihpc.Hub]:
    values = minihpc.test_values(sshd, [("127.0.0.1", sshd.port)])
    mini = values["systems"]["mini"]
    mini["slurm"]["extend"] = {
        "enabled": True,
        "user": minihpc.EXTEND_USER,
        "forceCommand": str(sshd.extend_command),
        "maxTime": CAP,
        "steps": ["00:10:00", "00:30:00"],
    }
    brief = copy.deepcopy(mini)
    brief["displayName"] = "Brief HPC"
    brief["singleuser"]["maxLifetime"] = "00:03:00"
    brief["walltime"] = {"saveBeforeSeconds": 170, "warningsMinutes": [2]}
    brief["levels"] = {"shared": brief["levels"]["shared"]}
    del brief["slurm"]
    values["systems"]["brief"] = brief
    # "brisk": a Slurm level whose 2-minute jobs ask for USR1 60 s before their end.
    brisk = copy.deepcopy(mini)
    brisk["displayName"] = "Brisk HPC"
    brisk["levels"] = {"exclusive": copy.deepcopy(mini["levels"]["exclusive"])}
    brisk["levels"]["exclusive"]["slurm"]["time"] = "00:02:00"
    brisk["walltime"] = {"saveBeforeSeconds": 60, "warningsMinutes": [1]}
    values["systems"]["brisk"] = brisk
    hub = minihpc.Hub(workdir, values, sshd.ca_key, name="walltime-hub")
    hub.start()
    for user in (ALICE, BOB, HOSTILE):
        hub.ensure_user(user)
    yield hub
    hub.stop_all_servers((ALICE, BOB, HOSTILE))
    hub.stop()


def notebook_process(hub: minihpc.Hub, user: str, server: str) -> str:
    return minihpc.wait_for(
        lambda: minihpc.notebook_process(hub, user, server), 60, f"{user}/{server}'s notebook process"
    )


def started(hub: minihpc.Hub, user: str, server: str, options: dict | None = None) -> dict[str, str]:
    """Start (or keep) ``server``; the notebook's environment (its token, its job id)."""
    if not (hub.server_model(user, server) or {}).get("ready"):
        outcome = hub.start_outcome(user, server, options)
        assert outcome == ("ready", ""), outcome
    return minihpc.environ(notebook_process(hub, user, server))


def user_token(hub: minihpc.Hub, user: str) -> str:
    r = hub.request("POST", f"/users/{user}/tokens", json={"note": "walltime test", "expires_in": 900})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def status_url(hub: minihpc.Hub, user: str, server: str, extend: bool = False) -> str:
    return f"{hub.api}/hpchub/servers/{user}/{server}" + ("/extend" if extend else "")


def ask(hub: minihpc.Hub, token: str, user: str, server: str, **kw: Any) -> requests.Response:
    """GET the status (or, with ``seconds``, POST an extension) with ``token``."""
    headers = {"Authorization": f"token {token}"}
    if "seconds" in kw:
        return requests.post(
            status_url(hub, user, server, True),
            headers=headers,
            json=kw.get("body", {"seconds": kw["seconds"]}),
            timeout=90,
        )
    return requests.get(status_url(hub, user, server), headers=headers, params=kw.get("params"), timeout=30)


def hms(minutes: int) -> str:
    """A time limit as ``scontrol show job`` writes it (under a day)."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def time_limit(slurm: minihpc.Slurm, job_id: str) -> str:
    out = minihpc.run("scontrol", "show", "job", job_id, env=slurm.env).stdout
    m = re.search(r"\bTimeLimit=(\S+)", out)
    assert m, out
    return m.group(1)


def test_the_notebook_gets_its_status_url_and_the_status_answers_from_the_servers_state(
    walltime_hub: minihpc.Hub, slurm: minihpc.Slurm
) -> None:
    hub = walltime_hub
    env = started(hub, ALICE, SERVER)
    assert (
        env["HPCHUB_STATUS_URL"] == f"{env['JUPYTERHUB_API_URL'].rstrip('/')}/hpchub/servers/{ALICE}/{SERVER}"
    )
    r = ask(hub, env["JUPYTERHUB_API_TOKEN"], ALICE, SERVER)
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["phase"] == "running" and s["time_limit_seconds"] == 1800
    assert s["warnings_seconds"] == [1800, 300] and s["save_before_seconds"] == 120
    assert s["extend"] == {
        "allowed": True,
        "max_ends_at": pytest.approx(s["ends_at"] - 1800 + 3600),
        "steps_seconds": [600, 1800],
        "reason": "",
    }
    assert s["cull"] is None  # culling is off in the test values
    # The end the hub reports is the job's start (as squeue says) + its limit.
    start = minihpc.run("squeue", "-h", "-j", env["SLURM_JOB_ID"], "-o", "%S", env=slurm.env).stdout.strip()
    assert s["ends_at"] == datetime.fromisoformat(start).timestamp() + 1800


def test_the_console_names_a_missing_notebook_package_until_it_calls(walltime_hub: minihpc.Hub) -> None:
    """The test notebooks have hpchub-notebook, which asks the hub at start: the console
    shows no hint; once the recorded client is gone (a hub without it), the hint shows."""
    hub = walltime_hub
    started(hub, ALICE, SERVER)

    def cell() -> str:
        page = hub.session_of(ALICE).get(f"{hub.public}/hub/home", timeout=30).content.decode()
        found = re.search(rf'id="cell-{SERVER}".*?</td>', page, re.S)
        assert found, page[:2000]
        return found.group(0)

    minihpc.wait_for(lambda: "Install hpchub-notebook" not in cell(), 90, "the package's first call")
    assert "hpc-extend-form" in cell() and "Extend +10 min" in cell()


def test_a_user_extends_within_the_cap_and_slurm_has_the_new_limit(
    walltime_hub: minihpc.Hub, slurm: minihpc.Slurm
) -> None:
    hub = walltime_hub
    env = started(hub, ALICE, SERVER)
    job, token = env["SLURM_JOB_ID"], env["JUPYTERHUB_API_TOKEN"]
    before = ask(hub, token, ALICE, SERVER).json()
    limit = before["time_limit_seconds"]
    r = ask(hub, token, ALICE, SERVER, seconds=600)
    assert r.status_code == 200, r.text
    after = r.json()
    assert after["time_limit_seconds"] == limit + 600
    assert after["ends_at"] == pytest.approx(before["ends_at"] + 600, abs=2)
    minutes = (limit + 600) // 60
    assert time_limit(slurm, job) == hms(minutes)
    assert f"Slurm job {job} of {ALICE}:{SERVER} extended" in hub.log_text()


def test_past_the_cap_is_refused_naming_the_cap_and_nothing_changes(
    walltime_hub: minihpc.Hub, slurm: minihpc.Slurm
) -> None:
    hub = walltime_hub
    env = started(hub, ALICE, SERVER)
    job, token = env["SLURM_JOB_ID"], env["JUPYTERHUB_API_TOKEN"]
    before = time_limit(slurm, job)
    r = ask(hub, token, ALICE, SERVER, seconds=3600)
    assert r.status_code == 403, r.text
    assert "past its cap of 1:00:00 (Mini HPC)" in r.json()["message"]
    assert time_limit(slurm, job) == before
    bad = ask(hub, token, ALICE, SERVER, seconds=90)
    assert bad.status_code == 400 and "whole minutes" in bad.json()["message"]


def test_another_users_tokens_cookie_and_form_cannot_read_or_extend(
    walltime_hub: minihpc.Hub, slurm: minihpc.Slurm
) -> None:
    """bob against alice's server with everything bob has: his own API token, his
    server's token, his browser session (cookie + XSRF) on the API and on the console's
    Extend form. Every answer is a refusal that says nothing about alice's server, and its
    job's time limit does not move."""
    hub = walltime_hub
    alice = started(hub, ALICE, SERVER)
    job = alice["SLURM_JOB_ID"]
    before = time_limit(slurm, job)
    bobs = [user_token(hub, BOB), started(hub, BOB, SHARED)["JUPYTERHUB_API_TOKEN"]]
    # JupyterHub's own answer to a token without the scope for that server: 404, the same
    # whether the server exists or not (nothing about alice's servers leaks).
    refusal = {"status": 404, "message": "No access to resources or resources not found"}
    for token in bobs:
        assert ask(hub, token, BOB, SHARED).status_code == 200  # his own server: yes
        for server in (SERVER, "mini-configurable"):  # alice's, and a name she has no server of
            assert ask(hub, token, ALICE, server).json() == refusal
            assert ask(hub, token, ALICE, server, seconds=600).json() == refusal
    session = hub.session_of(BOB)
    xsrf = {"X-XSRFToken": session.cookies.get("_xsrf", "")}
    api = session.post(
        status_url(hub, ALICE, SERVER, True).replace(hub.api, f"{hub.public}/hub/api"),
        json={"seconds": 600},
        headers=xsrf,
        timeout=30,
    )
    assert api.json() == refusal, api.text
    # The console's form names no user: bob's POST is about bob's own server of that name,
    # which he has none of.
    form = session.post(
        f"{hub.public}/hub/console/extend/{SERVER}",
        data={"_xsrf": session.cookies.get("_xsrf", ""), "seconds": "600"},
        allow_redirects=False,
        timeout=30,
    )
    assert form.status_code == 404, form.text
    assert time_limit(slurm, job) == before


def test_the_console_form_and_the_api_extend_the_users_own_server_with_xsrf(
    walltime_hub: minihpc.Hub, slurm: minihpc.Slurm
) -> None:
    hub = walltime_hub
    job = started(hub, ALICE, SERVER)["SLURM_JOB_ID"]
    session = hub.session_of(ALICE)
    xsrf = session.cookies.get("_xsrf", "")
    # Without the XSRF token a cookie gets nothing done (a page elsewhere cannot extend).
    url = f"{hub.public}/hub/api/hpchub/servers/{ALICE}/{SERVER}/extend"
    assert session.post(url, json={"seconds": 600}, timeout=30).status_code == 403
    no_xsrf = session.post(f"{hub.public}/hub/console/extend/{SERVER}", data={"seconds": "600"}, timeout=30)
    assert no_xsrf.status_code == 403
    before = time_limit(slurm, job)
    form = session.post(
        f"{hub.public}/hub/console/extend/{SERVER}",
        data={"_xsrf": xsrf, "seconds": "600"},
        allow_redirects=False,
        timeout=90,
    )
    assert form.status_code == 302 and form.headers["Location"].endswith("/hub/home"), form.text
    h, m, _ = (int(x) for x in before.split(":"))
    assert time_limit(slurm, job) == hms(h * 60 + m + 10)
    # Past the cap through the form: JupyterHub's error page with the hub's words.
    refused = session.post(
        f"{hub.public}/hub/console/extend/{SERVER}", data={"_xsrf": xsrf, "seconds": "1800"}, timeout=90
    )
    assert refused.status_code in (403, 409) and "cap of 1:00:00" in refused.content.decode()


def test_the_request_cannot_name_another_job(walltime_hub: minihpc.Hub, slurm: minihpc.Slurm) -> None:
    """The job an extension applies to is the server's own: a job id in the body (here
    bob's plain job, not a notebook) is ignored."""
    hub = walltime_hub
    env = started(hub, ALICE, SERVER)
    other = plain_job(slurm, BOB)
    try:
        before = time_limit(slurm, other)
        r = ask(
            hub,
            env["JUPYTERHUB_API_TOKEN"],
            ALICE,
            SERVER,
            seconds=600,
            body={"seconds": 600, "job_id": other},
        )
        assert r.status_code in (200, 403, 409), r.text
        assert time_limit(slurm, other) == before
    finally:
        slurm.scancel(other)


def plain_job(slurm: minihpc.Slurm, user: str, name: str = "analysis", partition: str = "debug") -> str:
    """A job ``user`` submitted themselves (not an hpchub notebook, whatever its name), 20 minutes."""
    r = minihpc.run(
        "runuser",
        "-u",
        user,
        "--",
        "sbatch",
        "--parsable",
        "--no-requeue",  # as the hub's: only the shape words tell it apart
        "-p",
        partition,
        "-t",
        "20",
        "-J",
        name,
        "-o",
        "/dev/null",
        "--wrap",
        "sleep 1200",
        env=slurm.env,
        cwd="/tmp",
    )
    return r.stdout.strip().split(";")[0]


def extend_as_account(sshd: minihpc.SSHD, workdir: Path, request: str) -> subprocess.CompletedProcess[str]:
    """``request`` sent by the OpenSSH client as the extend account (a certificate from the
    hub's CA) to the real sshd, whose ForceCommand runs the forced command."""
    key = sshd.user_key(workdir / "extend-key", minihpc.EXTEND_USER, "walltime-test")
    known = workdir / "extend-known-hosts"
    known.write_text(sshd.known_hosts([("127.0.0.1", sshd.port)]))
    return subprocess.run(
        [
            "ssh",
            "-p",
            str(sshd.port),
            "-i",
            str(key),
            "-o",
            f"UserKnownHostsFile={known}",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "--",
            f"{minihpc.EXTEND_USER}@127.0.0.1",
            request,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def squeue_field(slurm: minihpc.Slurm, job_id: str, field: str) -> str:
    return minihpc.run("squeue", "-h", "-j", job_id, "-o", field, env=slurm.env).stdout.strip()


def test_the_forced_command_refuses_hostile_requests_under_sshd(
    walltime_hub: minihpc.Hub, slurm: minihpc.Slurm, sshd: minihpc.SSHD, workdir: Path
) -> None:
    """The extend account's forced command, run by the real sshd (and sudo): another
    user's job, a job that is not an hpchub notebook, a job of hers named like one in
    another partition or node count (what she can submit herself), another notebook job's
    name, a QOS the job does not have, shell injection, a lower limit, the three-word
    request of an earlier hub, root mode asked for directly, anything but the one request:
    refused (126) naming why, and no time limit moves. The one good request does raise it."""
    hub = walltime_hub
    job = started(hub, ALICE, SERVER)["SLURM_JOB_ID"]
    name = squeue_field(slurm, job, "%j")
    # The exclusive level: partition debug, one node, no GPUs, nodes shared, not requeued.
    shape = f"{name} debug - - 1 0 shared no-requeue"
    rest = "0 shared no-requeue"
    plain = plain_job(slurm, ALICE)
    fake_name = "hpchub-0123456789abcdef"
    impostor = plain_job(slurm, ALICE, name=fake_name, partition="long")
    try:
        minihpc.wait_for(lambda: squeue_field(slurm, impostor, "%T") == "RUNNING", 60, "her own job running")
        limit = time_limit(slurm, job)
        h, m, _ = (int(x) for x in limit.split(":"))
        now = h * 60 + m
        marker = workdir / "injected"
        hostile = {
            f"extend {BOB} {job} {now + 5} {shape}": "is not hpcbob's",
            f"extend {ALICE} {plain} 60 {fake_name} debug - - 1 {rest}": "not an hpchub notebook job",
            f"extend {ALICE} {impostor} 60 {fake_name} debug - - 1 {rest}": (
                f"job {impostor} runs in partition long; the server asked for debug"
            ),
            f"extend {ALICE} {impostor} 60 {fake_name} long - - 2 {rest}": (
                f"job {impostor} has 1 node; the server asked for 2 nodes"
            ),
            f"extend {ALICE} {impostor} 60 {fake_name} - - - 1 {rest}": (
                f"job {impostor} runs in partition long; the server asked for Slurm's default (debug)"
            ),
            f"extend {ALICE} {impostor} 60 {fake_name} long - - 1 0 exclusive no-requeue": (
                f"job {impostor} does not hold its nodes whole (OverSubscribe=OK)"
            ),
            f"extend {ALICE} {impostor} 60 {fake_name} long - - 1 0 shared requeue": (
                f"job {impostor} is not requeueable; the server asked for requeue"
            ),
            f"extend {ALICE} {impostor} 60 {shape}": f"job {impostor} is {fake_name}, not the server's job {name}",
            f"extend {ALICE} {job} {now + 5} {name} debug urgentqos - 1 {rest}": "the server asked for urgentqos",
            f"extend {ALICE} {job} {now + 5} {name} debug - - 1 2 shared no-requeue": (
                f"job {job} has no GPUs; the server asked for 2 GPUs per node"
            ),
            f"extend {ALICE} {job} {now + 5}": "expected: extend",
            # The previous hub's request (no GPUs, exclusive, requeue), and one word too many.
            f"extend {ALICE} {job} {now + 5} {name} debug - - 1": "expected: extend",
            f"extend {ALICE} {job} {now + 5} {shape} 1": "expected: extend",
            f"extend {ALICE} {job} {now + 5} {name} debug - - 1 0 yes no-requeue": "expected: extend",
            f"extend {ALICE} {job} {now + 5} {name} debug;touch {marker} - - 1 {rest}": "expected: extend",
            f"extend {ALICE} {job} {now + 5} {shape}; touch {marker}": "expected: extend",
            f"extend {ALICE} {job} {now + 5} {name} $(touch {marker}) - - 1 {rest}": "expected: extend",
            f"extend {ALICE} {job} {now + 5} {name} debug - - 1 0 shared $(touch {marker})": "expected: extend",
            f"extend {ALICE} {job} {now + 5} {shape}\ntouch {marker}": "expected: extend",
            f"extend {ALICE} {job} `touch {marker}` {shape}": "expected: extend",
            f"extend {ALICE} {job} {now - 5} {shape}": "would not raise it",
            f"extend {ALICE} {job} 99999999 {shape}": "expected: extend",
            f"--root {ALICE} {job} {now + 5} {shape}": "not a request",
            f"scontrol update JobId={job} TimeLimit={now + 5}": "not a request",
            f"sudo -n {sshd.extend_command} --root {ALICE} {job} {now + 5} {shape}": "not a request",
            "id": "not a request",
            f"extend {ALICE} 99999 {now + 5} {shape}": "not a job squeue knows",
            f"extend ../root {job} {now + 5} {shape}": "expected: extend",
        }
        for request, why in hostile.items():
            r = extend_as_account(sshd, workdir, request)
            assert r.returncode == 126 and why in r.stderr, (request, r.returncode, r.stdout, r.stderr)
        assert not marker.exists()
        assert time_limit(slurm, job) == limit and time_limit(slurm, plain) == "00:20:00"
        assert time_limit(slurm, impostor) == "00:20:00"
        ok = extend_as_account(sshd, workdir, f"extend {ALICE} {job} {now + 5} {shape}")
        assert ok.returncode == 0, ok.stderr
        assert time_limit(slurm, job) == hms(now + 5)
    finally:
        slurm.scancel(plain)
        slurm.scancel(impostor)


@pytest.mark.parametrize(
    ("added", "server", "options", "field", "shown", "why"),
    [
        # A day's MaxTime where the level's partition (debug) has two hours.
        (
            "--partition=long",
            SERVER,
            None,
            "%P",
            "long",
            "runs in partition long; the server asked for debug",
        ),
        # The whole node held for the extended time (on a GPU node: mini01 runs alice's server).
        (
            "--exclusive",
            "mini-configurable",
            {"partition": "gpu"},
            "%h",
            "NO",
            "holds its nodes whole (OverSubscribe=NO); the server asked to share them",
        ),
        # Requeued, it could come back elsewhere (and on more nodes) with the raised limit.
        ("--requeue", SERVER, None, "%P", "debug", "is requeueable; the server asked for no-requeue"),
    ],
    ids=["partition", "exclusive", "requeue"],
)
def test_a_job_submitted_in_another_shape_than_the_hubs_is_not_extended(
    walltime_hub: minihpc.Hub,
    slurm: minihpc.Slurm,
    sshd: minihpc.SSHD,
    added: str,
    server: str,
    options: dict[str, Any] | None,
    field: str,
    shown: str,
    why: str,
) -> None:
    """The finding: an ``sbatch`` first on her PATH adds options to the hub's own job
    script (command-line options override #SBATCH): a partition with a longer MaxTime,
    ``--exclusive``, ``--requeue``. The job is the hub's (its name, the route check and the
    status all pass) and the server runs; Extend is refused with the login node's words
    naming the difference, and Slurm's TimeLimit stays."""
    hub = walltime_hub
    bindir = Path(pwd.getpwnam(HOSTILE).pw_dir) / ".hpchub-test-bin" / f"extend-{sshd.session}"
    bindir.mkdir(parents=True, exist_ok=True)
    wrapper = bindir / "sbatch"
    # Drops its own directory from PATH and runs the real sbatch with her options first.
    wrapper.write_text(f'#!/bin/sh\nPATH=${{PATH#*:}}\nexec sbatch {added} "$@"\n')
    wrapper.chmod(0o755)
    subprocess.run(["chown", "-R", f"{HOSTILE}:", str(bindir.parent)], check=True)
    with sshd.shell_startup(HOSTILE, f'export PATH="{bindir}:$PATH"\n'):
        try:
            env = started(hub, HOSTILE, server, options)
            job = env["SLURM_JOB_ID"]
            assert squeue_field(slurm, job, field) == shown  # the wrapper did submit it so
            if added == "--requeue":
                assert "Requeue=1" in minihpc.run("scontrol", "show", "job", job, env=slurm.env).stdout
            before = time_limit(slurm, job)
            status = ask(hub, user_token(hub, HOSTILE), HOSTILE, server).json()
            assert status["extend"]["allowed"], status  # the hub cannot see it; the login node can
            r = ask(hub, user_token(hub, HOSTILE), HOSTILE, server, seconds=600)
            assert r.status_code == 409, r.text
            assert r.json()["message"] == f"Mini HPC refused to extend job {job}: job {job} {why}"
            assert time_limit(slurm, job) == before
        finally:
            hub.stop_server(HOSTILE, server)
            wrapper.unlink()


def notebook_view(hub: minihpc.Hub, user: str, server: str) -> dict[str, Any]:
    """What the server's hpchub-notebook tells the browser (through the proxy)."""
    r = requests.get(
        f"{hub.public}/user/{user}/{server}/hpchub/status",
        headers={"Authorization": f"token {hub.api_token}"},
        timeout=10,
    )
    r.raise_for_status()
    return r.json()


def test_the_login_nodes_watchdog_signals_the_server_before_its_lifetime_ends(
    walltime_hub: minihpc.Hub,
) -> None:
    """A 3-minute login-node notebook that saves 170 s before its end: the watchdog sends
    SIGUSR1 to the server alone about 10 s in (jupyter_server logs its "is running at"
    lines again for it; hpchub-notebook plans the save for now), and the server keeps
    running: the same process answers through the proxy."""
    hub = walltime_hub
    env = started(hub, BOB, BRIEF)
    pid = notebook_process(hub, BOB, BRIEF)
    log = Path(env["JUPYTER_RUNTIME_DIR"]) / "server.log"

    def signalled() -> bool:
        return log.read_text(errors="replace").count("is running at:") >= 2

    minihpc.wait_for(signalled, 60, "the server's SIGUSR1 (its info lines logged again)", interval=1)
    view = notebook_view(hub, BOB, BRIEF)
    assert view["seconds_left"] < 175 and any(
        a["kind"] == "save" and a["due_in"] <= 0 for a in view["actions"]
    )
    assert notebook_process(hub, BOB, BRIEF) == pid and hub.answers(BOB, BRIEF)
    status = ask(hub, user_token(hub, BOB), BOB, BRIEF).json()
    assert status["time_limit_seconds"] == 180 and status["warnings_seconds"] == [120]
    assert status["save_before_seconds"] == 170 and status["extend"] is None
    hub.stop_server(BOB, BRIEF)


def test_slurms_signal_reaches_the_server_and_does_not_end_it(
    walltime_hub: minihpc.Hub, slurm: minihpc.Slurm
) -> None:
    """The short guard of ``make test-walltime``: a 2-minute Slurm job asked for
    ``--signal=B:USR1@60`` by the hub; real Slurm sends it to the batch shell 30-60 s in (it
    sends up to 30 s early, at its next 30-second check), the job script passes it to the
    server alone (jupyter_server logs its "is running at" lines
    again, hpchub-notebook plans the save), and the same server keeps answering."""
    hub = walltime_hub
    env = started(hub, BOB, BRISK)
    job = env["SLURM_JOB_ID"]
    assert time_limit(slurm, job) == "00:02:00"
    pid = notebook_process(hub, BOB, BRISK)
    log = Path(env["JUPYTER_RUNTIME_DIR"].rstrip("/") + ".out")  # the job's output (--output)
    assert "starting the server" in log.read_text(errors="replace")

    def signalled() -> bool:
        return log.read_text(errors="replace").count("is running at:") >= 2

    minihpc.wait_for(signalled, 100, "Slurm's USR1 at the server (its info lines logged again)", interval=1)
    assert notebook_process(hub, BOB, BRISK) == pid and hub.answers(BOB, BRISK)
    state = minihpc.run("squeue", "-h", "-j", job, "-o", "%T", env=slurm.env).stdout.strip()
    assert state == "RUNNING", state
    status = ask(hub, user_token(hub, BOB), BOB, BRISK).json()
    assert status["time_limit_seconds"] == 120 and status["save_before_seconds"] == 60
    hub.stop_server(BOB, BRISK)
