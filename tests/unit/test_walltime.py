"""The walltime guard's rules (hpchub/walltime.py) and its values: warnings, the save
before the end, Extend's offer and cap per level and QOS, and the status JSON the
notebook package parses (its own parser, hpchub_notebook.status, reads what the hub writes)."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest
from hpchub_notebook.status import parse_status

from hpchub import remoteops
from hpchub.api import iso8601, status_json
from hpchub.console.page import build_page
from hpchub.culling import CullPolicy, cull_view
from hpchub.grid import Grid
from hpchub.options import CleanOptions
from hpchub.remoteops import extend_request
from hpchub.schedulers.slurm import SlurmScheduler
from hpchub.serverstate import JobShape, Phase, ServerStatus
from hpchub.settings import ExtendSettings, WalltimeSettings
from hpchub.spawners import batch
from hpchub.values import ConfigError
from hpchub.walltime import (
    ExtendRefused,
    check_extend,
    clock,
    extend_offer,
    minutes_text,
    time_warning,
    warnings_passed,
)
from tests.harness.values import dispatcher, grid_values

EXTEND = {
    "enabled": True,
    "user": "hpchubext",
    "forceCommand": "/usr/local/libexec/hpchub-extend-command",
    "maxTime": "04:00:00",
    "steps": ["00:30:00", "01:00:00"],
    "qos": {"debug": "01:00:00"},
}


def values(extend: dict | None = None, levels: dict | None = None, walltime: dict | None = None) -> dict:
    return {
        "serviceLevels": {
            "shared": {"title": "Shared"},
            "exclusive": {"title": "Exclusive node"},
            "short": {"title": "Short"},
            "spin": {"title": "Spin"},
        },
        "systems": {
            "mini": {
                "displayName": "Mini HPC",
                **({"walltime": walltime} if walltime is not None else {}),
                "slurm": {"partitions": {"debug": {}}, **({"extend": extend} if extend is not None else {})},
                "levels": levels
                or {
                    "shared": {"backend": "ssh"},
                    "exclusive": {"backend": "slurm"},
                    "short": {"backend": "slurm", "extend": {"maxTime": "02:00:00"}},
                    "spin": {"backend": "slurm", "extend": {"maxTime": "0"}},
                },
            }
        },
    }


def running(limit: int, left: int, qos: str = "") -> ServerStatus:
    """A running server's status, its job submitted as one node in partition debug."""
    shape = JobShape(nodes=1, partition="debug", qos=qos)
    return ServerStatus(
        phase=Phase.RUNNING, ends_at=time.time() + left, time_limit=limit, qos=qos, job_shape=shape
    )


@pytest.fixture(scope="module")
def grid() -> Grid:
    return Grid.from_values(values(EXTEND))


def test_defaults_warn_30_and_5_minutes_before_and_save_2_minutes_before() -> None:
    w = WalltimeSettings()
    assert (w.warnings_seconds, w.save_before_seconds) == ((1800, 300), 120)
    assert ExtendSettings().enabled is False


def test_a_levels_walltime_overrides_the_systems() -> None:
    g = Grid.from_values(
        values(
            walltime={"warningsMinutes": [10, 60, 10], "saveBeforeSeconds": 300},
            levels={"exclusive": {"backend": "slurm", "walltime": {"warningsMinutes": [3, 1]}}},
        )
    )
    w = g.cell("mini-exclusive").walltime
    assert (w.warnings_seconds, w.save_before_seconds) == ((180, 60), 300)
    assert g.systems[0].settings.walltime.warnings_seconds == (3600, 600)


