"""Culling that knows a kernel is busy, on the mini HPC center (real sshd, Slurm, hub,
configurable-http-proxy, jupyterhub-idle-culler, notebook servers with hpchub-notebook,
Chromium + JupyterLab through the proxy), used by test_culling.py (the short guard, in
`make test`) and test_culling_long.py (the issue's 10-minute case, `make test-culling`).

The guard (:func:`run_guard`, under 2 minutes: no timeout below the chart's 60 s fits) is
hpcalice's part below alone, for a loop shorter than the timeout: the hub's last_activity
of her server must keep moving while nothing reaches it.

The issue's case is one timeline, observed and then asserted on by the tests:

- hpcalice's Slurm server (level ``exclusive``, short timeout) runs a kernel in a silent
  loop started over the kernel's websocket, which is then closed: no browser, no request
  reaches the server until the loop ends. It must not be culled, and the hub must see its
  activity move;
- hpcbob's login-node server (level ``shared``, short timeout) has JupyterLab open in
  Chromium, in a background tab, and nothing else: Lab must warn before the cull, and the
  culler must stop it although the tab keeps polling through the proxy;
- hpccarol's login-node server on system ``other``, whose ``shared`` cell sets a long
  timeout over its level's short one, idles as long as alice computes and must be kept.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from ..browser.helpers import login
from ..harness import minihpc

ALICE, BOB, CAROL = minihpc.USERS  # hpcalice, hpcbob, hpccarol
BUSY = "mini-exclusive"  # Slurm
IDLE = "mini-shared"  # login node
KEPT = "other-shared"  # login node, the cell's own long timeout
LONG_TIMEOUT = 3600
WARNING = "This server has been idle and will be stopped"


@dataclass(frozen=True)
class Timing:
    loop_seconds: int  # alice's silent computation
    timeout: int  # the short levels' culling timeout
    activity: int  # hub.activityIntervalSeconds (at most half the timeout)
    every: int = 10  # culling.every
    warn_before: int = 30  # culling.warnBeforeSeconds (Lab uses at most half the timeout)
    # After the loop: wait until alice's server, idle now, is culled too.
    cull_after_loop: bool = False


def center_values(sshd: minihpc.SSHD, timing: Timing) -> dict[str, Any]:
    values = minihpc.test_values(sshd, [("127.0.0.1", sshd.port)])
    values["hub"]["activityIntervalSeconds"] = timing.activity
    values["culling"] = {
        "enabled": True,
        "timeout": LONG_TIMEOUT,
        "every": timing.every,
        "warnBeforeSeconds": timing.warn_before,
    }
    for level in ("shared", "exclusive"):
        values["serviceLevels"][level]["culling"] = {"timeout": timing.timeout}
    mini = values["systems"]["mini"]
    # hpchub-notebook checks for busy kernels and asks the hub every 5 s (60 s by default).
    mini["singleuser"]["cmd"] += ["--HpchubNotebook.activity_interval=5", "--HpchubNotebook.poll_interval=5"]
    other = copy.deepcopy(mini)
    other["displayName"] = "Other HPC"
    other["levels"] = {"shared": {"backend": "ssh", "culling": {"timeout": LONG_TIMEOUT}}}
    values["systems"]["other"] = other
    return values


@dataclass
class Center:
    hub: minihpc.Hub
    slurm: minihpc.Slurm
    sshd: minihpc.SSHD
    timing: Timing


def start_center(workdir: Path, sshd: minihpc.SSHD, slurm: minihpc.Slurm, timing: Timing) -> Iterator[Center]:
    hub = minihpc.Hub(workdir, center_values(sshd, timing), sshd.ca_key, name=f"hub-culling-{timing.timeout}")
    hub.start()
    try:
        for user in (ALICE, BOB, CAROL):
            hub.ensure_user(user)
        yield Center(hub, slurm, sshd, timing)
    finally:
        hub.stop_all_servers((ALICE, BOB, CAROL))
        hub.stop()


@dataclass
class Observed:
    """What happened, in wall-clock seconds (time.time())."""

    loop_started: float = 0.0
    loop_seconds_reported: float | None = None  # what the kernel wrote when its loop ended
    loop_done: float | None = None
    job_id: str = ""
    job_running_at_end: bool = False
    # (when sampled, alice's server's last_activity as the hub knows it)
    alice_activity: list[tuple[float, float]] = field(default_factory=list)
    alice_gone: float | None = None
    alice_culled_after_loop: float | None = None
    alice_job_gone_after_cull: bool = False
    lab_hidden: float | None = None
    # bob's server's last_activity as the hub knows it, sampled like alice's
    bob_activity: list[tuple[float, float]] = field(default_factory=list)
    bob_warned: float | None = None
    bob_warning_text: str = ""
    bob_culled: float | None = None
    bob_polls_after_hidden: int = 0
    bob_processes_after_cull: list[str] = field(default_factory=list)
    carol_gone: float | None = None
    console_notes: dict[str, str] = field(default_factory=dict)
    hub_log: str = ""


def epoch(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() if iso else None


def start_all(
    hub: minihpc.Hub, servers: tuple[tuple[str, str], ...] = ((ALICE, BUSY), (BOB, IDLE), (CAROL, KEPT))
) -> None:
    # At once: the hub answers each start after up to its 10 s slow-spawn wait.
    with ThreadPoolExecutor(len(servers)) as pool:
        answers = list(pool.map(lambda us: hub.start_server(*us), servers))
    for (user, server), r in zip(servers, answers, strict=True):
        assert r.status_code in (201, 202), f"{user}/{server}: {r.status_code} {r.text}"
    for user, server in servers:
        hub.wait_ready(user, server, timeout=180)
        hub.wait_answering(user, server, timeout=60)


def alice_job(hub: minihpc.Hub, slurm: minihpc.Slurm) -> str:
    """The id of alice's running notebook job."""
    jobs = [j for j in slurm.squeue(ALICE) if j["state"] == "RUNNING"]
    model = hub.server_model(ALICE, BUSY) or {}
    job_id = next((j["id"] for j in jobs if j["name"].startswith("hpchub-")), "")
    assert job_id, f"alice's notebook job is not running: {jobs} {model}"
    return job_id


