"""The dispatcher turns a named server into its backend spawner, or refuses it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from tornado import web

from hpchub.schedulers import SCHEDULERS
from hpchub.schedulers.slurm import SlurmScheduler
from hpchub.serverstate import Phase, ServerStatus
from hpchub.spawners.batch import BatchSpawner, SlurmSpawner, job_view
from hpchub.spawners.dispatch import DispatchSpawner, RefusedSpawner
from hpchub.spawners.loginnode import SSHSpawner
from hpchub.spawners.remote import upgrade_state
from tests.harness.values import dispatcher

from .test_options import VALUES

NO_CA = {"ssh_ca": {"enabled": False}}


def make(name: str, values: dict = VALUES) -> DispatchSpawner:
    return dispatcher(values, name, NO_CA)


def test_cells_become_their_backend_classes() -> None:
    ssh = make("pm-shared")
    slurm = make("pm-exclusive")
    assert type(ssh) is SSHSpawner and ssh.cell.server_name == "pm-shared"
    assert type(slurm) is SlurmSpawner and slurm.cell.fixed["partition"] == "regular"
    # The backend *is* the hub's spawner: traits from c.DispatchSpawner reach it.
    assert slurm.systems["pm"]["displayName"] == "Perlmutter"
    assert isinstance(slurm, DispatchSpawner)


@pytest.mark.parametrize("name", ["", "pm-nosuch", "nosuch-shared", "pm"])
async def test_unknown_names_are_refused_with_404(name: str) -> None:
    spawner = make(name)
    assert type(spawner) is RefusedSpawner
    with pytest.raises(web.HTTPError) as e:
        await spawner.start()
    assert e.value.status_code == 404
    assert await spawner.poll() == 0  # a stale DB row never looks like a running server


def test_state_round_trips_through_the_backend() -> None:
    ssh = make("pm-shared")
    state = {
        "version": 2,
        "backend": "ssh",
        "run_id": "ab12cd34ab12cd34",
        "phase": "running",
        "started": 1700000000.0,
        "expires": 1700043200.0,
        "remote_host": "login02:22",
        "pid": 4242,
        "pid_start": "Tue Nov 14 22:13:20 2023",
        "port": 50001,
    }
    ssh.load_state(state)
    assert ssh.get_state() == state
    slurm = make("pm-configurable")
    state = {
        "version": 2,
        "backend": "slurm",
        "run_id": "ef56ef56ef56ef56",
        "phase": "queued",
        "started": 1700000000.0,
        "remote_host": "login01:22",
        "job_id": "77",
        "qos": "debug",
        "job_shape": {
            "nodes": 2,
            "partition": "regular",
            "qos": "debug",
            "account": "",
            "gpus": 2,
            "exclusive": False,
            "requeue": False,
        },  # fmt: skip
    }
    slurm.load_state(state)
    assert slurm.get_state() == state
    slurm.clear_state()
    assert slurm.get_state() == {}


def test_rows_written_before_phases_are_running_servers() -> None:
    # hpchub 0.1.0 stored no phase: a pid or job id meant a running server.
    ssh = make("pm-shared")
    ssh.load_state(
        {"pid": 4242, "port": 50001, "remote_host": "login02:22", "run_id": "ab12", "backend": "ssh"}
    )
    assert ssh.phase == "running" and ssh.get_state()["pid"] == 4242
    slurm = make("pm-configurable")
    slurm.load_state({"job_id": "77", "remote_host": "login01:22"})
    assert slurm.phase == "running" and slurm.get_state()["job_id"] == "77"


def test_a_launch_in_flight_is_in_the_state() -> None:
    # Saved before anything reaches the login node: run id, host and phase, no job id yet.
    # A row of 0.1.0 ("launching", no version) reads as this version's "submitting".
    slurm = make("pm-configurable")
    slurm.load_state({"backend": "slurm", "run_id": "ab", "phase": "launching", "remote_host": "l:22"})
    assert slurm.get_state() == {
        "version": 2,
        "backend": "slurm",
        "run_id": "ab",
        "phase": "submitting",
        "remote_host": "l:22",
    }


def test_state_rows_of_every_earlier_version_are_read_as_this_ones() -> None:
    assert upgrade_state({"job_id": "77"}) == {"job_id": "77", "phase": "running", "version": 2}
    assert upgrade_state({"pid": 4, "run_id": "a"}) == {
        "pid": 4,
        "run_id": "a",
        "phase": "running",
        "version": 2,
    }
    for old, new in (("launching", "submitting"), ("queued", "queued"), ("starting", "starting")):
        assert upgrade_state({"phase": old})["phase"] == new
    assert upgrade_state({}) == {"version": 2}
    current = {"version": 2, "phase": "submitting", "run_id": "x"}
    assert upgrade_state(current) == current


async def test_bad_options_become_http_400_naming_the_field() -> None:
    slurm = make("pm-configurable")
    slurm.user = SimpleNamespace(name="alice", get_auth_state=_no_auth_state)
    with pytest.raises(web.HTTPError) as e:
        await slurm.apply_user_options(slurm, {"nodes": -1})
    assert e.value.status_code == 400
    assert "nodes" in (e.value.log_message % e.value.args)


@pytest.mark.parametrize(
    ("auth_state", "reason"),
    [
        ({"allocations": []}, "You have no allocation to charge on Perlmutter."),
        ({"allocations": [{"account": "m1", "partitions": ["gpu"]}]}, "may use the regular partition"),
    ],
)
async def test_cell_rules_are_403_in_the_option_check_every_start_goes_through(auth_state, reason) -> None:
    slurm = make("pm-exclusive")

    async def state() -> dict:
        return auth_state

    slurm.user = SimpleNamespace(name="alice", get_auth_state=state)
    with pytest.raises(web.HTTPError) as e:
        await slurm.apply_user_options(slurm, {})
    assert e.value.status_code == 403
    assert reason in (e.value.log_message % e.value.args)


def test_timeouts_come_from_values() -> None:
    assert make("pm-exclusive").start_timeout == 900
    assert make("pm-shared").start_timeout == 180


async def _no_auth_state() -> None:
    return None


def test_polls_follow_the_status_interval_with_jitter() -> None:
    systems = {k: dict(v) for k, v in VALUES["systems"].items()}
    systems["pm"] = {**systems["pm"], "status": {"intervalSeconds": 45}}
    s = make("pm-exclusive", {**VALUES, "systems": systems})
    # +-20% (tornado's jitter is a fraction of the whole range): 1,000 polls never line up.
    assert (s.poll_interval, s.poll_jitter) == (45, 0.4)
    assert make("pm-shared").poll_jitter == 0.4 and make("pm-shared").poll_interval == 30


def test_a_new_scheduler_is_an_adapter_and_a_registry_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator guide's "Adding a scheduler" holds: with one adapter registered, a level
    naming it becomes a batch spawner on that adapter, its directives reach the job script,
    its states drive the phase, and the dispatcher, grid and board need nothing new."""

    class PbsScheduler(SlurmScheduler):
        name = "pbs"
        title = "PBS"
        values_key = "pbs"
        submitter = "qsub"
        queued_states = frozenset({"Q"})
        active_states = frozenset({"Q", "R"})
        ended_states = frozenset({"F", "GONE", "FOREIGN"})
        running_state = "R"

        def directive_prefix(self) -> str:
            return "#PBS"

        def submit_command(self, script_eof: str) -> str:
            return f"qsub <<'{script_eof}'"

    monkeypatch.setitem(SCHEDULERS, "pbs", PbsScheduler())
    systems = {
        "pbsys": {
            "displayName": "PBS system",
            "ssh": {"hosts": ["login"], "knownHosts": ""},
            "pbs": {"pollSeconds": 3},
            "levels": {
                "exclusive": {"backend": "pbs", "pbs": {"partition": "workq", "nodes": 1, "time": "01:00:00"}}
            },
        }
    }
    spawner = make("pbsys-exclusive", {**VALUES, "systems": systems})
    assert type(spawner).__name__ == "PbsSpawner" and isinstance(spawner, BatchSpawner)
    assert spawner.scheduler.name == "pbs" and spawner.poll_seconds == 3.0
    assert spawner.cell.is_batch and spawner.cell.fixed["partition"] == "workq"
    queued = job_view(
        spawner.scheduler, ServerStatus(phase=Phase.QUEUED), {"state": "Q", "reason": "Resources"}, None
    )
    assert queued.phase is Phase.QUEUED and queued.detail() == "Pending: Resources."
    assert spawner.scheduler.phase("R") is Phase.STARTING and spawner.scheduler.kind("F") == "ended"