@pytest.mark.parametrize(
    ("v", "key"),
    [
        (values(walltime={"saveBeforeSeconds": 5}), "systems.mini.walltime.saveBeforeSeconds"),
        (values(walltime={"warningsMinutes": [0]}), "systems.mini.walltime.warningsMinutes"),
        (values({**EXTEND, "user": ""}), "systems.mini.slurm.extend.user"),
        (values({**EXTEND, "maxTime": None}), "systems.mini.slurm.extend.maxTime"),
        (values({**EXTEND, "steps": ["00:00:30"]}), "systems.mini.slurm.extend.steps"),
        (values({**EXTEND, "qos": {"debug": "soon"}}), "systems.mini.slurm.extend.qos.debug"),
        (
            values(levels={"shared": {"backend": "ssh", "extend": {"maxTime": "01:00:00"}}}),
            "systems.mini.levels.shared.extend",
        ),
        (
            values(levels={"exclusive": {"backend": "slurm", "walltime": {"saveBeforeSeconds": 9000}}}),
            "systems.mini.levels.exclusive.walltime.saveBeforeSeconds",
        ),
    ],
)
def test_bad_walltime_values_are_refused_naming_the_key(v: dict, key: str) -> None:
    with pytest.raises((ConfigError, ValueError)) as e:
        Grid.from_values(v)
    assert key in str(e.value)


def test_the_offer_has_the_steps_within_the_cap(grid: Grid) -> None:
    status = running(limit=1800, left=600)
    offer = extend_offer(grid.cell("mini-exclusive"), status)
    assert offer is not None and offer.allowed and offer.steps_seconds == (1800, 3600)
    assert offer.max_ends_at == pytest.approx(status.ends_at - 1800 + 4 * 3600)
    # 1:30:00 of a 2-hour level cap used: only +30 minutes fits.
    short = extend_offer(grid.cell("mini-short"), running(limit=5400, left=600))
    assert short is not None and short.steps_seconds == (1800,) and short.cap_seconds == 7200
    # 1:50:00 used: the 10 minutes left to the cap are offered.
    rest = extend_offer(grid.cell("mini-short"), running(limit=6600, left=600))
    assert rest is not None and rest.steps_seconds == (600,)


def test_a_qos_cap_lower_than_the_levels_applies(grid: Grid) -> None:
    offer = extend_offer(grid.cell("mini-exclusive"), running(limit=1800, left=600, qos="debug"))
    assert offer is not None and offer.cap_seconds == 3600 and offer.cap_source == "QOS debug on Mini HPC"
    assert offer.steps_seconds == (1800,)


def test_not_offered_where_not_allowed(grid: Grid) -> None:
    assert extend_offer(grid.cell("mini-shared"), running(1800, 600)) is None  # login node
    assert extend_offer(Grid.from_values(values()).cell("mini-exclusive"), running(1800, 600)) is None
    off = extend_offer(grid.cell("mini-spin"), running(1800, 600))
    assert off is not None and not off.allowed and "cannot be extended" in off.reason
    queued = extend_offer(grid.cell("mini-exclusive"), ServerStatus(phase=Phase.QUEUED, time_limit=1800))
    assert queued is not None and not queued.allowed and "running" in queued.reason
    unknown = extend_offer(grid.cell("mini-exclusive"), ServerStatus(phase=Phase.RUNNING))
    assert unknown is not None and not unknown.allowed and "not known" in unknown.reason
    full = extend_offer(grid.cell("mini-short"), running(limit=7200, left=600))
    assert full is not None and not full.allowed and "(2:00:00)" in full.reason


def test_a_server_an_earlier_hub_started_is_not_offered_extend_but_told_to_restart(grid: Grid) -> None:
    """Its state has no job shape, so the login node could not check its job: the offer
    says so (Lab and the console show it), and a request is refused with the same words."""
    status = replace(running(limit=1800, left=600), job_shape=None)
    offer = extend_offer(grid.cell("mini-exclusive"), status)
    assert offer is not None and not offer.allowed and "restart the server" in offer.reason
    with pytest.raises(ExtendRefused) as e:
        check_extend(offer, status, 1800)
    assert e.value.status == 409 and e.value.message == offer.reason