def record_loop_done(seen: Observed, done_file: Path, slurm: minihpc.Slurm, now: float) -> None:
    """The kernel wrote how long its loop ran: note it, and whether alice's job still runs."""
    if seen.loop_done is None and done_file.exists() and done_file.read_text():
        seen.loop_done = now
        seen.loop_seconds_reported = float(done_file.read_text())
        seen.job_running_at_end = any(
            j["id"] == seen.job_id and j["state"] == "RUNNING" for j in slurm.squeue(ALICE)
        )


def console_note(hub: minihpc.Hub, user: str, server: str) -> str:
    """The idle note the user's console shows in the server's cell (empty if hidden)."""
    html = hub.session_of(user).get(f"{hub.public}/hub/home", timeout=30).text
    cell = re.search(rf'id="cell-{server}".*?</td>', html, re.S)
    assert cell, f"no cell {server} on {user}'s console"
    note = re.search(r'class="hpc-idle small mb-1( d-none)?">([^<]*)<', cell.group(0))
    return "" if note is None or note.group(1) else note.group(2)


async def _start_silent_loop(hub: minihpc.Hub, token: str, kernel_id: str, code: str) -> None:
    """execute_request over the kernel's websocket through the proxy; returns once the
    kernel says it is busy, and closes the socket (the tab is closed)."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    url = f"{hub.public.replace('http', 'ws', 1)}/user/{ALICE}/{BUSY}/api/kernels/{kernel_id}/channels"
    ws = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {token}"}))
    msg_id = uuid.uuid4().hex
    header = {
        "msg_id": msg_id,
        "username": ALICE,
        "session": uuid.uuid4().hex,
        "msg_type": "execute_request",
        "version": "5.3",
        "date": datetime.now().isoformat(),
    }
    content = {
        "code": code,
        "silent": False,
        "store_history": False,
        "user_expressions": {},
        "allow_stdin": False,
    }
    message = {"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": "shell"}
    await ws.write_message(json.dumps(message))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        raw = await asyncio.wait_for(ws.read_message(), 60)
        assert raw is not None, "the kernel's websocket closed before the kernel was busy"
        reply = json.loads(raw)
        if (
            reply.get("msg_type") == "status"
            and reply.get("parent_header", {}).get("msg_id") == msg_id
            and reply["content"]["execution_state"] == "busy"
        ):
            break
    else:
        raise AssertionError("the kernel never said busy")
    ws.close()


def start_busy_kernel(hub: minihpc.Hub, loop_seconds: int, marker: str) -> None:
    r = hub.request("POST", f"/users/{ALICE}/tokens", json={"note": "culling test", "expires_in": 7200})
    assert r.status_code in (200, 201), r.text
    token = r.json()["token"]
    base = f"{hub.public}/user/{ALICE}/{BUSY}/api"
    kernel = requests.post(
        f"{base}/kernels", headers={"Authorization": f"token {token}"}, json={"name": "python3"}, timeout=60
    )
    assert kernel.status_code == 201, kernel.text
    code = (
        "import os, time\n"
        "t0 = time.time()\n"
        f"while time.time() - t0 < {loop_seconds}:\n"
        "    time.sleep(1)\n"
        f"open(os.path.expanduser('~/{marker}'), 'w').write('%.1f' % (time.time() - t0))\n"
    )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(_start_silent_loop(hub, token, kernel.json()["id"], code))
        except BaseException as e:  # noqa: BLE001 - raised in the test's thread below
            errors.append(e)

    # In a thread: sync Playwright keeps an event loop running in this one.
    t = threading.Thread(target=run)
    t.start()
    t.join(90)
    if errors:
        raise errors[0]


def open_lab_in_background_tab(page: Any, hub: minihpc.Hub) -> list[str]:
    """bob signs in, opens JupyterLab on his server through the proxy, then leaves the tab
    in the background (the Page Visibility API says hidden: Lab's own polls stand by, as
    in a browser tab the user left). Returns the list the tab's later requests to his
    server are appended to."""
    login(page, hub, BOB)
    page.goto(f"{hub.public}/user/{BOB}/{IDLE}/lab")
    page.locator("#jp-main-dock-panel").wait_for(timeout=90_000)
    page.wait_for_timeout(5000)  # Lab's start-up requests are over
    page.evaluate(
        """() => {
        Object.defineProperty(document, 'visibilityState', {get: () => 'hidden', configurable: true});
        Object.defineProperty(document, 'hidden', {get: () => true, configurable: true});
        document.dispatchEvent(new Event('visibilitychange'));
    }"""
    )
    later: list[str] = []
    page.on("request", lambda r: later.append(r.url) if f"/user/{BOB}/{IDLE}/" in r.url else None)
    return later


def run_timeline(center: Center, browser: Any) -> Observed:
    hub, slurm, timing = center.hub, center.slurm, center.timing
    seen = Observed()
    marker = f".hpchub-culling-loop-{secrets.token_hex(4)}"
    done_file = Path(f"/home/{ALICE}/{marker}")
    start_all(hub)
    seen.job_id = alice_job(hub, slurm)
    seen.console_notes = {
        IDLE: console_note(hub, BOB, IDLE),
        KEPT: console_note(hub, CAROL, KEPT),
    }

    context = browser.new_context(viewport={"width": 1300, "height": 800})
    try:
        page = context.new_page()
        start_busy_kernel(hub, timing.loop_seconds, marker)
        seen.loop_started = time.time()
        later = open_lab_in_background_tab(page, hub)
        seen.lab_hidden = time.time()
        warning = page.locator(".Toastify__toast", has_text=WARNING)
        deadline = seen.loop_started + timing.loop_seconds + 3 * timing.timeout
        while time.time() < deadline:
            now = time.time()
            if seen.bob_warned is None and seen.bob_culled is None and warning.count():
                seen.bob_warned = now
                seen.bob_warning_text = warning.first.inner_text()
            bob = hub.server_model(BOB, IDLE) if seen.bob_culled is None else None
            if bob is not None:
                seen.bob_activity.append((now, epoch(bob.get("last_activity")) or 0.0))
            elif seen.bob_culled is None:
                seen.bob_culled = now
                seen.bob_polls_after_hidden = len(later)
            alice = hub.server_model(ALICE, BUSY)
            if alice is None:
                seen.alice_gone = seen.alice_gone or now
            elif seen.loop_done is None:
                seen.alice_activity.append((now, epoch(alice.get("last_activity")) or 0.0))
            if seen.carol_gone is None and hub.server_model(CAROL, KEPT) is None:
                seen.carol_gone = now
            record_loop_done(seen, done_file, slurm, now)
            if seen.loop_done is not None and seen.bob_culled is not None:
                break
            page.wait_for_timeout(1000)  # lets Playwright record the tab's requests
    finally:
        context.close()
    if seen.bob_culled is not None:
        gone_by = time.time() + 30  # the stop over SSH ends the notebook's processes
        while minihpc.user_processes(BOB, hub) and time.time() < gone_by:
            time.sleep(1)
        seen.bob_processes_after_cull = minihpc.user_processes(BOB, hub)
    if timing.cull_after_loop and seen.loop_done is not None and seen.alice_gone is None:
        # Idle now: culled after its own timeout (reported within an activity interval).
        limit = seen.loop_done + timing.timeout + timing.activity + 3 * timing.every + 30
        while time.time() < limit and hub.server_model(ALICE, BUSY) is not None:
            time.sleep(2)
        if hub.server_model(ALICE, BUSY) is None:
            seen.alice_culled_after_loop = time.time()
            seen.alice_job_gone_after_cull = minihpc.wait_for(
                lambda: all(j["id"] != seen.job_id for j in slurm.squeue(ALICE)), 60, "alice's job gone"
            )
    done_file.unlink(missing_ok=True)
    seen.hub_log = hub.log_text()
    return seen


def run_guard(center: Center) -> Observed:
    """The short guard: alice's Slurm server alone, a kernel in a silent loop started over
    its websocket, which is then closed; the hub's last_activity of the server sampled every
    2 s until the loop ends."""
    hub, slurm, timing = center.hub, center.slurm, center.timing
    seen = Observed()
    marker = f".hpchub-culling-loop-{secrets.token_hex(4)}"
    done_file = Path(f"/home/{ALICE}/{marker}")
    start_all(hub, ((ALICE, BUSY),))
    seen.job_id = alice_job(hub, slurm)
    seen.console_notes = {BUSY: console_note(hub, ALICE, BUSY)}
    start_busy_kernel(hub, timing.loop_seconds, marker)
    seen.loop_started = time.time()
    deadline = seen.loop_started + timing.loop_seconds + 60
    while seen.loop_done is None and time.time() < deadline:
        now = time.time()
        alice = hub.server_model(ALICE, BUSY)
        if alice is None:
            seen.alice_gone = now
            break
        seen.alice_activity.append((now, epoch(alice.get("last_activity")) or 0.0))
        record_loop_done(seen, done_file, slurm, now)
        time.sleep(2)
    done_file.unlink(missing_ok=True)
    seen.hub_log = hub.log_text()
    return seen


# --- what the tests assert on the timeline --------------------------------------------


def assert_busy_server_kept(seen: Observed, timing: Timing) -> None:
    """A kernel in a silent loop, its websocket closed, is activity: the server outlives
    several timeouts, the same Slurm job runs on, and the hub's last_activity kept moving
    although nothing reached the server."""
    assert seen.loop_done is not None, (
        f"alice's {timing.loop_seconds} s loop never finished (server gone at {seen.alice_gone})"
    )
    assert seen.alice_gone is None or seen.alice_gone > seen.loop_done, "alice's busy server was culled"
    assert (seen.loop_seconds_reported or 0) >= timing.loop_seconds
    assert seen.job_running_at_end, f"alice's Slurm job {seen.job_id} no longer runs at the loop's end"
    first, last = seen.alice_activity[0][1], seen.alice_activity[-1][1]
    assert last - first >= timing.loop_seconds - 2 * timing.activity - 15, (
        f"the hub's last_activity moved only {last - first:.0f} s in a {timing.loop_seconds} s busy loop"
    )


def assert_busy_kernel_is_activity(seen: Observed, timing: Timing) -> None:
    """The guard: while a kernel loops silently with its websocket closed, the hub's
    last_activity of the server keeps up with the clock (within two reports), as the
    notebook reports the busy kernel; without that report it stays at the websocket's
    close."""
    assert seen.alice_gone is None, "alice's busy server was stopped during its loop"
    assert seen.loop_done is not None, f"alice's {timing.loop_seconds} s loop never finished"
    assert (seen.loop_seconds_reported or 0) >= timing.loop_seconds
    assert seen.job_running_at_end, f"alice's Slurm job {seen.job_id} no longer runs at the loop's end"
    first, last = seen.alice_activity[0][1], seen.alice_activity[-1][1]
    assert last - first >= timing.loop_seconds - 2 * timing.activity - 5, (
        f"the hub's last_activity moved only {last - first:.0f} s in a {timing.loop_seconds} s busy loop"
    )
    stale = seen.loop_done - last
    assert stale <= 2 * timing.activity + 5, (
        f"the hub's last_activity was {stale:.0f} s old at the loop's end"
    )


def assert_idle_server_culled(seen: Observed, timing: Timing) -> None:
    """JupyterLab open in a background tab, nothing else: the culler stops the server after
    its level's timeout, although the tab kept polling it through the proxy."""
    assert seen.lab_hidden is not None
    moved = seen.bob_activity[-1][1] - seen.lab_hidden if seen.bob_activity else None
    assert seen.bob_culled is not None, (
        f"bob's idle server was not culled (timeout {timing.timeout} s); the hub's last_activity "
        f"of it moved {moved} s past the moment Lab went to the background"
    )
    assert seen.bob_culled - seen.lab_hidden <= timing.timeout + timing.activity + 3 * timing.every + 30
    assert seen.bob_polls_after_hidden >= 3, "the background tab made no requests: the test proves nothing"
    assert f"Culling server {BOB}/{IDLE} (inactive for " in seen.hub_log
    assert seen.bob_processes_after_cull == [], "bob's notebook processes outlived the cull"


