"""The plan the browser runs: warnings, the save before the end, the cull warning."""

from __future__ import annotations

from hpchub_notebook.schedule import cull_at, cull_plan, effective_ends_at, frontend_view, walltime_plan
from hpchub_notebook.status import parse_status

NOW = 1_900_000_000.0


def kinds(actions):
    return [(a.kind, a.seconds, round(a.due_in)) for a in actions]


def test_an_hour_left_plans_both_warnings_and_the_save():
    plan = walltime_plan(NOW + 3600, NOW, (1800, 300), 120)
    assert kinds(plan) == [("warn", 1800, 1800), ("warn", 300, 3300), ("save", 120, 3480)]


def test_of_the_passed_warnings_only_the_latest_is_kept():
    # Lab opened with 4 minutes left: the 5-minute warning now, not the 30-minute one.
    plan = walltime_plan(NOW + 240, NOW, (1800, 300), 120)
    assert kinds(plan) == [("warn", 300, -60), ("save", 120, 120)]


def test_a_save_whose_time_passed_is_due_now_until_the_end():
    plan = walltime_plan(NOW + 60, NOW, (1800, 300), 120)
    assert ("save", 120, -60) in kinds(plan)
    assert walltime_plan(NOW - 1, NOW, (1800, 300), 120) == []
    assert walltime_plan(None, NOW, (1800, 300), 120) == []


def test_a_new_end_time_makes_new_keys():
    a = {x.key for x in walltime_plan(NOW + 3600, NOW, (300,), 120)}
    b = {x.key for x in walltime_plan(NOW + 7200, NOW, (300,), 120)}
    assert a.isdisjoint(b)


def test_the_earlier_of_hub_and_signal_ends_counts():
    assert effective_ends_at(NOW + 3600, NOW + 120) == NOW + 120
    assert effective_ends_at(None, NOW + 120) == NOW + 120
    assert effective_ends_at(NOW + 50, NOW + 120) == NOW + 50
    assert effective_ends_at(None, None) is None


def test_cull_time_is_the_latest_activity_plus_the_timeout():
    assert cull_at(600, NOW - 100, NOW - 300) == NOW + 500
    assert cull_at(600, None, NOW - 300) == NOW + 300
    assert cull_at(600, None, None) is None


def status(**cull):
    return parse_status(
        {"phase": "running", "cull": {"timeout_seconds": 3600, "warn_before_seconds": 600, **cull}}
    )


def test_cull_warning_due_before_the_cull_and_not_while_active():
    idle = cull_plan(status(last_activity="2030-03-17T16:46:40Z"), NOW - 3200, NOW)  # cull in 400 s
    assert idle is not None and idle.due_in < 0 and idle.seconds == 400
    active = cull_plan(status(), NOW - 5, NOW)
    assert active is not None and active.due_in > 0
    assert cull_plan(parse_status({"phase": "running"}), NOW, NOW) is None


def test_a_short_timeout_warns_at_most_half_of_it_before():
    # timeout 120 s, warn 600 s before: an active user would be warned all the time.
    plan = cull_plan(parse_status({"phase": "running", "cull": {"timeout_seconds": 120}}), NOW, NOW)
    assert plan is not None and plan.due_in == 60


def test_the_view_speaks_in_seconds_from_now():
    s = parse_status(
        {
            "phase": "running",
            "ends_at": NOW + 600,
            "extend": {"allowed": False, "reason": "no extension on debug"},
        }
    )
    v = frontend_view(s, now=NOW, signal_ends_at=None, local_last_activity=NOW, hub_error=None, version="1")
    assert v["seconds_left"] == 600 and v["extend"]["reason"] == "no extension on debug"
    # 10 minutes left: the 30-minute warning is due now, the 5-minute one and the save later.
    assert [(a["kind"], a["seconds"], a["due_in"]) for a in v["actions"]] == [
        ("warn", 1800, -1200),
        ("warn", 300, 300),
        ("save", 120, 480),
    ]


def test_sigusr1_without_the_hub_still_plans_the_save():
    v = frontend_view(
        None, now=NOW, signal_ends_at=NOW + 120, local_last_activity=None, hub_error="down", version="1"
    )
    assert v["ends_by_signal"] and [a["kind"] for a in v["actions"]] == ["save"]
    assert v["actions"][0]["due_in"] <= 0