@pytest.mark.parametrize(
    "state",
    [
        None,
        {},
        {"nodes": 0},
        {"nodes": True},
        {"nodes": "1"},
        {"nodes": 1, "partition": 5},
        ["nodes", 1],
        # The shape an earlier hub kept (no GPUs, exclusive, requeue): its job cannot be
        # checked for them, so Extend asks to restart the server.
        {"nodes": 1, "partition": "debug", "qos": "", "account": ""},
        {"nodes": 1, "gpus": 0, "exclusive": False},
        {**JobShape(nodes=1).to_state(), "gpus": -1},
        {**JobShape(nodes=1).to_state(), "gpus": True},
        {**JobShape(nodes=1).to_state(), "exclusive": "yes"},
        {**JobShape(nodes=1).to_state(), "requeue": None},
    ],
)
def test_a_missing_or_malformed_job_shape_in_state_is_none(state: object) -> None:
    assert JobShape.from_state(state) is None


def test_a_job_shape_survives_the_state() -> None:
    shape = JobShape(
        nodes=2, partition="gpu", qos="debug", account="proj1", gpus=4, exclusive=True, requeue=True
    )
    assert JobShape.from_state(shape.to_state()) == shape
    loose = JobShape(nodes=1, gpus=None, exclusive=None)
    assert JobShape.from_state(loose.to_state()) == loose
    assert JobShape.from_state({**JobShape(nodes=1).to_state(), "qos": None}) == JobShape(nodes=1)


def test_a_request_past_the_cap_is_refused_naming_the_cap(grid: Grid) -> None:
    status = running(limit=5400, left=600)
    offer = extend_offer(grid.cell("mini-short"), status)
    assert check_extend(offer, status, 1800) == 7200
    with pytest.raises(ExtendRefused) as e:
        check_extend(offer, status, 3600)
    assert e.value.status == 403
    assert e.value.message == (
        "Not extended by 1 h: the job would run 2:30:00 in all, past its cap of 2:00:00 "
        "(the Short level on Mini HPC)."
    )


@pytest.mark.parametrize("seconds", [0, -60, 90, 1.5e3, "1800", True, None, 10**20])
def test_a_request_that_is_not_whole_minutes_is_refused(grid: Grid, seconds: object) -> None:
    status = running(limit=1800, left=600)
    with pytest.raises(ExtendRefused) as e:
        check_extend(extend_offer(grid.cell("mini-exclusive"), status), status, seconds)
    assert e.value.status in (400, 403)


def test_a_server_with_the_cap_reached_is_refused_with_the_offers_reason(grid: Grid) -> None:
    status = running(limit=7200, left=600)
    with pytest.raises(ExtendRefused) as e:
        check_extend(extend_offer(grid.cell("mini-short"), status), status, 1800)
    assert e.value.status == 409 and "2:00:00" in e.value.message


def test_the_console_warns_past_the_first_warning_time() -> None:
    w = WalltimeSettings()
    now = time.time()
    assert time_warning(running(3600, 1900), w, now) == ""
    assert warnings_passed(running(3600, 1700), w, now) == 1
    assert time_warning(running(3600, 240), w, now) == "Ends in 4 min: save your work."
    assert warnings_passed(running(3600, 240), w, now) == 2


def test_durations_in_words() -> None:
    assert (clock(5400), clock(90000), minutes_text(1800), minutes_text(3600), minutes_text(5400)) == (
        "1:30:00",
        "1-01:00:00",
        "30 min",
        "1 h",
        "1 h 30 min",
    )


