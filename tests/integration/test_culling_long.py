"""The issue's case, end to end (`make test-culling`, about 15 minutes; not in `make test`,
whose guard is test_culling.py): a kernel in a silent 10-minute loop, its tab closed, with
a 2-minute culling timeout, is not culled, and is once the loop has ended; an idle server
with JupyterLab open in a background tab is warned in Lab, then culled, and its ended cell
says so; a cell's own long timeout keeps its idle server; the cells say their timeouts. The
timeline and its checks: culling_center.py."""

from __future__ import annotations

import pytest

from ..browser.conftest import browser  # noqa: F401 - a fixture
from . import culling_center as cc
from .culling_center import Observed, observed_fixture  # noqa: F401 - a fixture

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow]

ISSUE = cc.Timing(loop_seconds=600, timeout=120, activity=30, every=10, warn_before=60, cull_after_loop=True)
center = cc.center_fixture(ISSUE)


def test_console_cells_say_after_how_long_idle_they_stop(observed: Observed) -> None:
    assert observed.console_notes == {cc.IDLE: "Stops after 2 min idle", cc.KEPT: "Stops after 60 min idle"}


def test_ten_minute_silent_loop_with_its_tab_closed_outlives_a_two_minute_timeout(observed: Observed) -> None:
    cc.assert_busy_server_kept(observed, ISSUE)


def test_the_server_is_culled_once_its_kernel_is_idle(observed: Observed) -> None:
    cc.assert_culled_once_the_loop_ended(observed, ISSUE)


def test_idle_server_with_lab_open_in_a_background_tab_is_culled(observed: Observed) -> None:
    cc.assert_idle_server_culled(observed, ISSUE)
    cc.assert_long_timeout_cell_kept(observed)


def test_lab_warns_before_the_idle_server_is_culled(observed: Observed) -> None:
    cc.assert_lab_warned_before_the_cull(observed, ISSUE)


def test_the_culled_servers_cell_says_it_was_stopped_for_being_idle(
    center: cc.Center, observed: Observed
) -> None:
    assert observed.bob_culled is not None
    cc.assert_ended_cell_says_idle(center.hub, ISSUE)
