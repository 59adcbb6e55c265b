"""Culling timeouts and warning leads per server (hpchub.culling): the cell's, else the
level's, else the global rule; the `cull` object of the status JSON; the console's note."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hpchub_notebook.schedule import cull_plan
from hpchub_notebook.status import parse_status

from hpchub.culling import CullPolicy, CullRule, cull_view, duration_words, idle_note
from hpchub.values import ConfigError


def values(**culling) -> dict:
    """Two systems sharing levels shared and gpu; the gpu level shorter than the global
    timeout, and one system's gpu cell shorter again."""
    return {
        "culling": {"enabled": True, "timeout": 3600, **culling},
        "serviceLevels": {
            "shared": {"title": "Shared"},
            "gpu": {"title": "GPU", "culling": {"timeout": 1800, "warnBeforeSeconds": 300}},
        },
        "systems": {
            "perl": {"levels": {"shared": {"backend": "ssh"}, "gpu": {"backend": "slurm"}}},
            "cori": {
                "levels": {
                    "shared": {"backend": "ssh"},
                    "gpu": {"backend": "slurm", "culling": {"timeout": 900}},
                }
            },
        },
    }


def test_a_cell_takes_its_own_timeout_else_its_levels_else_the_global_one_key_by_key() -> None:
    policy = CullPolicy.from_values(values(warnBeforeSeconds=600))
    assert policy.rule("perl-shared") == CullRule(3600, 600)
    assert policy.rule("perl-gpu") == CullRule(1800, 300)
    # cori's gpu cell sets only its timeout: the warning lead is still the level's
    assert policy.rule("cori-gpu") == CullRule(900, 300)
    # names that are no cell (the default server, another user's typo) get the global rule
    assert policy.rule("") == policy.rule("nosuch-gpu") == CullRule(3600, 600)


def test_defaults_are_an_hour_and_a_ten_minute_warning() -> None:
    policy = CullPolicy.from_values({})
    assert policy.enabled and policy.rule("any-thing") == CullRule(3600, 600)
    assert policy.shortest_timeout == 3600 and policy.shortest_source == "culling.timeout"


def test_the_shortest_timeout_and_the_key_that_sets_it() -> None:
    policy = CullPolicy.from_values(values())
    assert policy.shortest_timeout == 900
    assert policy.shortest_source == "systems.cori.levels.gpu.culling.timeout"
    v = values()
    del v["systems"]["cori"]["levels"]["gpu"]["culling"]
    assert CullPolicy.from_values(v).shortest_source == "serviceLevels.gpu.culling.timeout"
    v["culling"]["timeout"] = 600  # the global one is shortest now
    p = CullPolicy.from_values(v)
    assert (p.shortest_timeout, p.shortest_source) == (600, "culling.timeout")


def test_a_level_no_system_offers_does_not_set_the_shortest_timeout() -> None:
    v = values()
    v["serviceLevels"]["tiny"] = {"title": "Tiny", "culling": {"timeout": 60}}
    assert CullPolicy.from_values(v).shortest_timeout == 900


@pytest.mark.parametrize(
    "where, block, message",
    [
        ("culling", {"timeout": 59}, r"^culling\.timeout: expected whole seconds, at least 60; got 59$"),
        ("culling", {"timeout": "1h"}, r"^culling\.timeout: .* got '1h'$"),
        ("culling", {"timeout": True}, r"^culling\.timeout: .* got True$"),
        ("culling", {"warnBeforeSeconds": -1}, r"^culling\.warnBeforeSeconds: .*at least 0; got -1$"),
        ("level", {"timeout": 30}, r"^serviceLevels\.gpu\.culling\.timeout: .*at least 60; got 30$"),
        ("level", {"timeout": 90.5}, r"^serviceLevels\.gpu\.culling\.timeout: .* got 90\.5$"),
        ("cell", {"warnBeforeSeconds": "soon"}, r"^systems\.cori\.levels\.gpu\.culling\.warnBeforeSeconds: "),
        ("cell", [900], r"^systems\.cori\.levels\.gpu\.culling: expected a mapping"),
        ("culling", {"busyCpuPercent": -5}, r"^culling\.busyCpuPercent: .*from 0 \(off\) to 102400; got -5$"),
        (
            "level",
            {"busyGpuPercent": 101},
            r"^serviceLevels\.gpu\.culling\.busyGpuPercent: .* to 100; got 101$",
        ),
        ("cell", {"busyGpuPercent": "half"}, r"^systems\.cori\.levels\.gpu\.culling\.busyGpuPercent: "),
        ("cell", {"busyCpuPercent": True}, r"^systems\.cori\.levels\.gpu\.culling\.busyCpuPercent: .* True$"),
    ],
)
def test_bad_values_are_refused_naming_the_key(where: str, block, message: str) -> None:
    v = values()
    if where == "culling":
        v["culling"].update(block)
    elif where == "level":
        v["serviceLevels"]["gpu"]["culling"] = block
    else:
        v["systems"]["cori"]["levels"]["gpu"]["culling"] = block
    with pytest.raises(ConfigError, match=message):
        CullPolicy.from_values(v)


def test_the_culler_culls_each_server_after_its_own_timeout() -> None:
    policy = CullPolicy.from_values(values())
    assert not policy.idle_too_long("cori-gpu", timedelta(seconds=899))
    assert policy.idle_too_long("cori-gpu", timedelta(seconds=900))
    assert not policy.idle_too_long("perl-gpu", timedelta(seconds=900))
    assert policy.idle_too_long("perl-gpu", timedelta(seconds=1800))
    assert not policy.idle_too_long("perl-shared", timedelta(seconds=3599))
    assert policy.idle_too_long("perl-shared", timedelta(hours=2))
    # no activity known at all (upstream passes None): not culled on a guess
    assert not policy.idle_too_long("cori-gpu", None)
    off = CullPolicy.from_values(values(enabled=False))
    assert not off.idle_too_long("cori-gpu", timedelta(days=3))