def assert_lab_warned_before_the_cull(seen: Observed, timing: Timing) -> None:
    """The warning shows in that Lab tab before the cull (the hub's status JSON: its `cull`
    object, hpchub.culling.cull_view)."""
    assert seen.bob_culled is not None, "bob's idle server was not culled"
    assert seen.bob_warned is not None, f"no warning was shown in Lab before the cull at {seen.bob_culled}"
    assert seen.bob_warned < seen.bob_culled
    assert "will be stopped in about" in seen.bob_warning_text


def assert_long_timeout_cell_kept(seen: Observed) -> None:
    """A cell's own long timeout wins over its level's short one."""
    assert seen.carol_gone is None, "carol's server (cell timeout 1 h) was culled"
    assert f"Culling server {CAROL}/" not in seen.hub_log


def assert_ended_cell_says_idle(hub: minihpc.Hub, timing: Timing) -> None:
    """bob's console: the cell of the culled server says why."""
    html = hub.session_of(BOB).get(f"{hub.public}/hub/home", timeout=30).text
    cell = re.search(rf'id="cell-{IDLE}".*?</td>', html, re.S)
    assert cell, "no cell for bob's server"
    text = re.sub(r"<[^>]+>", " ", cell.group(0))
    assert f"was stopped after {timing.timeout // 60} min idle" in text, text


