"""The ended cell against the real mini HPC center (sshd, Slurm, hub, proxy) in Chromium: a
server that ended says why, with the scheduler's figures and its last lines of output,
through a hub restart; Relaunch starts the same options (as Slurm sees them), Edit options
fills the form with them, Dismiss forgets the ending; the job's output never becomes markup;
no user sees, relaunches or dismisses another's ending; the admin view lists them all.

Endings are written by the spawners (hpchub.endings.record). Where a test needs an ending a
real end cannot give here, it records one in the hub's database as a spawner would, with
the figures a spawner reads from the scheduler (tests/unit/test_endings.py has the record).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from hpchub import endings
from hpchub.console.admin import ADMIN_ENDINGS
from hpchub.endings import CAUSES, Ending

from ..harness import minihpc
from . import test_console_hpc
from .helpers import landed_on_server
from .test_console_hpc import ADMIN, login

# sshd + Slurm + hub + proxy of the console's HPC tests, started again for this module.
center = test_console_hpc.center

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
GIB = 2**30
HOSTILE = '</pre><script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
# What each cause's cell says, with the figures a spawner records for it.
FIGURES: dict[str, dict] = {
    "time_limit": {"state": "TIMEOUT", "exit_code": "0:15", "elapsed_seconds": 3604, "limit_seconds": 3600},
    "out_of_memory": {
        "state": "OUT_OF_MEMORY",
        "exit_code": "0:125",
        "max_rss_bytes": int(3.9 * GIB),
        "requested_memory_bytes": 4 * GIB,
        "elapsed_seconds": 1500,
        "limit_seconds": 3600,
    },
    "node_failure": {"state": "NODE_FAIL", "exit_code": "0:0", "reason": "NodeDown", "elapsed_seconds": 600},
    "preempted": {"state": "PREEMPTED", "exit_code": "0:15", "elapsed_seconds": 900, "limit_seconds": 3600},
    "cancelled": {"state": "CANCELLED", "exit_code": "0:15", "elapsed_seconds": 120, "limit_seconds": 1800},
    "evicted": {"state": "Evicted", "reason": "Evicted", "requested_memory_bytes": 2 * GIB},  # a Spin pod
    "idle": {"idle_seconds": 3600, "by": "idle-culler"},
    "admin": {"by": "hpcadmin"},
    "lifetime": {"signal": "SIGTERM", "elapsed_seconds": 43200, "limit_seconds": 43200},
    "startup_script": {"exit_code": "127"},
    "start_failed": {"reason": "launch failed requeued held"},
    "exited": {"exit_code": "1", "elapsed_seconds": 30},
    "unknown": {},
}
FACT_TEXT = {  # a figure each cause's cell must show besides its words
    "time_limit": "1:00:04 of 1:00:00",
    "out_of_memory": "3.9 GiB used of 4.0 GiB requested",
    "node_failure": "NodeDown",
    "preempted": "PREEMPTED",
    "cancelled": "0:02:00 of 0:30:00",
    "evicted": "2.0 GiB requested",
    "idle": "idle-culler",
    "admin": "hpcadmin",
    "lifetime": "SIGTERM",
    "startup_script": "127",
    "start_failed": "launch failed requeued held",
    "exited": "0:00:30",
    "unknown": "Ended",
}


def engine_of(hub) -> Engine:
    """The hub's own database (the harness's hub keeps it in sqlite in its work dir)."""
    return create_engine(f"sqlite:///{hub.dir / 'jupyterhub.sqlite'}")


def record(hub, user: str, server: str, cause: str, **kw) -> Ending:
    system, _, level = server.partition("-")
    backend = "ssh" if level == "shared" else "slurm"
    e = Ending(username=user, server=server, system=system, level=level, backend=backend, cause=cause, **kw)
    endings.record(engine_of(hub), e)
    return e


def shown(hub, user: str, server: str) -> Ending | None:
    return endings.last(engine_of(hub), user, server, time.time() - 86400)


def job_fields(slurm, job_id: str) -> dict[str, str]:
    """The job as Slurm holds it: partition and time limit."""
    out = minihpc.run("squeue", "-h", "-j", job_id, "-o", "%P|%l", env=slurm.env).stdout.strip()
    partition, limit = out.split("|")
    return {"partition": partition, "time_limit": limit}


def form_start(page, hub, server: str, partition: str, time_limit: str) -> None:
    page.goto(f"{hub.public}/hub/console/options/{server}")
    page.get_by_label("Partition").select_option(partition)
    page.get_by_label("Time limit").fill(time_limit)
    page.get_by_role("button", name="Start").click()


def test_a_job_cancelled_outside_hpchub_shows_its_ended_cell_without_a_reload_and_relaunch_runs_the_same_options(
    browser, center, artifacts
):
    hub, slurm, user, server = center.hub, center.slurm, "hpcalice", "mini-configurable"
    ctx = browser.new_context(viewport={"width": 1300, "height": 900})
    page = ctx.new_page()
    try:
        login(page, hub, user)
        form_start(page, hub, server, "debug", "00:07:00")
        landed_on_server(page, user, server)
        hub.wait_ready(user, server, timeout=180)
        [job] = slurm.squeue(user)
        assert job_fields(slurm, job["id"]) == {"partition": "debug", "time_limit": "7:00"}
        options = hub.server_model(user, server)["user_options"]
        page.goto(hub.public + "/hub/home")
        cell = page.locator(f"#cell-{server}")
        expect(cell.locator(".hpc-state")).to_have_text("Running")
        page.evaluate("window.__sameDocument = true")  # gone if the page reloads

        # The poll that finds the job gone records its ending (hpchub.ends, ends-capture: from
        # sacct and the job's output) before the hub drops the server. Until that is on this
        # branch's main, the same record is written here a moment before the end; the real
        # one, written later, is the one the cell shows once it is (the checks hold for both).
        record(
            hub,
            user,
            server,
            "cancelled",
            details={"state": "CANCELLED", "exit_code": "0:15", "elapsed_seconds": 35, "limit_seconds": 420},
            log_tail=f"[I ServerApp] Jupyter Server is running\nslurmstepd: error: *** JOB {job['id']} ON mini01 CANCELLED AT 2026-12-06T04:00:00 ***\n",
            options=options,
        )
        expect(cell.locator(".hpc-state")).to_have_text("Running")  # a running server is not ended
        slurm.scancel(job["id"])  # outside hpchub, as an operator would
        minihpc.wait_for(lambda: hub.server_model(user, server) is None, 60, "the hub to notice the end")
        gone = time.monotonic()
        expect(cell.locator(".hpc-state")).to_have_text("Ended", timeout=5_000)
        print(f"ended cell drawn {time.monotonic() - gone:.1f} s after the hub removed the server")
        assert page.evaluate("window.__sameDocument") is True, "the console reloaded"
        expect(cell.locator(".hpc-detail")).to_have_text("Your server was cancelled outside hpchub.")
        expect(cell.locator(".hpc-ended-scheduler")).to_contain_text("State CANCELLED")
        expect(cell.locator(".hpc-ended-elapsed")).to_have_text(re.compile(r"^0:0\d:\d\d of 0:07:00$"))
        expect(cell.get_by_role("link", name=re.compile("^Configure"))).to_be_hidden()
        ended = shown(hub, user, server)
        assert ended is not None and ended.options == options, ended

        # The hub restarts (an upgrade): the ended cell is still there.
        hub.stop_hub()
        hub.start_hub()
        page.reload()
        cell = page.locator(f"#cell-{server}")
        expect(cell.locator(".hpc-state")).to_have_text("Ended")
        expect(cell.locator(".hpc-detail")).to_have_text("Your server was cancelled outside hpchub.")
        cell.locator(".hpc-ended-log summary").click()
        # slurmstepd's own line in the job's output.
        expect(cell.locator(".hpc-ended-log pre")).to_contain_text(f"JOB {job['id']} ON mini01 CANCELLED AT")

        # Relaunch: the same options, as Slurm sees them; starting clears the ending.
        cell.get_by_role("button", name=re.compile("^Relaunch Mini HPC, Configurable")).click()
        landed_on_server(page, user, server)
        hub.wait_ready(user, server, timeout=180)
        [again] = slurm.squeue(user)
        assert again["id"] != job["id"]
        assert job_fields(slurm, again["id"]) == {"partition": "debug", "time_limit": "7:00"}
        assert shown(hub, user, server) is None
        page.goto(hub.public + "/hub/home")
        expect(cell.locator(".hpc-state")).to_have_text("Running")
        expect(cell.locator(".hpc-ended")).to_have_count(0)
        # A stop the user asks for is no news (recorded as "user", not shown); one through
        # the hub's API with another's token is an administrator's.
        cell.get_by_role("button", name="Stop Mini HPC, Configurable").click()
        expect(cell.locator(".hpc-state")).to_have_text("Not running", timeout=60_000)
        page.reload()
        expect(cell.locator(".hpc-state")).to_have_text("Not running")
    finally:
        ctx.close()
        if hub.server_model(user, server):
            hub.stop_server(user, server)
        endings.clear(engine_of(hub), user, server)


def test_the_ended_cell_says_each_cause_with_its_figures(browser, center):
    hub, user, server = center.hub, "hpcbob", "mini-exclusive"
    hub.ensure_user(user)
    ctx = browser.new_context(viewport={"width": 1300, "height": 900})
    page = ctx.new_page()
    try:
        login(page, hub, user)
        for cause in sorted(set(CAUSES) - {"user"}):
            e = record(hub, user, server, cause, details=FIGURES[cause], options={})
            page.reload()
            cell = page.locator(f"#cell-{server}")
            expect(cell.locator(".hpc-state")).to_have_text(
                "Failed" if cause in ("start_failed", "startup_script") else "Ended"
            )
            expect(cell.locator(".hpc-detail")).to_have_text(f"Your server {e.words}.")
            expect(cell).to_contain_text(FACT_TEXT[cause])
            expect(cell.get_by_role("button", name=re.compile("^Relaunch"))).to_be_visible()
            expect(cell.get_by_role("button", name=re.compile("^Dismiss"))).to_be_visible()
            expect(cell.get_by_role("link", name=re.compile("^Start"))).to_be_hidden()
        # A stop the user asked for is no news: the cell is back to Not running.
        record(hub, user, server, "user", options={})
        page.reload()
        expect(page.locator(f"#cell-{server} .hpc-state")).to_have_text("Not running")

        # A time limit with its figures and its last lines open (the user guide's picture is
        # a real one: tests/walltime/test_walltime_lab.py).
        log = "".join(f"epoch {i}: loss {1 / (i + 1):.4f}\n" for i in range(40))
        record(
            hub,
            user,
            server,
            "time_limit",
            details={
                **FIGURES["time_limit"],
                "max_rss_bytes": int(1.7 * GIB),
                "requested_memory_bytes": 4 * GIB,
            },
            log_tail=log
            + "slurmstepd: error: *** JOB 1234 ON mini01 CANCELLED AT 2026-12-05T14:05:01 DUE TO TIME LIMIT ***\n",
            options={},
        )
        page.reload()
        cell = page.locator(f"#cell-{server}")
        expect(cell.locator(".hpc-detail")).to_have_text("Your server reached its time limit of 1:00:00.")
        expect(cell.locator(".hpc-ended-scheduler")).to_have_text("State TIMEOUT · ExitCode 0:15")
        expect(cell.locator(".hpc-ended-memory")).to_have_text("1.7 GiB used of 4.0 GiB requested")
        pre = cell.locator(".hpc-ended-log pre")
        expect(pre).to_be_hidden()  # collapsed until asked for
        cell.locator(".hpc-ended-log summary").click()
        expect(pre).to_contain_text("DUE TO TIME LIMIT")
        assert len(pre.inner_text().splitlines()) == 20
    finally:
        ctx.close()
        endings.clear(engine_of(hub), user, server)


def test_edit_options_fills_the_form_with_the_ended_runs_options_and_dismiss_forgets_it_without_javascript(
    browser, center
):
    hub, slurm, user, server = center.hub, center.slurm, "hpccarol", "mini-configurable"
    hub.ensure_user(user)
    ended_options = {"partition": "long", "time": "02:30:00", "extra_directives": ["--comment=ended-run"]}
    record(hub, user, server, "time_limit", details={"limit_seconds": 9000}, options=ended_options)
    ctx = browser.new_context(java_script_enabled=False)
    page = ctx.new_page()
    try:
        login(page, hub, user)
        cell = page.locator(f"#cell-{server}")
        expect(cell.locator(".hpc-detail")).to_have_text("Your server reached its time limit of 2:30:00.")
        cell.get_by_role("link", name=re.compile("^Edit the options of Mini HPC, Configurable")).click()
        expect(page).to_have_url(re.compile(rf"/hub/console/options/{server}$"))
        expect(page.get_by_label("Partition")).to_have_value("long")
        expect(page.get_by_label("Time limit")).to_have_value("02:30:00")
        expect(page.get_by_label("Extra #SBATCH options")).to_have_value("--comment=ended-run")
        assert slurm.squeue(user) == []  # showing the form starts nothing

        page.goto(hub.public + "/hub/home")
        cell.get_by_role("button", name=re.compile("^Dismiss how Mini HPC, Configurable ended")).click()
        expect(page).to_have_url(re.compile(r"/hub/home$"))
        expect(cell.locator(".hpc-state")).to_have_text("Not running")
        expect(cell.locator(".hpc-ended")).to_have_count(0)
        expect(cell.get_by_role("link", name=re.compile("^Configure"))).to_be_visible()
        assert shown(hub, user, server) is None
        page.reload()
        expect(cell.locator(".hpc-state")).to_have_text("Not running")
    finally:
        ctx.close()
        endings.clear(engine_of(hub), user, server)


def test_relaunch_of_options_no_longer_allowed_starts_nothing_and_says_why(browser, center):
    hub, slurm, user, server = center.hub, center.slurm, "hpccarol", "mini-configurable"
    hub.ensure_user(user)
    # Allowed when it ran; the debug partition's limit is 1:00:00 now.
    record(hub, user, server, "node_failure", options={"partition": "debug", "time": "03:00:00"})
    ctx = browser.new_context()
    page = ctx.new_page()
    try:
        login(page, hub, user)
        page.locator(f"#cell-{server}").get_by_role("button", name=re.compile("^Relaunch")).click()
        expect(page.locator("#hpc-form-error")).to_contain_text(
            "The ended run's options are no longer allowed, so nothing was started."
        )
        expect(page.locator("[data-field=time] .hpc-error")).to_contain_text(
            "over the limit of partition 'debug' (01:00:00)"
        )
        expect(page.get_by_label("Time limit")).to_have_value("03:00:00")
        assert slurm.squeue(user) == []
        assert hub.server_model(user, server) is None
        assert shown(hub, user, server) is not None  # kept: nothing started
    finally:
        ctx.close()
        endings.clear(engine_of(hub), user, server)


def test_the_jobs_output_in_an_ended_cell_is_text_never_markup(browser, center):
    hub, user, server = center.hub, "hpccarol", "mini-shared"
    hub.ensure_user(user)
    record(
        hub,
        user,
        server,
        "startup_script",
        details={"exit_code": HOSTILE, "state": HOSTILE, "reason": HOSTILE},
        log_tail=f"loading my environment\n{HOSTILE}\n<b>bold?</b>\n",
    )
    ctx = browser.new_context()
    page = ctx.new_page()
    try:
        login(page, hub, user)
        cell = page.locator(f"#cell-{server}")
        cell.locator(".hpc-ended-log summary").click()
        pre = cell.locator(".hpc-ended-log pre")
        expect(pre).to_contain_text(HOSTILE)
        expect(pre).to_contain_text("<b>bold?</b>")
        expect(cell.locator(".hpc-detail")).to_contain_text(f"the start-up script exited with {HOSTILE}")
        expect(cell.locator(".hpc-ended-scheduler")).to_contain_text(HOSTILE)
        expect(cell.locator("img, script, b")).to_have_count(0)
        expect(cell.locator("pre")).to_have_count(1)
        page.wait_for_timeout(500)  # an onerror would have run by now
        assert page.evaluate("window.__pwned") is None
    finally:
        ctx.close()
        endings.clear(engine_of(hub), user, server)


def test_no_user_sees_relaunches_or_dismisses_anothers_ending(center):
    hub, slurm, server = center.hub, center.slurm, "mini-configurable"
    for user in ("hpcalice", "hpcbob"):
        hub.ensure_user(user)
    secret = "alice-only-output-7d1f"
    record(
        hub,
        "hpcalice",
        server,
        "out_of_memory",
        log_tail=secret,
        options={"partition": "debug", "time": "00:13:00"},
    )
    bob = hub.session_of("hpcbob")
    xsrf = bob.cookies.get("_xsrf", "")
    try:
        home = bob.get(f"{hub.public}/hub/home", timeout=30)
        assert home.ok and secret not in home.text and "ran out of memory" not in home.text
        form = bob.get(f"{hub.public}/hub/console/options/{server}", timeout=30)
        assert form.ok and "00:13:00" not in form.text
        # The admin view's list of every ending is for administrators only.
        admin = bob.get(f"{hub.public}/hub/console/admin", allow_redirects=False, timeout=30)
        assert admin.status_code == 403 and secret not in admin.text, admin.status_code
        # A forged username in the form, another user's name in the URL: only bob's own cell.
        for path in (f"relaunch/{server}", f"relaunch/hpcalice/{server}", f"relaunch/hpcalice%2F{server}"):
            r = bob.post(
                f"{hub.public}/hub/console/{path}",
                data={"_xsrf": xsrf, "user": "hpcalice", "username": "hpcalice"},
                allow_redirects=False,
                timeout=60,
            )
            assert r.status_code == 404, (path, r.status_code, r.text[:300])
            assert secret not in r.text
        for path in (f"dismiss/hpcalice/{server}", f"dismiss/hpcalice%2F{server}"):
            r = bob.post(
                f"{hub.public}/hub/console/{path}", data={"_xsrf": xsrf}, allow_redirects=False, timeout=30
            )
            assert r.status_code == 404, (path, r.status_code)
        r = bob.post(
            f"{hub.public}/hub/console/dismiss/{server}",
            data={"_xsrf": xsrf, "user": "hpcalice"},
            allow_redirects=False,
            timeout=30,
        )
        assert r.status_code == 302  # bob's own (empty) cell
        assert shown(hub, "hpcalice", server) is not None
        assert hub.server_model("hpcalice", server) is None and hub.server_model("hpcbob", server) is None
        assert slurm.squeue("hpcalice") == [] and slurm.squeue("hpcbob") == []
        # Alice's own POST needs the XSRF token like every console form.
        alice = hub.session_of("hpcalice")
        for path in (f"dismiss/{server}", f"relaunch/{server}"):
            r = alice.post(f"{hub.public}/hub/console/{path}", data={}, allow_redirects=False, timeout=30)
            assert r.status_code == 403, (path, r.status_code)
        assert shown(hub, "hpcalice", server) is not None
        assert hub.server_model("hpcalice", server) is None
        # Signed out: the login page, nothing else.
        r = requests.post(f"{hub.public}/hub/console/dismiss/{server}", allow_redirects=False, timeout=30)
        assert r.status_code in (302, 403) and shown(hub, "hpcalice", server) is not None
    finally:
        endings.clear(engine_of(hub), "hpcalice", server)


def test_the_admin_view_lists_every_users_endings_newest_first_and_bounded(browser, center, artifacts):
    hub = center.hub
    db = engine_of(hub)
    endings.ensure_table(db)
    with db.begin() as conn:  # the other tests' endings (the admin view lists cleared ones too)
        conn.execute(endings.table.delete())
    now = time.time()
    old = [
        Ending("hpcalice", "mini-shared", "mini", "shared", "ssh", "lifetime", ended=now - 7200 - i)
        for i in range(ADMIN_ENDINGS)
    ]
    for e in old:
        endings.record(db, e)
    record(hub, "hpcbob", "mini-exclusive", "out_of_memory", details=FIGURES["out_of_memory"], ended=now - 60)
    record(
        hub,
        "hpccarol",
        "mini-configurable",
        "time_limit",
        details={**FIGURES["time_limit"], "reason": HOSTILE},
    )
    ctx = browser.new_context(viewport={"width": 1300, "height": 900})
    page = ctx.new_page()
    try:
        login(page, hub, ADMIN, minihpc.ADMIN_PASSWORD)
        page.goto(hub.public + "/hub/console/admin")
        rows = page.locator("#hpc-admin-endings tbody tr.hpc-admin-ending")
        expect(rows).to_have_count(ADMIN_ENDINGS)
        first, second = rows.nth(0), rows.nth(1)
        expect(first.locator(".hpc-admin-user")).to_have_text("hpccarol")
        expect(first.locator(".hpc-admin-cause")).to_have_text("time_limit")
        expect(first.locator(".hpc-admin-words")).to_have_text("reached its time limit of 1:00:00")
        expect(first.locator(".hpc-admin-state-exit")).to_have_text("TIMEOUT 0:15")
        expect(first.locator(".hpc-admin-ended-reason")).to_have_text(HOSTILE)
        expect(first.locator("img, script")).to_have_count(0)
        expect(second.locator(".hpc-admin-user")).to_have_text("hpcbob")
        expect(second.locator(".hpc-admin-words")).to_have_text(
            "ran out of memory: 3.9 GiB used of 4.0 GiB requested"
        )
        expect(second.locator(".hpc-admin-state-exit")).to_have_text("OUT_OF_MEMORY 0:125")
        expect(second.locator(".hpc-admin-when")).to_contain_text("1 min ago")
        expect(rows.nth(2).locator(".hpc-admin-cause")).to_have_text("lifetime")
        assert page.evaluate("window.__pwned") is None
        page.screenshot(path=artifacts / "admin-endings.png", full_page=False)
    finally:
        ctx.close()
        with db.begin() as conn:
            conn.execute(endings.table.delete())