def test_the_policy_reaches_the_culler_process_unchanged() -> None:
    policy = CullPolicy.from_values(values())
    again = CullPolicy.from_json(policy.to_json())
    assert (again.enabled, again.default, dict(again.servers)) == (
        policy.enabled,
        policy.default,
        dict(policy.servers),
    )
    assert "cori-gpu: 900 s" in again.describe() and "3600 s idle" in again.describe()


def test_cull_view_is_the_status_jsons_cull_object_and_the_notebook_reads_it() -> None:
    policy = CullPolicy.from_values(values())
    # JupyterHub's database keeps naive UTC times
    view = cull_view(policy, "cori-gpu", datetime(2026, 12, 1, 10, 0, 0, 250000))
    assert view == {
        "timeout_seconds": 900,
        "warn_before_seconds": 300,
        "last_activity": "2026-12-01T10:00:00.250000Z",
    }
    # hpchub-notebook's own parser (the contract) takes it as it is
    cull = parse_status({"phase": "running", "cull": view}).cull
    assert cull is not None and cull.timeout_seconds == 900 and cull.warn_before_seconds == 300
    assert cull.last_activity == datetime(2026, 12, 1, 10, 0, 0, 250000, tzinfo=UTC).timestamp()


def test_cull_view_with_an_aware_time_or_none_and_with_culling_off() -> None:
    policy = CullPolicy.from_values(values())
    cet = timezone(timedelta(hours=1))
    aware = cull_view(policy, "perl-shared", datetime(2026, 12, 1, 11, 0, tzinfo=cet))
    assert aware is not None and aware["last_activity"] == "2026-12-01T10:00:00.000000Z"
    never = cull_view(policy, "perl-shared", None)
    assert never == {"timeout_seconds": 3600, "warn_before_seconds": 600, "last_activity": None}
    assert parse_status({"phase": "running", "cull": never}).cull is not None
    assert cull_view(CullPolicy.from_values(values(enabled=False)), "perl-shared", None) is None


def test_the_warning_lead_is_at_most_half_the_timeout_as_lab_plans_it() -> None:
    v = values()
    v["systems"]["cori"]["levels"]["gpu"]["culling"] = {"timeout": 120, "warnBeforeSeconds": 600}
    policy = CullPolicy.from_values(v)
    view = cull_view(policy, "cori-gpu", datetime(2026, 12, 1, 10, 0))
    assert view is not None and view["warn_before_seconds"] == 60
    # the notebook side plans the warning 60 s before the cull, whichever lead it is given
    status = parse_status({"phase": "running", "cull": view})
    last = datetime(2026, 12, 1, 10, 0, tzinfo=UTC).timestamp()
    warn = cull_plan(status, None, now=last)
    assert warn is not None and warn.due_in == 60 and warn.seconds == 120


def test_the_console_says_when_an_idle_server_stops() -> None:
    policy = CullPolicy.from_values(values())
    assert idle_note(policy, "cori-gpu") == "Stops after 15 min idle"
    assert idle_note(policy, "perl-gpu") == "Stops after 30 min idle"
    assert idle_note(policy, "perl-shared") == "Stops after 60 min idle"
    assert idle_note(CullPolicy.from_values(values(enabled=False)), "perl-shared") == ""
    assert [duration_words(s) for s in (60, 119, 5400, 7200, 9000, 86400)] == [
        "1 min",
        "1 min",
        "90 min",
        "2 h",
        "2.5 h",
        "24 h",
    ]


def test_cpu_and_gpu_thresholds_are_inherited_key_by_key_and_reach_the_notebook_only_when_set() -> None:
    v = values(busyCpuPercent=150)
    v["serviceLevels"]["gpu"]["culling"]["busyGpuPercent"] = 20
    v["systems"]["cori"]["levels"]["gpu"]["culling"]["busyCpuPercent"] = 0  # this cell: off
    policy = CullPolicy.from_values(v)
    assert policy.rule("perl-shared") == CullRule(3600, 600, 150.0, None)
    assert policy.rule("perl-gpu") == CullRule(1800, 300, 150.0, 20.0)
    assert policy.rule("cori-gpu") == CullRule(900, 300, 0.0, 20.0)
    again = CullPolicy.from_json(policy.to_json())
    assert (again.default, dict(again.servers)) == (policy.default, dict(policy.servers))

    shared = cull_view(policy, "perl-shared", None)
    gpu = cull_view(policy, "cori-gpu", None)
    assert shared is not None and gpu is not None
    # unset is not sent: a site's own HPCHUB_BUSY_GPU_PERCENT stays in force; 0 (off) is
    assert shared["busy_cpu_percent"] == 150.0 and "busy_gpu_percent" not in shared
    assert gpu["busy_cpu_percent"] == 0.0 and gpu["busy_gpu_percent"] == 20.0
    cull = parse_status({"phase": "running", "cull": gpu}).cull
    assert cull is not None and (cull.busy_cpu_percent, cull.busy_gpu_percent) == (0.0, 20.0)
    # nothing set anywhere: the object is what it was before these keys existed
    assert set(cull_view(CullPolicy.from_values(values()), "perl-gpu", None) or {}) == {
        "timeout_seconds",
        "warn_before_seconds",
        "last_activity",
    }
