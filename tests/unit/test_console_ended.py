"""The ended cell's page model: a server that no longer runs shows how its last run ended
(hpchub.endings, read once per page) through its one ServerStatus, with the figures, for
``console.endedRetentionDays``; never another user's, never a cleared one, never while the
server runs again. The cell's markup draws the job's output as text."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import jinja2
import pytest
import yaml
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from traitlets.config import Config

from hpchub import endings
from hpchub.console import setup
from hpchub.console.ended import elapsed_text, ended_view, memory_text
from hpchub.console.page import build_page
from hpchub.endings import CAUSES, Ending
from hpchub.grid import Grid
from hpchub.serverstate import START_FAILURES, Phase, ServerStatus
from hpchub.settings import ConsoleSettings
from hpchub.values import ConfigError

from .test_console_page import fake_spawner, fake_user, nersc_values

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "images" / "hub" / "hpchub" / "templates"
SCHEMA = yaml.safe_load((REPO / "chart" / "hpchub" / "values.schema.yaml").read_text())
GIB = 2**30
HOSTILE = '</pre><script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


@pytest.fixture(scope="module")
def grid() -> Grid:
    return Grid.from_values(nersc_values())


@pytest.fixture
def engine() -> Engine:
    return create_engine("sqlite://")


def record(
    engine: Engine, cause: str = "time_limit", user: str = "alice", server: str = "perlmutter-exclusive", **kw
) -> Ending:
    system, _, level = server.partition("-")
    e = Ending(username=user, server=server, system=system, level=level, backend="slurm", cause=cause, **kw)
    endings.record(engine, e)
    return e


TIME_LIMIT = dict(
    details={
        "state": "TIMEOUT",
        "exit_code": "0:15",
        "reason": "TimeLimit",
        "elapsed_seconds": 3602,
        "limit_seconds": 3600,
        "max_rss_bytes": int(1.2 * GIB),
        "requested_memory_bytes": 4 * GIB,
    },
    log_tail="".join(f"step {i}\n" for i in range(30))
    + "slurmstepd: error: *** JOB 42 CANCELLED DUE TO TIME LIMIT ***\n",
    options={"partition": "regular", "time": "01:00:00"},
)


def test_a_stopped_server_with_an_ending_is_ended_with_the_words_and_the_schedulers_figures(grid, engine):
    record(engine, **TIME_LIMIT)
    cell = build_page(grid, fake_user(), {}, engine=engine).cell("perlmutter-exclusive")
    assert (cell.state, cell.label) == ("ended", "Ended")
    assert cell.detail == "Your server reached its time limit of 1:00:00."
    e = cell.ended
    assert e.scheduler == (("State", "TIMEOUT"), ("ExitCode", "0:15"), ("Reason", "TimeLimit"))
    assert e.elapsed == "1:00:02 of 1:00:00"
    assert e.memory == "1.2 GiB used of 4.0 GiB requested"
    assert e.ago == "just now" and e.when.endswith(" UTC")
    lines = e.log_tail.splitlines()
    assert len(lines) == 20 and lines[-1].endswith("CANCELLED DUE TO TIME LIMIT ***")
    assert e.log_summary == "Last 20 lines of output"
    # Its own cell only, and its actions name the cell, never a user.
    assert cell.relaunch_url == "/hub/console/relaunch/perlmutter-exclusive"
    assert cell.dismiss_url == "/hub/console/dismiss/perlmutter-exclusive"
    others = [c for r in build_page(grid, fake_user(), {}, engine=engine).rows for c in r.cells if c]
    assert [c.server_name for c in others if c.ended] == ["perlmutter-exclusive"]


@pytest.mark.parametrize("cause", sorted(set(CAUSES) - {"user"}))
def test_every_shown_cause_has_its_words_in_the_cell(grid, engine, cause):
    details = {"limit_seconds": 3600, "idle_seconds": 3600, "exit_code": "127", "max_rss_bytes": 4 * GIB}
    details["requested_memory_bytes"] = 4 * GIB
    record(engine, cause, details=details)
    cell = build_page(grid, fake_user(), {}, engine=engine).cell("perlmutter-exclusive")
    assert cell.state == "ended"
    assert cell.detail == f"Your server {endings.sentence(cause, details)}."
    assert cell.label == ("Failed" if cause in START_FAILURES else "Ended")


def test_start_failures_are_causes_the_endings_know():
    assert START_FAILURES <= set(CAUSES)


def test_a_running_server_is_not_ended_by_an_old_ending(grid, engine):
    record(engine, **TIME_LIMIT)
    status = ServerStatus(phase=Phase.RUNNING, host="nid001")
    user = fake_user(spawners={"perlmutter-exclusive": fake_spawner(ready=True, status=status)})
    cell = build_page(grid, user, {}, engine=engine).cell("perlmutter-exclusive")
    assert (cell.state, cell.ended) == ("running", None)
    queued = fake_spawner(pending="spawn", status=ServerStatus(phase=Phase.QUEUED, reason="Priority"))
    cell = build_page(grid, fake_user(spawners={"perlmutter-exclusive": queued}), {}, engine=engine).cell(
        "perlmutter-exclusive"
    )
    assert (cell.state, cell.ended) == ("queued", None)


def test_dismissed_stopped_by_the_user_expired_or_anothers_endings_are_not_shown(grid, engine):
    record(engine, "time_limit", server="perlmutter-exclusive")
    endings.clear(engine, "alice", "perlmutter-exclusive")
    record(engine, "user", server="perlmutter-shared")  # a stop the user asked for: no news
    record(engine, "out_of_memory", server="perlmutter-gpu", ended=time.time() - 2 * 86400)
    record(engine, "node_failure", user="bob", server="perlmutter-configurable")
    page = build_page(grid, fake_user(), {}, console=ConsoleSettings(ended_retention_days=1), engine=engine)
    assert [c.server_name for r in page.rows for c in r.cells if c and c.ended] == []
    # Kept for console.endedRetentionDays: two days old is shown with a week.
    page = build_page(grid, fake_user(), {}, console=ConsoleSettings(ended_retention_days=7), engine=engine)
    assert [c.server_name for r in page.rows for c in r.cells if c and c.ended] == ["perlmutter-gpu"]
    bob = build_page(grid, fake_user("bob"), {}, engine=engine)
    assert [c.server_name for r in bob.rows for c in r.cells if c and c.ended] == ["perlmutter-configurable"]


def test_the_console_reads_endings_with_one_query_per_page(grid, engine):
    for server in ("perlmutter-shared", "perlmutter-exclusive", "perlmutter-gpu", "spin-shared"):
        record(engine, "cancelled", server=server)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    page = build_page(grid, fake_user(), {}, engine=engine)
    assert len([c for r in page.rows for c in r.cells if c and c.ended]) == 4
    assert len([s for s in statements if "hpchub_endings" in s]) == 1


def test_a_failed_start_keeps_its_message_next_to_the_words():
    e = Ending("alice", "perlmutter-shared", "perlmutter", "shared", "ssh", "start_failed")
    status = ServerStatus(
        phase=Phase.ENDED, message="Perlmutter: your home directory is over quota"
    ).with_ending(e)
    assert (status.state, status.label) == ("ended", "Failed")
    assert status.detail() == "Your server could not start. Perlmutter: your home directory is over quota"


def test_a_failed_start_says_its_recorded_message_once_the_spawners_is_gone():
    # What hpchub.endings keeps of a failed start (details["message"]) after the page was
    # left or the hub restarted; the spawner's own message, while it lives, comes first.
    recorded = SimpleNamespace(
        cause="start_failed",
        details={"message": "Perlmutter: your home directory is over quota"},
        log_tail="",
        ended=time.time(),
        words="could not start",
    )
    status = ServerStatus().with_ending(recorded)
    assert status.detail() == "Your server could not start. Perlmutter: your home directory is over quota"
    live = ServerStatus(phase=Phase.ENDED, message="Perlmutter: over quota (live)").with_ending(recorded)
    assert live.detail() == "Your server could not start. Perlmutter: over quota (live)"


def test_the_ended_status_is_one_value_for_events_and_json():
    e = Ending(
        "alice", "perlmutter-gpu", "perlmutter", "gpu", "slurm", "preempted", details={"state": "PREEMPTED"}
    )
    status = ServerStatus().with_ending(e)
    assert status.phase is Phase.ENDED
    assert status.event() == {"state": "ended", "label": "Ended", "detail": "Your server was preempted."}
    data = status.to_json()
    assert data["state"] == "ended" and data["ending"]["words"] == "was preempted"
    assert data["ending"]["details"] == {"state": "PREEMPTED"}
    assert ServerStatus(phase=Phase.RUNNING).with_ending(e).ending is None
    assert ServerStatus().with_ending(None) == ServerStatus()


@pytest.mark.parametrize(
    ("details", "elapsed", "memory"),
    [
        ({"elapsed_seconds": 61, "limit_seconds": 3600}, "0:01:01 of 1:00:00", ""),
        ({"elapsed_seconds": 0}, "0:00:00", ""),
        ({"limit_seconds": 86400 + 7200}, "limit 1-2:00:00", ""),
        ({"max_rss_bytes": 512 * 2**20}, "", "512 MiB used"),
        ({"requested_memory_bytes": 8 * GIB}, "", "8.0 GiB requested"),
    ],
)
def test_figures_read_as_people_read_them(details, elapsed, memory):
    assert (elapsed_text(details), memory_text(details)) == (elapsed, memory)


def render_cell(cell, row_title: str = "Perlmutter", disabled: str = "") -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True)
    row = SimpleNamespace(system=SimpleNamespace(display_name=row_title))
    c = SimpleNamespace(
        **{**vars(cell), "disabled_reason": disabled, "detail": cell.detail, "has_form": cell.has_form}
    )
    return env.get_template("console_ended.html").render(c=c, row=row, xsrf="tok")


def test_the_jobs_output_and_figures_are_text_never_markup(grid, engine):
    record(
        engine,
        "startup_script",
        details={"exit_code": HOSTILE, "state": HOSTILE, "reason": HOSTILE, "by": HOSTILE},
        log_tail=f"ok\n{HOSTILE}\n",
    )
    cell = build_page(grid, fake_user(), {}, engine=engine).cell("perlmutter-exclusive")
    html = render_cell(cell)
    assert "<script" not in html and "<img" not in html and "</pre><" not in html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    assert html.count("<pre>") == 1
    # Relaunch and Dismiss are forms with the XSRF token; Edit options where the cell has a form.
    assert html.count('name="_xsrf" value="tok"') == 2
    assert ("hpc-edit-options" in html) == cell.has_form
    # A cell the user may no longer use still says how it ended, without Relaunch.
    html = render_cell(cell, disabled="Needs membership in gpu-users.")
    assert "hpc-relaunch" not in html and "hpc-dismiss" in html and "could not start" in html


def test_retention_default_is_the_schemas_and_bad_values_name_the_key():
    field = SCHEMA["properties"]["console"]["properties"]["endedRetentionDays"]
    assert field["default"] == ConsoleSettings().ended_retention_days == 7
    assert (field["minimum"], field["maximum"]) == (1, 3650)
    assert ConsoleSettings.from_values({"endedRetentionDays": 30}).ended_retention_seconds == 30 * 86400
    for bad in (0, 3651, "7", True, 1.5):
        with pytest.raises(
            ConfigError, match=r"console\.endedRetentionDays: .* whole number of days from 1 to 3650"
        ):
            ConsoleSettings.from_values({"endedRetentionDays": bad})
    # The loader (the console's setup) checks it when the hub starts.
    with pytest.raises(ConfigError, match=r"console\.endedRetentionDays"):
        setup(Config(), {**nersc_values(), "console": {"endedRetentionDays": 0}})


def test_ended_view_of_an_admin_stop_says_who():
    e = Ending("alice", "perlmutter-gpu", "perlmutter", "gpu", "slurm", "admin", details={"by": "root-admin"})
    v = ended_view(e, now=e.ended + 3 * 3600 + 300)
    assert (v.words, v.by, v.ago, v.state_exit) == (
        "was stopped by an administrator",
        "root-admin",
        "3 h 05 min ago",
        "",
    )


def test_the_jobs_nodes_are_shown_as_text(grid, engine):
    record(engine, "node_failure", details={"state": "NODE_FAIL", "reason": "NodeDown"})
    cell = build_page(grid, fake_user(), {}, engine=engine).cell("perlmutter-exclusive")
    # As the spawner's record gives them (hpchub.endings keeps "nodes" from the scheduler).
    cell.ended = replace(cell.ended, nodes=f"nid[001-002]{HOSTILE}")
    html = render_cell(cell)
    assert '<dd class="hpc-ended-nodes"><code>nid[001-002]&lt;/pre&gt;&lt;script&gt;' in html
    assert "<script" not in html
