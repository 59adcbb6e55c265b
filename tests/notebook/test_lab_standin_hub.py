"""JupyterLab + hpchub-notebook against a stand-in hub endpoint: a real jupyter-lab server
(the notebook venv, the package installed from its wheel), real Chromium, and a small real
HTTP server in the test answering the hub's status/extend contract. (The full-stack test
with the real hub, Slurm and the proxy is the hub side's.)"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import threading
import time
import uuid
from datetime import datetime

import pytest
from playwright.sync_api import expect

from ..browser.helpers import ARTIFACTS
from ..harness import minihpc
from .conftest import API_PATH, memory_cgroup_v1, start_lab, write_notebook

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow]


def open_lab(page, lab, path: str = "lab"):
    page.goto(lab.lab_url(path))
    page.locator("#jp-main-dock-panel").wait_for()
    return page


def cell_source(path) -> str:
    """The first cell's source as saved on disk."""
    source = json.loads(path.read_text())["cells"][0]["source"]
    return "".join(source)


def notes(page, text: str):
    """Lab's notifications (toasts) holding ``text``."""
    return page.locator(".Toastify__toast", has_text=text)


def test_hub_is_asked_with_the_token_and_the_client_version(lab, standin_hub):
    gets = [r for r in standin_hub.requests if r["method"] == "GET"]
    assert gets, "the server extension never asked the hub"
    r = gets[-1]
    assert r["path"] == API_PATH and r["auth"] == f"token {standin_hub.token}"
    assert re.fullmatch(r"client=hpchub-notebook/\d+\.\d+\.\d+", r["query"]) and r["agent"].startswith(
        "hpchub-notebook/"
    )


def test_countdown_shows_the_time_left(lab, standin_hub, page):
    standin_hub.set(ends_at=time.time() + 2 * 3600)
    open_lab(page, lab)
    countdown = page.locator("#hpchub-walltime")
    expect(countdown).to_be_visible()
    expect(countdown).to_have_text(re.compile(r"Time left (1:59:\d\d|2:00:00)"))
    standin_hub.set(ends_at=None)  # no end known: no countdown
    expect(page.locator("#hpchub-walltime")).to_be_hidden(timeout=15_000)


def test_both_walltime_warnings_appear(lab, standin_hub, page):
    # 25 minutes left: the 30-minute warning is due at once, the 24:45 one 15 s later.
    standin_hub.set(ends_at=time.time() + 1500, warnings_seconds=[1800, 1485])
    open_lab(page, lab)
    warnings = notes(page, "This server ends in")
    expect(warnings).to_have_count(1)
    expect(warnings.first).to_contain_text("25 minutes")
    expect(warnings).to_have_count(2, timeout=40_000)
    # What docs/images/lab-walltime-warning.png shows (the user guide's picture), for a look.
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "lab-walltime-warning.png"))


def test_unsaved_notebook_is_saved_before_the_end(lab, standin_hub, page):
    write_notebook(lab, "work.ipynb")
    standin_hub.set(ends_at=time.time() + 3600)
    open_lab(page, lab, "lab/tree/work.ipynb")
    editor = page.locator(".jp-Notebook .jp-Cell .cm-content").first
    editor.click()
    page.keyboard.type("edited_before_the_end = 1")
    expect(page.locator(".jp-mod-dirty")).not_to_have_count(0)
    assert "edited_before_the_end" not in cell_source(lab.root / "work.ipynb")
    ends_at = time.time() + 135  # the save is due 120 s before: in 15 s
    standin_hub.set(ends_at=ends_at, save_before_seconds=120)
    minihpc.wait_for(
        lambda: "edited_before_the_end" in cell_source(lab.root / "work.ipynb"), 60, "the edit on disk"
    )
    assert time.time() < ends_at - 60
    expect(notes(page, "Saved before the end of this server: work.ipynb")).to_have_count(1)


def test_extend_is_shown_and_so_is_the_hubs_refusal(lab, standin_hub, page):
    standin_hub.set(
        ends_at=time.time() + 600,
        warnings_seconds=[60],
        extend={
            "allowed": True,
            "max_ends_at": time.time() + 5000,
            "steps_seconds": [1800, 3600],
            "reason": "",
        },
    )
    standin_hub.refuse = None
    open_lab(page, lab)
    item = page.locator("#hpchub-walltime.hpchub-can-extend")
    expect(item).to_have_text(re.compile(r"Time left (9:\d\d|10:00)"))
    item.click()
    page.locator(".jp-Dialog button", has_text="+30 minutes").click()
    expect(notes(page, "Extended: this server now ends at")).to_have_count(1)
    expect(item).to_have_text(re.compile(r"Time left (39:\d\d|40:00)"))
    posts = [r for r in standin_hub.requests if r["method"] == "POST"]
    assert json.loads(posts[-1]["body"]) == {"seconds": 1800} and posts[-1]["path"] == API_PATH + "/extend"

    # The hub's words, word for word and as text: markup in them is not rendered.
    standin_hub.refuse = "alice, perl-cpu cannot run past its cap of 2:00:00 <b>(debug QOS)</b>"
    item.click()
    # 40 minutes left, the cap 83 minutes from the start: +1 hour is not offered, +30 minutes is.
    expect(page.locator(".jp-Dialog button", has_text="+30 minutes")).to_have_count(1)
    expect(page.locator(".jp-Dialog button", has_text="+1 hour")).to_have_count(0)
    page.locator(".jp-Dialog button", has_text="+30 minutes").click()
    refusal = notes(
        page, "Not extended: alice, perl-cpu cannot run past its cap of 2:00:00 <b>(debug QOS)</b>"
    )
    expect(refusal).to_have_count(1)
    expect(refusal.locator("b")).to_have_count(0)
    standin_hub.refuse = None


