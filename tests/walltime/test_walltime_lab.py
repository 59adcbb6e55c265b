"""Issue 18's walltime proof, end to end and for real: a Slurm notebook job with a 4-minute
limit (the real one-host Slurm, sshd, hub and configurable-http-proxy), JupyterLab in
Chromium through the hub's proxy, a notebook edited and not saved.

- Lab shows the countdown and both warnings (the test's values: 3 and 1 minutes before the
  end; the save 30 s before it);
- the edit is on disk before the job ends (the file is read as root), saved by
  hpchub-notebook on the hub's known end or on Slurm's SIGUSR1, whichever comes first;
- the job ends at its limit and the hub lets the server go; the console's cell is no longer
  running (what the ended cell says is ends-capture's and ends-console's: see
  ``test_the_console_then_says_the_job_reached_its_time_limit``).

It takes about 6 minutes, so it runs in its own target, ``make test-walltime``; ``make test``
keeps the short guards (tests/integration/test_walltime_extend.py: the status API, Extend,
the lifetime watchdog's SIGUSR1, real Slurm's SIGUSR1 reaching the server of a 2-minute job;
tests/unit/test_slurm_script.py: the job script passes SIGUSR1 on to the server through a
real bash, and not to a server that does not catch it yet). The Lab screenshot it takes
(tests/artifacts/lab-walltime-warning.png) is the user guide's picture,
docs/images/lab-walltime-warning.png.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.helpers import ARTIFACTS, login
from tests.harness import minihpc

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow]

USER = "hpcalice"
SERVER = "mini-exclusive"
LIMIT = 240  # seconds: the level's time limit, 00:04:00
RESULT: dict[str, Any] = {}  # what the flow saw, for the ended cell's test


@pytest.fixture(scope="module")
def center(workdir: Path, slurm: minihpc.Slurm) -> Iterator[SimpleNamespace]:
    minihpc.ensure_venv()
    sshd = minihpc.SSHD(workdir)
    sshd.prepare(slurm.conf)
    sshd.start()
    # Lab's own autosave (every 120 s) would save the edit by itself: off, in a settings
    # directory of this test's own (other sessions' Lab tests use the same test users).
    pw = pwd.getpwnam(USER)
    settings = Path(pw.pw_dir) / f".hpchub-walltime-{secrets.token_hex(4)}"
    plugin = settings / "@jupyterlab" / "docmanager-extension" / "plugin.jupyterlab-settings"
    plugin.parent.mkdir(parents=True)
    plugin.write_text(json.dumps({"autosave": False}))
    for path in (settings, *settings.rglob("*")):
        os.chown(path, pw.pw_uid, pw.pw_gid)
    values = minihpc.test_values(sshd, [("127.0.0.1", sshd.port)])
    mini = values["systems"]["mini"]
    mini["walltime"] = {"warningsMinutes": [3, 1], "saveBeforeSeconds": 30}
    mini["levels"]["exclusive"]["slurm"]["time"] = "00:04:00"
    # The package asks the hub every 10 s (60 s in production), so a 4-minute job is enough.
    mini["singleuser"]["cmd"].append("--HpchubNotebook.poll_interval=10")
    mini["singleuser"]["environment"]["JUPYTERLAB_SETTINGS_DIR"] = str(settings)
    hub = minihpc.Hub(workdir, values, sshd.ca_key, name="walltime-lab-hub")
    try:
        hub.start()
        hub.ensure_user(USER)
        yield SimpleNamespace(hub=hub, slurm=slurm, sshd=sshd, home=Path(pw.pw_dir))
    finally:
        if hub.server_model(USER, SERVER) is not None:
            hub.stop_server(USER, SERVER)
        hub.stop()
        sshd.stop()
        shutil.rmtree(settings, ignore_errors=True)


def cell_source(path: Path) -> str:
    return "".join(json.loads(path.read_text())["cells"][0]["source"])


def job_end(slurm: minihpc.Slurm, user: str) -> tuple[str, float]:
    """The notebook job's id and when Slurm ends it (its start, as squeue says, + the limit)."""
    out = minihpc.run("squeue", "-h", "-u", user, "-t", "RUNNING", "-o", "%i|%S|%j", env=slurm.env).stdout
    rows = [line.split("|", 2) for line in out.splitlines()]
    ((job, start, _name),) = [r for r in rows if len(r) == 3 and r[2].startswith("hpchub-")]
    return job, datetime.fromisoformat(start).timestamp() + LIMIT