def test_the_status_json_is_what_the_notebook_package_reads(grid: Grid) -> None:
    """hpchub's JSON through hpchub-notebook's own parser: every field arrives."""
    status = running(limit=1800, left=600)
    offer = extend_offer(grid.cell("mini-exclusive"), status)
    assert offer is not None
    policy = CullPolicy.from_values({"culling": {"timeout": 3600, "warnBeforeSeconds": 600}})
    cull = cull_view(policy, "mini-exclusive", datetime(2026, 12, 6, 10, 0, 0))
    data = status_json(status, WalltimeSettings((3, 1), 60), offer.to_json(), cull)
    parsed = parse_status(data)
    assert parsed.phase == "running" and parsed.ends_at == pytest.approx(status.ends_at)
    assert (parsed.time_limit_seconds, parsed.warnings_seconds, parsed.save_before_seconds) == (
        1800,
        (180, 60),
        60,
    )
    assert parsed.extend is not None and parsed.extend.allowed and parsed.extend.steps_seconds == (3600, 1800)
    assert (
        parsed.cull is not None
        and parsed.cull.timeout_seconds == 3600
        and parsed.cull.warn_before_seconds == 600
    )
    assert parsed.cull.last_activity == datetime.fromisoformat("2026-12-06T10:00:00+00:00").timestamp()
    stopped = parse_status(status_json(ServerStatus(), WalltimeSettings(), None, None))
    assert (stopped.phase, stopped.ends_at, stopped.extend, stopped.cull) == ("stopped", None, None, None)
    off = CullPolicy.from_values({"culling": {"enabled": False}})
    assert cull_view(off, "mini-exclusive", None) is None and iso8601(None) is None


def fake_console_user(status: ServerStatus) -> SimpleNamespace:
    spawner = SimpleNamespace(
        pending=None, ready=True, _spawn_future=None, server=None, server_status=lambda: status
    )
    orm_user = SimpleNamespace(groups=[], orm_spawners={"mini-exclusive": object()})
    return SimpleNamespace(name="alice", orm_user=orm_user, spawners={"mini-exclusive": spawner})


def test_the_running_cell_warns_offers_extend_and_names_a_missing_notebook_package(grid: Grid) -> None:
    status = running(limit=1800, left=270)
    cell = build_page(grid, fake_console_user(status), {}).cell("mini-exclusive")
    assert cell is not None and cell.time_warning == "Ends in 4 min: save your work."
    assert cell.extend is not None and cell.extend_steps == [(1800, "30 min"), (3600, "1 h")]
    assert cell.extend_url == "/hub/console/extend/mini-exclusive"
    assert cell.extend_api_url == "/hub/api/hpchub/servers/alice/mini-exclusive/extend"
    assert cell.notebook_missing and cell.ends_at == int(status.ends_at)
    with_package = build_page(
        grid,
        fake_console_user(ServerStatus(phase=Phase.RUNNING, notebook_client="hpchub-notebook/0.1.0")),
        {},
    ).cell("mini-exclusive")
    assert with_package is not None and not with_package.notebook_missing and with_package.ends_at is None


# --- what the hub sends the login node (the job's shape) and what it shows of a refusal ---

SLURM = SlurmScheduler()
SHAPE = JobShape(nodes=1, partition="regular", qos="interactive")
JOB_NAME = "hpchub-0123456789abcdef"


def test_the_job_shape_is_the_checked_options_with_slurms_one_node() -> None:
    assert SLURM.job_shape(CleanOptions(partition="regular", qos="interactive", nodes=None), False) == SHAPE
    assert SLURM.job_shape(CleanOptions(nodes=4, account="proj1"), False) == JobShape(
        nodes=4, account="proj1"
    )


@pytest.mark.parametrize(
    ("options", "requeue", "shape"),  # the shape: JobShape(nodes=1, **shape)
    [
        # What the directives submit: --gpus-per-node, --exclusive, --requeue or --no-requeue.
        (CleanOptions(gpus=4), False, {"gpus": 4}),
        (CleanOptions(gpus=0, exclusive=True), True, {"exclusive": True, "requeue": True}),
        (
            CleanOptions(extra_directives=("--exclusive", "--mem=4G")),
            False,
            {"exclusive": True},
        ),
        # Extra directives the level allows that ask for them their own way: not compared.
        (CleanOptions(gpus=1, extra_directives=("--gpus-per-task=2",)), False, {"gpus": None}),
        (CleanOptions(extra_directives=("--gres=gpu:2",)), False, {"gpus": None}),
        (CleanOptions(extra_directives=("--exclusive=user",)), False, {"exclusive": None}),
    ],
)
def test_the_job_shape_has_the_gpus_exclusive_and_requeue_the_hub_submits(
    options: CleanOptions, requeue: bool, shape: dict[str, Any]
) -> None:
    assert SLURM.job_shape(options, requeue) == JobShape(nodes=1, **shape)