def test_extend_refused_in_the_server_without_a_browser_passes_the_message(lab, standin_hub):
    standin_hub.set(ends_at=time.time() + 600, extend={"allowed": True, "steps_seconds": [1800]})
    standin_hub.refuse = "not your job"
    # jupyter_server's XSRF check: a token-authenticated API call needs no cookie.
    r = lab.api("POST", "hpchub/extend", json={"seconds": 1800})
    assert r.status_code == 403 and r.json()["message"] == "not your job"
    standin_hub.refuse = None
    assert lab.api("POST", "hpchub/extend", json={"seconds": "1800"}).status_code == 400


async def _run_silently(lab, kernel_id: str, code: str) -> None:
    from tornado.websocket import websocket_connect

    ws = await websocket_connect(
        lab.url.replace("http", "ws", 1) + f"api/kernels/{kernel_id}/channels?token={lab.token}"
    )
    session = uuid.uuid4().hex
    msg = {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "username": "test",
            "session": session,
            "msg_type": "execute_request",
            "version": "5.3",
            "date": datetime.now().isoformat(),
        },
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
        },
        "channel": "shell",
        "buffers": [],
    }
    await ws.write_message(json.dumps(msg))
    await asyncio.sleep(2)  # the busy status reaches the server; then the socket closes
    ws.close()


def kernel_state(lab, kernel_id: str) -> str:
    """The kernel's execution_state, asked without counting as activity."""
    return lab.api("GET", f"api/kernels/{kernel_id}?no_track_activity=1").json()["execution_state"]


def last_activity(lab) -> float:
    return datetime.fromisoformat(
        lab.api("GET", "api/status").json()["last_activity"].replace("Z", "+00:00")
    ).timestamp()


def test_busy_kernel_in_a_silent_loop_keeps_the_server_active(lab, standin_hub):
    """No browser: a kernel in `while True: time.sleep(1)` sends nothing, yet the server's
    last_activity (what jupyterhub-singleuser reports to the hub) keeps moving."""
    standin_hub.set(ends_at=None)
    kernel = lab.api("POST", "api/kernels", json={"name": "python3"}).json()
    try:
        # In a thread: sync Playwright (the module's browser) keeps a loop running in this one.
        code = "import time\nwhile True:\n    time.sleep(1)\n"
        t = threading.Thread(target=lambda: asyncio.run(_run_silently(lab, kernel["id"], code)))
        t.start()
        t.join(60)
        minihpc.wait_for(lambda: kernel_state(lab, kernel["id"]) == "busy", 30, "busy")
        started = last_activity(lab)
        time.sleep(6)
        assert kernel_state(lab, kernel["id"]) == "busy"
        # /api/status and these GETs (no_track_activity) are no activity; the busy kernel is.
        assert last_activity(lab) >= started + 4
    finally:
        lab.api("DELETE", f"api/kernels/{kernel['id']}")


def test_a_process_above_the_hubs_cpu_threshold_keeps_the_server_active_and_none_without_it(lab, standin_hub):
    """No kernel is busy: a script the user started from a notebook computes in the
    background. With the hub's culling.busyCpuPercent (the status's cull object) the
    server's last_activity moves; once the hub sets none (and this server's environment has
    none), the same process is no activity."""
    cull = {"timeout_seconds": 3600, "warn_before_seconds": 600, "last_activity": None}
    standin_hub.set(ends_at=None, cull={**cull, "busy_cpu_percent": 20})
    kernel = lab.api("POST", "api/kernels", json={"name": "python3"}).json()
    pid_file = lab.root / "spinner.pid"
    code = (
        "import subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
    )
    try:
        t = threading.Thread(target=lambda: asyncio.run(_run_silently(lab, kernel["id"], code)))
        t.start()
        t.join(60)
        minihpc.wait_for(pid_file.exists, 30, "the background process")
        minihpc.wait_for(lambda: kernel_state(lab, kernel["id"]) == "idle", 30, "the kernel idle again")
        started = last_activity(lab)
        time.sleep(6)
        assert kernel_state(lab, kernel["id"]) == "idle"
        assert last_activity(lab) >= started + 4

        standin_hub.set(cull=cull)  # the hub sets no threshold now
        time.sleep(4)  # its next poll (every second) and an activity tick
        quiet = last_activity(lab)
        time.sleep(6)
        assert last_activity(lab) <= quiet + 1
    finally:
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        lab.api("DELETE", f"api/kernels/{kernel['id']}")
        standin_hub.set(cull=None)


