"""Culling that knows a kernel is busy (issue 18), the short guard of `make test`: a kernel
in a silent 3-minute loop with its tab closed outlives a 1-minute culling timeout; an idle
server with JupyterLab open in a background tab is warned in Lab, then culled; a cell's own
long timeout wins over its level's. The issue's 10-minute case: test_culling_long.py
(`make test-culling`). The timeline and its checks: culling_center.py."""

from __future__ import annotations

import pytest

from ..browser.conftest import browser  # noqa: F401 - a fixture
from . import culling_center as cc
from .culling_center import Observed, observed_fixture  # noqa: F401 - a fixture

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow]

GUARD = cc.Timing(loop_seconds=180, timeout=60, activity=30, every=10, warn_before=30)
center = cc.center_fixture(GUARD)


def test_console_cells_say_after_how_long_idle_they_stop(observed: Observed) -> None:
    assert observed.console_notes == {cc.IDLE: "Stops after 1 min idle", cc.KEPT: "Stops after 60 min idle"}


def test_busy_kernel_in_a_silent_loop_with_its_tab_closed_is_not_culled(observed: Observed) -> None:
    cc.assert_busy_server_kept(observed, GUARD)


def test_idle_server_with_lab_open_in_a_background_tab_is_culled(observed: Observed) -> None:
    cc.assert_idle_server_culled(observed, GUARD)


@cc.NEEDS_STATUS_ENDPOINT
def test_lab_warns_before_the_idle_server_is_culled(observed: Observed) -> None:
    cc.assert_lab_warned_before_the_cull(observed, GUARD)


def test_a_cells_own_longer_timeout_keeps_its_idle_server(observed: Observed) -> None:
    cc.assert_long_timeout_cell_kept(observed)


@cc.NEEDS_ENDINGS
def test_the_culled_servers_cell_says_it_was_stopped_for_being_idle(
    center: cc.Center, observed: Observed
) -> None:
    assert observed.bob_culled is not None
    cc.assert_ended_cell_says_idle(center.hub, GUARD)
