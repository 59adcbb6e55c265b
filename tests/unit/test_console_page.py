"""The console's page model: which cells a user sees, and in which state."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from types import SimpleNamespace

import pytest

from hpchub.access import user_groups
from hpchub.console.page import build_page
from hpchub.culling import CullPolicy
from hpchub.grid import Grid
from hpchub.schedulers.slurm import SlurmScheduler
from hpchub.serverstate import Phase, ServerStatus
from hpchub.spawners.batch import job_view
from tests.harness.values import nersc_values

SLURM = SlurmScheduler()


@pytest.fixture(scope="module")
def grid() -> Grid:
    return Grid.from_values(nersc_values())


def fake_user(name="alice", groups=(), spawners=None):
    spawners = spawners or {}
    orm_user = SimpleNamespace(
        groups=[SimpleNamespace(name=g) for g in groups],
        orm_spawners={k: object() for k in spawners},
    )
    return SimpleNamespace(name=name, orm_user=orm_user, spawners=spawners)


def fake_spawner(pending=None, ready=False, status=None, **kw):
    """A spawner as the console sees it: JupyterHub's pending/ready and the backend's own
    typed ServerStatus (hpchub.serverstate)."""
    return SimpleNamespace(
        pending=pending,
        ready=ready,
        _spawn_future=None,
        server=None,
        server_status=lambda: status or ServerStatus(),
        **kw,
    )


def test_rows_are_systems_and_columns_are_levels_in_values_order(grid):
    page = build_page(grid, fake_user(), {})
    assert [r.system.name for r in page.rows] == ["perlmutter", "cori", "spin"]
    assert [lv.name for lv in page.levels] == ["shared", "exclusive", "gpu", "configurable"]
    spin = page.rows[2]
    assert [c is None for c in spin.cells] == [False, True, True, True]


def test_cell_needing_a_group_is_disabled_with_the_reason(grid):
    page = build_page(grid, fake_user(groups=[]), {})
    cell = page.cell("cori-gpu")
    # cori is in maintenance in the example: that reason wins
    assert "maintenance" in cell.disabled_reason
    values = nersc_values()
    values["systems"]["cori"]["maintenance"]["enabled"] = False
    g = Grid.from_values(values)
    assert build_page(g, fake_user(groups=[]), {}).cell("cori-gpu").disabled_reason == (
        "Needs membership in gpu-users."
    )
    assert build_page(g, fake_user(groups=["gpu-users"]), {}).cell("cori-gpu").disabled_reason == ""
    # groups from auth_state (sshproxy) count as much as JupyterHub groups (OAuth)
    assert build_page(g, fake_user(), {"groups": ["gpu-users"]}).cell("cori-gpu").disabled_reason == ""


def test_allocations_rule_out_slurm_cells_but_not_the_login_node(grid):
    state = {"allocations": [{"account": "m1", "qos": ["interactive"], "partitions": ["regular"]}]}
    page = build_page(grid, fake_user(), state)
    assert page.cell("perlmutter-shared").disabled_reason == ""
    assert page.cell("perlmutter-exclusive").disabled_reason == ""
    assert (
        page.cell("perlmutter-gpu").disabled_reason == "None of your allocations may use the gpu partition."
    )
    none = build_page(grid, fake_user(), {"allocations": []})
    assert none.cell("perlmutter-exclusive").disabled_reason.startswith("You have no allocation")
    assert none.cell("perlmutter-shared").disabled_reason == ""
    # absent allocations mean "not provided": allowed
    assert build_page(grid, fake_user(), {}).cell("perlmutter-gpu").disabled_reason == ""


def test_maintenance_shows_a_banner_and_disables_the_row(grid):
    page = build_page(grid, fake_user(), {})
    assert page.banners == ["Cori is in scheduled maintenance until Thursday 18:00."]
    assert all(c is None or c.disabled_reason for c in page.rows[1].cells)


def test_a_running_server_stays_stoppable_when_its_system_goes_into_maintenance(grid):
    status = ServerStatus(phase=Phase.RUNNING, host="cori01.example.org")
    user = fake_user(spawners={"cori-shared": fake_spawner(ready=True, status=status)})
    cell = build_page(grid, user, {}).cell("cori-shared")
    assert cell.state == "running" and cell.disabled_reason == ""
    assert cell.detail == "on cori01.example.org"


def test_queued_slurm_job_shows_reason_and_expected_start(grid):
    info = {
        "job_id": "42",
        "state": "PENDING",
        "reason": "Resources",
        "expected_start": "2026-11-25T18:00:00",
    }
    status = job_view(SLURM, ServerStatus(phase=Phase.QUEUED), info, 3600)
    user = fake_user(spawners={"perlmutter-exclusive": fake_spawner(pending="spawn", status=status)})
    cell = build_page(grid, user, {}).cell("perlmutter-exclusive")
    assert (cell.state, cell.label) == ("queued", "Queued")
    assert cell.detail == "Pending: Resources. Expected start: 2026-11-25 18:00:00."
    assert status.job_id == "42"


def test_running_slurm_job_shows_its_node_and_time_left(grid):
    started = datetime.fromtimestamp(time.time() - 600).isoformat(timespec="seconds")
    info = {"job_id": "42", "state": "RUNNING", "nodes": "nid001", "expected_start": started}
    status = job_view(SLURM, ServerStatus(phase=Phase.RUNNING), info, 3600)
    sp = fake_spawner(ready=True, status=status)
    cell = build_page(grid, fake_user(spawners={"perlmutter-exclusive": sp}), {}).cell("perlmutter-exclusive")
    assert cell.state == "running"
    assert cell.detail in ("on nid001 · 50 min left", "on nid001 · 49 min left")


def test_a_submitted_job_is_starting_until_squeue_says_it_is_pending():
    assert job_view(SLURM, ServerStatus(phase=Phase.QUEUED), {}, None).phase is Phase.STARTING
    assert (
        job_view(SLURM, ServerStatus(phase=Phase.QUEUED), {"state": "RUNNING"}, None).phase is Phase.STARTING
    )


def test_failed_start_shows_the_error_message(grid):
    async def fail():
        raise RuntimeError("Perlmutter: your home directory is over quota")

    loop = asyncio.new_event_loop()
    try:
        fut = loop.create_task(fail())
        loop.run_until_complete(asyncio.wait([fut]))
    finally:
        loop.close()
    sp = fake_spawner()
    sp._spawn_future = fut
    cell = build_page(grid, fake_user(spawners={"perlmutter-shared": sp}), {}).cell("perlmutter-shared")
    assert cell.state == "failed"
    assert "over quota" in cell.detail


def test_the_backends_status_wins_while_its_start_is_pending(grid):
    status = ServerStatus(phase=Phase.QUEUED, reason="Priority")
    sp = fake_spawner(pending="spawn", status=status)
    cell = build_page(grid, fake_user(spawners={"perlmutter-gpu": sp}), {}).cell("perlmutter-gpu")
    assert (cell.state, cell.detail) == ("queued", "Pending: Priority.")
    # JupyterHub's stop under way wins over the backend's phase.
    sp = fake_spawner(pending="stop", status=status)
    assert (
        build_page(grid, fake_user(spawners={"perlmutter-gpu": sp}), {}).cell("perlmutter-gpu").state
        == "stopping"
    )


def test_urls_follow_the_base_url_and_escape_the_user_name(grid):
    cell = build_page(grid, fake_user(name="a b"), {}, "/jh/hub/").cell("spin-shared")
    assert cell.api_url == "/jh/hub/api/users/a%20b/servers/spin-shared"
    assert cell.open_url == "/jh/user/a%20b/spin-shared/"
    assert cell.options_url == "/jh/hub/console/options/spin-shared"


def test_user_groups_merge_auth_state_and_hub_groups():
    assert user_groups(fake_user(groups=["staff"]), {"groups": ["gpu-users"]}) == {"staff", "gpu-users"}
    assert user_groups(fake_user(), None) == set()


def test_failed_start_shows_the_hubs_message_not_the_http_status():
    from tornado import web

    from hpchub.serverstate import error_text

    assert (
        error_text(web.HTTPError(403, "%s", "Mini HPC: over quota (100%)")) == "Mini HPC: over quota (100%)"
    )
    assert error_text(RuntimeError("job ended")) == "job ended"
    assert error_text(TimeoutError()) == "TimeoutError"


def test_fixed_levels_offer_options_only_when_there_is_something_to_choose(grid):
    page = build_page(grid, fake_user(), {})
    # perlmutter has environment versions: its fixed levels can pick one
    assert page.cell("perlmutter-shared").has_options
    assert page.cell("perlmutter-exclusive").has_options
    # Spin offers its images (spin.versions); cori's login nodes offer nothing to choose;
    # the configurable level is a form anyway
    assert page.cell("spin-shared").has_options
    assert not page.cell("cori-shared").has_options
    assert not page.cell("perlmutter-configurable").has_options


def test_spin_cell_says_whose_account_it_runs_as_and_what_home_is(grid):
    # The NERSC example: uid/gid from the IdP and the lookup, the home directory on NFS.
    page = build_page(grid, fake_user(), {})
    assert (
        page.cell("spin-shared").runs_as
        == "Runs as your own account, with your home directory mounted as HOME."
    )
    assert page.cell("perlmutter-shared").runs_as == ""  # the supercomputer: the user's own login
    # The chart's defaults: no identity source, nothing mounted at spin.homeDir.
    values = nersc_values()
    values.pop("identity")
    values["spin"] = {"uid": 1234}
    cell = build_page(Grid.from_values(values), fake_user(), {}).cell("spin-shared")
    assert cell.runs_as == (
        "Runs as a shared account (uid 1234), not yours; HOME is a scratch directory, deleted when the server stops."
    )
    # The user's uid, but no home volume: HOME is still scratch.
    values["identity"] = {"lookup": {"system": "perlmutter", "user": "hpchub"}}
    cell = build_page(Grid.from_values(values), fake_user(), {}).cell("spin-shared")
    assert (
        cell.runs_as
        == "Runs as your own account; HOME is a scratch directory, deleted when the server stops."
    )
    # A home volume elsewhere than spin.homeDir is not HOME.
    values["spin"]["volumes"] = {"scratch": {"mountPath": "/scratch/{username}", "hostPath": {"path": "/s"}}}
    cell = build_page(Grid.from_values(values), fake_user(), {}).cell("spin-shared")
    assert "HOME is a scratch directory" in cell.runs_as
    values["spin"]["homeDir"] = "/scratch/{username}"
    cell = build_page(Grid.from_values(values), fake_user(), {}).cell("spin-shared")
    assert cell.runs_as == "Runs as your own account, with your home directory mounted as HOME."


def test_cells_say_after_how_long_idle_their_server_stops(grid):
    values = nersc_values()
    culling = CullPolicy.from_values(values)
    running = fake_spawner(ready=True, status=ServerStatus(phase=Phase.RUNNING, host="nid001"))
    page = build_page(grid, fake_user(spawners={"perlmutter-gpu": running}), {}, culling=culling)
    # perlmutter's GPU cell has its own, shorter timeout in the example; the rest the global one
    assert page.cell("perlmutter-gpu").idle_note == "Stops after 30 min idle"
    assert page.cell("perlmutter-shared").idle_note == "Stops after 60 min idle"
    values["culling"] = {"enabled": False}
    off = build_page(grid, fake_user(), {}, culling=CullPolicy.from_values(values))
    assert off.cell("perlmutter-gpu").idle_note == ""