def test_the_extend_request_carries_the_jobs_shape() -> None:
    assert extend_request("alice", "42", 90, JOB_NAME, SHAPE) == [
        "extend", "alice", "42", "90", JOB_NAME, "regular", "interactive", "-", "1", "0", "shared", "no-requeue",
    ]  # fmt: skip
    shape = JobShape(nodes=2, gpus=4, exclusive=True, requeue=True)
    assert extend_request("alice", "42", 90, JOB_NAME, shape)[-7:] == [
        "-", "-", "-", "2", "4", "exclusive", "requeue",
    ]  # fmt: skip
    loose = JobShape(nodes=1, gpus=None, exclusive=None)
    assert extend_request("alice", "42", 90, JOB_NAME, loose)[-3:] == ["-", "-", "no-requeue"]


@pytest.mark.parametrize(
    ("user", "job", "minutes", "name", "shape"),
    [
        ("Alice", "42", 90, JOB_NAME, SHAPE),
        ("alice", "42;id", 90, JOB_NAME, SHAPE),
        ("alice", "42", 0, JOB_NAME, SHAPE),
        ("alice", "42", 90, "hpchub-0123", SHAPE),
        ("alice", "42", 90, JOB_NAME, JobShape(nodes=0)),
        ("alice", "42", 90, JOB_NAME, JobShape(nodes=1, partition="a b")),
        ("alice", "42", 90, JOB_NAME, JobShape(nodes=1, qos="-")),
        ("alice", "42", 90, JOB_NAME, JobShape(nodes=1, account="x\n")),
    ],
)
def test_a_word_the_login_node_would_refuse_is_never_sent(
    user: str, job: str, minutes: int, name: str, shape: JobShape
) -> None:
    with pytest.raises(ValueError, match="the extend account accepts"):
        extend_request(user, job, minutes, name, shape)


@pytest.mark.parametrize("gpus", [-1, 10000])
def test_a_gpu_count_the_login_node_would_refuse_is_never_sent(gpus: int) -> None:
    with pytest.raises(ValueError, match="the extend account accepts"):
        extend_request("alice", "42", 90, JOB_NAME, JobShape(nodes=1, gpus=gpus))


class FakeLoginNode:
    """The extend account's answer, and the requests it got."""

    def __init__(self, exit_status: int, stderr: str) -> None:
        self.answer = SimpleNamespace(exit_status=exit_status, stdout="", stderr=stderr)
        self.requests: list[list[str]] = []

    async def run(self, target: object, user: str, creds: object, argv: list[str], timeout: float) -> object:
        self.requests.append(argv)
        return self.answer


def login_node(monkeypatch: pytest.MonkeyPatch, exit_status: int, stderr: str = "") -> FakeLoginNode:
    node = FakeLoginNode(exit_status, stderr)
    monkeypatch.setattr(remoteops, "pool", node)
    ca = SimpleNamespace(service_credentials=lambda user, force_command: None)
    monkeypatch.setattr(remoteops, "certificate_authority", lambda values: ca)
    return node


EXTEND_SETTINGS = ExtendSettings(enabled=True, user="hpchubext", force_command="/x")


