"""The spawn-steps clock (hpchub/spawnsteps.py): what the "spawn steps" log line says."""

from __future__ import annotations

import pytest

from hpchub import spawnsteps
from hpchub.spawnsteps import SpawnSteps


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The module's monotonic clock, advanced by hand."""
    now = [100.0]
    monkeypatch.setattr(spawnsteps.time, "monotonic", lambda: now[0])
    return now


def test_each_step_is_the_time_since_the_one_before(clock: list[float]) -> None:
    steps = SpawnSteps()
    clock[0] += 0.002
    steps.mark("options")
    clock[0] += 1.5
    steps.mark("launch")
    clock[0] += 0.25
    steps.mark("route")
    assert steps.durations() == [
        ("options", pytest.approx(0.002)),
        ("launch", pytest.approx(1.5)),
        ("route", pytest.approx(0.25)),
    ]
    assert steps.text() == "options 0.002 s, launch 1.500 s, route 0.250 s; 1.752 s in all"


def test_a_step_marked_again_adds_up_in_its_first_place(clock: list[float]) -> None:
    # A wait that went round twice (no address yet, then the address) is one step.
    steps = SpawnSteps()
    clock[0] += 1.0
    steps.mark("server")
    clock[0] += 0.5
    steps.mark("queue")
    clock[0] += 2.0
    steps.mark("server")
    assert steps.durations() == [("server", pytest.approx(3.0)), ("queue", pytest.approx(0.5))]
    assert steps.text().endswith("; 3.500 s in all")