def test_countdown_warnings_and_the_save_before_a_slurm_jobs_end(
    center: SimpleNamespace, browser: Any
) -> None:
    hub, slurm = center.hub, center.slurm
    expect.set_options(timeout=30_000)
    outcome = hub.start_outcome(USER, SERVER)
    assert outcome == ("ready", ""), outcome
    job, ends_at = job_end(slurm, USER)
    assert minihpc.run("scontrol", "show", "job", job, env=slurm.env).stdout.count("TimeLimit=00:04:00") == 1
    # A notebook in the user's home, through the notebook server's API (the hub's token).
    name = f"walltime-{secrets.token_hex(3)}.ipynb"
    lab_api = f"{hub.public}/user/{USER}/{SERVER}/api/contents/{name}"
    nb = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": ""}
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    r = requests.put(
        lab_api,
        headers={"Authorization": f"token {hub.api_token}"},
        json={"type": "notebook", "format": "json", "content": nb},
        timeout=30,
    )
    assert r.status_code in (200, 201), r.text
    on_disk = center.home / name

    ctx = browser.new_context(viewport={"width": 1300, "height": 800})
    page = ctx.new_page()
    login(page, hub, USER)
    # ?reset: Lab restores the last workspace from the user's home otherwise, with the tabs
    # of earlier runs (their hidden editors came first in the page and were clicked).
    page.goto(f"{hub.public}/user/{USER}/{SERVER}/lab/tree/{name}?reset")
    page.locator("#jp-main-dock-panel").wait_for(timeout=120_000)

    # The countdown, from the hub's end of the job.
    countdown = page.locator("#hpchub-walltime")
    expect(countdown).to_have_text(re.compile(r"Time left [0-3]:\d\d"), timeout=60_000)

    # An edit, not saved (Lab's autosave is off here).
    editor = page.locator(".jp-Notebook .jp-Cell .cm-content >> visible=true").first
    editor.click()
    page.keyboard.type("edited_before_the_end = 1")
    expect(page.locator(".jp-mod-dirty")).not_to_have_count(0)
    assert "edited_before_the_end" not in cell_source(on_disk)

    # The 3-minute warning, then the 1-minute one.
    warnings = page.locator(".Toastify__toast", has_text="This server ends in")
    expect(warnings.first).to_be_visible(timeout=int(max(ends_at - 180 - time.time(), 0) + 30) * 1000)
    RESULT["first_warning"] = warnings.first.inner_text()
    assert re.search(r"ends in (3|2) minutes", RESULT["first_warning"]), RESULT["first_warning"]

    # The edit on disk before the end: saved 30 s before it (or at Slurm's SIGUSR1).
    saved = minihpc.wait_for(
        lambda: "edited_before_the_end" in cell_source(on_disk) and time.time(),
        max(ends_at - time.time(), 1),
        "the edit on disk before the job's end",
        interval=0.5,
    )
    assert saved < ends_at, f"saved {saved - ends_at:.0f} s after the job's end"
    expect(
        page.locator(".Toastify__toast", has_text=f"Saved before the end of this server: {name}")
    ).to_have_count(1, timeout=15_000)
    expect(warnings).not_to_have_count(0)
    minihpc.wait_for(lambda: warnings.count() >= 2, max(ends_at - time.time(), 1) + 5, "the second warning")
    RESULT["warnings"] = warnings.all_inner_texts()
    expect(countdown).to_have_class(re.compile("hpchub-urgent"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "lab-walltime-warning.png"))

    # The job ends at its limit (Slurm: TIMEOUT), and the hub lets the server go.
    minihpc.wait_for(
        lambda: hub.server_model(USER, SERVER) is None, max(ends_at - time.time(), 0) + 120, "the server gone"
    )
    state = minihpc.run(
        "squeue", "-h", "-t", "all", "-j", job, "-o", "%T", env=slurm.env, check=False
    ).stdout.strip()
    assert state == "TIMEOUT", state
    page.goto(hub.public + "/hub/home")
    cell = page.locator(f"#cell-{SERVER}")
    expect(cell).not_to_have_attribute("data-state", "running")
    RESULT["ended_cell"] = cell.inner_text()
    # The user guide's picture (docs/ended-cell.png) is this real ending, its log open.
    expect(cell.locator(".hpc-ended-scheduler")).to_contain_text("State TIMEOUT")
    cell.locator(".hpc-ended-log summary").click()
    expect(cell.locator(".hpc-ended-log pre")).to_contain_text("DUE TO TIME LIMIT")
    page.locator(".hpc-grid").screenshot(path=str(ARTIFACTS / "ended-cell.png"))
    ctx.close()


def test_the_console_then_says_the_job_reached_its_time_limit() -> None:
    assert "reached its time limit" in RESULT.get("ended_cell", "")