def assert_culled_once_the_loop_ended(seen: Observed, timing: Timing) -> None:
    """The busy kernel was what kept the server: idle after its loop, it is culled after its
    timeout, and its Slurm job ends."""
    assert seen.loop_done is not None
    assert seen.alice_culled_after_loop is not None, (
        f"alice's server, idle since the loop ended at {seen.loop_done}, was not culled"
    )
    assert seen.alice_culled_after_loop - seen.loop_done >= timing.timeout - timing.activity
    assert f"Culling server {ALICE}/{BUSY} (inactive for " in seen.hub_log
    assert seen.alice_job_gone_after_cull, f"alice's Slurm job {seen.job_id} outlived the cull"


# --- the test modules' fixtures and the checks other branches complete -------------------


def center_fixture(timing: Timing) -> Any:
    """The module's hub on the session's sshd and Slurm, culling with ``timing``."""

    @pytest.fixture(scope="module")
    def center(workdir: Path, sshd: minihpc.SSHD, slurm: minihpc.Slurm) -> Iterator[Center]:
        yield from start_center(workdir, sshd, slurm, timing)

    return center


@pytest.fixture(scope="module", name="observed")
def observed_fixture(center: Center, browser: Any) -> Observed:
    return run_timeline(center, browser)


@pytest.fixture(scope="module", name="guarded")
def guarded_fixture(center: Center) -> Observed:
    return run_guard(center)
