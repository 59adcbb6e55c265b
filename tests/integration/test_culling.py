"""Culling that knows a kernel is busy (issue 18), the short guard of `make test` (under
2 minutes): while a kernel on a Slurm server runs a silent loop with its websocket closed
(the tab is closed), the hub's last_activity of the server keeps moving, so the culler sees
activity; the running cell says after how long idle it stops. The issue's case (a 10-minute
loop outliving a 2-minute timeout, an idle server with Lab in a background tab warned and
culled, a cell's own timeout over its level's, the ended cell): test_culling_long.py
(`make test-culling`). The timeline and its checks: culling_center.py."""

from __future__ import annotations

import pytest

from . import culling_center as cc
from .culling_center import Observed, guarded_fixture  # noqa: F401 - a fixture

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# 60 s is the shortest timeout the chart allows; the loop is shorter (the long case shows
# the cull itself), the reports frequent: 10 s from the notebook, 5 s busy checks.
GUARD = cc.Timing(loop_seconds=40, timeout=60, activity=10, every=10, warn_before=30)
center = cc.center_fixture(GUARD)


def test_a_running_cell_says_after_how_long_idle_it_stops(guarded: Observed) -> None:
    assert guarded.console_notes == {cc.BUSY: "Stops after 1 min idle"}


def test_a_busy_kernel_with_its_tab_closed_is_activity_the_hub_sees(guarded: Observed) -> None:
    cc.assert_busy_kernel_is_activity(guarded, GUARD)