async def test_the_login_nodes_refusal_reaches_the_user_in_its_words(monkeypatch: pytest.MonkeyPatch) -> None:
    said = "hpchub-extend-command: refused: job 42 has 64 nodes; the server asked for 1 node\n"
    node = login_node(monkeypatch, 126, said)
    with pytest.raises(remoteops.ExtendJobRefused) as e:
        await remoteops.extend_job(
            "Mini HPC", None, EXTEND_SETTINGS, {"enabled": True}, "alice", "42", 90, JOB_NAME, SHAPE
        )
    assert (
        str(e.value) == "Mini HPC refused to extend job 42: job 42 has 64 nodes; the server asked for 1 node"
    )
    assert node.requests == [extend_request("alice", "42", 90, JOB_NAME, SHAPE)]
    # Anything else (scontrol's own error, a crash) is not a refusal of the job.
    login_node(monkeypatch, 1, "hpchub-extend-command: scontrol: Invalid job id specified")
    with pytest.raises(RuntimeError) as other:
        await remoteops.extend_job(
            "Mini HPC", None, EXTEND_SETTINGS, {"enabled": True}, "alice", "42", 90, JOB_NAME, SHAPE
        )
    assert not isinstance(other.value, remoteops.ExtendJobRefused)
    assert "scontrol: Invalid job id specified" in str(other.value)


def running_slurm_spawner(monkeypatch: pytest.MonkeyPatch, state: dict) -> Any:
    values = grid_values(
        {"pm": {"slurm": {"partitions": {"regular": {}}, "extend": EXTEND}}},
        cells={"pm-exclusive": {"backend": "slurm", "slurm": {"partition": "regular", "nodes": 1}}},
    )
    spawner = dispatcher(
        values, "pm-exclusive", {"ssh_ca": {"enabled": True}}, user=SimpleNamespace(name="alice")
    )
    spawner.load_state(
        {"backend": "slurm", "run_id": JOB_NAME[7:], "phase": "running", "job_id": "42", "time_limit": 1800,
         "expires": time.time() + 600, **state}
    )  # fmt: skip
    # JupyterHub's view (ready) and the login node are not part of this test.
    monkeypatch.setattr(type(spawner), "target", property(lambda s: None))
    monkeypatch.setattr(batch, "status_of", lambda s: replace(s.server_status(), phase=Phase.RUNNING))
    return spawner


async def test_extend_sends_the_jobs_shape_and_answers_a_refusal_with_409(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[tuple] = []

    async def refuse(*args: Any, **kw: Any) -> None:
        sent.append(args[4:])
        raise remoteops.ExtendJobRefused("Perlmutter refused to extend job 42: job 42 has 64 nodes")

    monkeypatch.setattr(batch, "extend_job", refuse)
    shape = JobShape(nodes=1, partition="regular", gpus=2)
    spawner = running_slurm_spawner(monkeypatch, {"job_shape": shape.to_state()})
    assert spawner.get_state()["job_shape"] == {
        "nodes": 1, "partition": "regular", "qos": "", "account": "", "gpus": 2, "exclusive": False, "requeue": False,
    }  # fmt: skip
    with pytest.raises(ExtendRefused) as e:
        await spawner.extend(1800)
    assert (e.value.status, e.value.message) == (
        409,
        "Perlmutter refused to extend job 42: job 42 has 64 nodes",
    )
    assert sent == [("alice", "42", 60, JOB_NAME, shape)]
    assert spawner.time_limit == 1800  # unchanged


async def test_a_server_started_before_the_shape_was_kept_is_told_to_restart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def never(*args: Any, **kw: Any) -> None:
        raise AssertionError("the login node was asked")

    monkeypatch.setattr(batch, "extend_job", never)
    spawner = running_slurm_spawner(monkeypatch, {})
    with pytest.raises(ExtendRefused) as e:
        await spawner.extend(1800)
    assert e.value.status == 409 and "restart the server to extend it" in e.value.message
    # The shape the previous hub kept (no GPUs, exclusive, requeue): the same.
    old = {"nodes": 1, "partition": "regular", "qos": "", "account": ""}
    spawner = running_slurm_spawner(monkeypatch, {"job_shape": old})
    assert spawner.server_status().job_shape is None
    with pytest.raises(ExtendRefused) as e:
        await spawner.extend(1800)
    assert e.value.status == 409 and "restart the server to extend it" in e.value.message