def test_cull_warning_appears_and_clears_when_activity_resumes(lab, standin_hub, page):
    standin_hub.set(
        ends_at=None,
        cull={"timeout_seconds": 40, "warn_before_seconds": 600, "last_activity": "2020-01-01T00:00:00Z"},
    )
    open_lab(page, lab)
    # The user switches to another tab: Lab's own polls (activity) stand by.
    page.evaluate(
        """() => {
        Object.defineProperty(document, 'visibilityState', {get: () => 'hidden', configurable: true});
        Object.defineProperty(document, 'hidden', {get: () => true, configurable: true});
        document.dispatchEvent(new Event('visibilitychange'));
    }"""
    )
    warning = notes(page, "This server has been idle and will be stopped")
    expect(warning).to_have_count(1, timeout=60_000)
    # Activity (a file opened through the API) moves the expected cull: the warning goes.
    lab.api("GET", "api/contents")
    expect(warning).to_have_count(0, timeout=20_000)


def test_kernel_killed_for_memory_is_named(notebook_venv, standin_hub, tmp_path, browser):
    """A Lab server in a cgroup v1 memory cgroup limited to 600 MiB; a cell allocates 2 GiB:
    the OOM killer kills the kernel and Lab says so."""
    gen = memory_cgroup_v1(600 << 20)
    cgroup = next(gen)
    if cgroup is None:
        pytest.fail("cannot make a memory cgroup here (needs root and cgroup v1/v2 memory controller)")
    standin_hub.set(ends_at=None)
    server = start_lab(notebook_venv, tmp_path, standin_hub, cgroup=cgroup)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    try:
        write_notebook(server, "big.ipynb", "x = bytearray(2 * 1024**3)")
        open_lab(page, server, "lab/tree/big.ipynb")
        expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(
            1, timeout=60_000
        )
        # Lab's indicator says idle before its websocket to the kernel is up; a cell run
        # before that is dropped (CI, busy cores: the cell stayed "[ ]" and nothing died).
        minihpc.wait_for(
            lambda: any(
                k["connections"] > 0 and k["execution_state"] == "idle"
                for k in server.api("GET", "api/kernels").json()
            ),
            60,
            "Lab connected to its kernel",
        )
        first = page.locator(".jp-Notebook .jp-Cell").first
        first.click()
        page.keyboard.press("Shift+Enter")
        expect(page.locator(".jp-Dialog", has_text="Kernel ran out of memory")).to_contain_text(
            "The kernel was killed because it ran out of memory (limit 600 MiB)", timeout=60_000
        )
        expect(page.locator(".jp-Dialog", has_text="appears to have died")).to_have_count(0)
        sessions = server.api("GET", "api/sessions").json()
        death = server.api("GET", f"hpchub/kernels/{sessions[0]['kernel']['id']}/death").json()
        assert death["reason"] == "oom" and death["limit_bytes"] == 600 << 20
    finally:
        context.close()
        server.stop()
        next(gen, None)


def test_sigusr1_saves_at_once_with_the_hub_down(notebook_venv, standin_hub, tmp_path, browser):
    """Slurm's `--signal=USR1@N` with the hub unreachable: the end is taken as near (in
    save_before_seconds, 120 s without the hub), and the open edit is saved at once."""
    standin_hub.down = True
    server = start_lab(notebook_venv, tmp_path, standin_hub, wait_for_hub=False)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    try:
        assert not server.api("GET", "hpchub/status").json()["connected"]
        write_notebook(server, "signal.ipynb")
        open_lab(page, server, "lab/tree/signal.ipynb")
        page.locator(".jp-Notebook .jp-Cell .cm-content").first.click()
        page.keyboard.type("saved_on_sigusr1 = 1")
        expect(page.locator(".jp-mod-dirty")).not_to_have_count(0)
        expect(page.locator("#hpchub-walltime")).to_be_hidden()
        server.proc.send_signal(signal.SIGUSR1)
        expect(page.locator("#hpchub-walltime")).to_have_text(re.compile(r"Time left (1:[45]\d|2:00)"))
        minihpc.wait_for(
            lambda: "saved_on_sigusr1" in cell_source(server.root / "signal.ipynb"), 30, "the edit on disk"
        )
        expect(notes(page, "Saved before the end of this server: signal.ipynb")).to_have_count(1)
        assert server.proc.poll() is None  # jupyter_server's own SIGUSR1 (print info) still harmless
    finally:
        standin_hub.down = False
        context.close()
        server.stop()
