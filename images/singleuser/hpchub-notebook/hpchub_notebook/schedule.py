"""When to warn, when to save, when a cull is expected: pure functions of the status and now.

The server extension computes the plan; the browser only runs it (each action once, by its
key), so the rules live here, in one place, under unit test.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .status import HubStatus


@dataclass(frozen=True)
class Action:
    kind: str  # "warn" (walltime warning), "save" (save open documents), "cull-warn"
    key: str  # the browser does each key once; a new end time makes new keys
    due_in: float  # seconds from now; <= 0: due now
    seconds: int  # warn: the warning's seconds before the end; cull-warn: seconds to the cull


def effective_ends_at(hub_ends_at: float | None, signal_ends_at: float | None) -> float | None:
    """The earlier of the hub's end and the one a SIGUSR1 implied (either may be unknown)."""
    known = [t for t in (hub_ends_at, signal_ends_at) if t is not None]
    return min(known) if known else None


def walltime_plan(
    ends_at: float | None, now: float, warnings_seconds: tuple[int, ...], save_before_seconds: int
) -> list[Action]:
    """The walltime warnings and the save still to come (or due now) before ``ends_at``.

    Of the warnings whose time has passed only the latest (the fewest seconds before the end)
    is kept: a user who opens Lab with 4 minutes left gets the 5-minute warning, not also
    the 30-minute one. Nothing after the end: the server is going away.
    """
    if ends_at is None or ends_at <= now:
        return []
    end = round(ends_at)
    actions: list[Action] = []
    past = [w for w in warnings_seconds if ends_at - w <= now]
    for w in sorted(warnings_seconds, reverse=True):
        if w in past and w != min(past):
            continue
        actions.append(Action("warn", f"warn:{w}:{end}", ends_at - w - now, w))
    actions.append(Action("save", f"save:{end}", ends_at - save_before_seconds - now, save_before_seconds))
    return actions


def cull_at(
    timeout_seconds: int, hub_last_activity: float | None, local_last_activity: float | None
) -> float | None:
    """When the idle culler is expected to stop this server: the latest activity known to
    either side plus the timeout (None when neither knows any activity)."""
    known = [t for t in (hub_last_activity, local_last_activity) if t is not None]
    return max(known) + timeout_seconds if known else None


def cull_plan(status: HubStatus, local_last_activity: float | None, now: float) -> Action | None:
    """The cull warning, due ``warn_before_seconds`` before the expected cull (at most half the
    timeout, so that a short timeout does not warn an active user all the time)."""
    if status.cull is None:
        return None
    c = status.cull
    at = cull_at(c.timeout_seconds, c.last_activity, local_last_activity)
    if at is None:
        return None
    warn_before = min(c.warn_before_seconds, c.timeout_seconds // 2)
    return Action("cull-warn", f"cull:{round(at)}", at - warn_before - now, max(0, round(at - now)))


def frontend_view(
    status: HubStatus | None,
    *,
    now: float,
    signal_ends_at: float | None,
    local_last_activity: float | None,
    hub_error: str | None,
    version: str,
) -> dict[str, Any]:
    """What ``GET <base_url>hpchub/status`` answers the browser: times as seconds from now
    (the browser's clock may differ from the server's), the plan, the extend offer."""
    hub_ends = status.ends_at if status else None
    ends_at = effective_ends_at(hub_ends, signal_ends_at)
    view: dict[str, Any] = {
        "version": version,
        "connected": status is not None,
        "hub_error": hub_error,
        "phase": status.phase if status else None,
        "message": status.message if status else "",
        "ends_at": ends_at,
        "seconds_left": None if ends_at is None else ends_at - now,
        "ends_by_signal": signal_ends_at is not None and ends_at == signal_ends_at,
        "time_limit_seconds": status.time_limit_seconds if status else None,
        "extend": None,
        "cull": None,
        "actions": [],
    }
    if status is None:
        # With the hub not (yet) reached, a SIGUSR1 still means: save now.
        if ends_at is not None:
            view["actions"] = [asdict(a) for a in walltime_plan(ends_at, now, (), 120)]
        return view
    actions = walltime_plan(ends_at, now, status.warnings_seconds, status.save_before_seconds)
    if status.extend is not None:
        e = status.extend
        view["extend"] = {
            "allowed": e.allowed,
            "steps_seconds": list(e.steps_seconds),
            "max_seconds_left": None if e.max_ends_at is None else e.max_ends_at - now,
            "reason": e.reason,
        }
    cull = cull_plan(status, local_last_activity, now)
    if cull is not None:
        view["cull"] = {"seconds_left": cull.seconds, "warn_in": cull.due_in}
        actions.append(cull)
    view["actions"] = [asdict(a) for a in actions]
    return view
