"""Recording how servers end: who writes an hpchub.endings.Ending, and when.

- :func:`record` is the one place an ending is written: the table (hpchub.endings), the
  metric ``hpchub_server_ends_total{system,level,cause}`` and a log line. A failure to
  write is logged, never raised: a poll or a stop must not fail over it.
- **Who stopped a server.** JupyterHub's stop API (``DELETE /hub/api/users/<u>/servers/<s>``,
  which its admin page and the idle culler use too) does not tell the spawner who asked.
  The request's handler knows (``handler.current_user``), and tornado hands that handler to
  the application's ``log_function`` once the request has finished; the spawner knows the
  rest (the server, its options, its last activity) when its stop begins. The two meet
  here, keyed by (user, server), in whichever order they come: a stop quicker than
  JupyterHub's answer (204) begins before the request is logged, a slower one (202) after.
  :func:`requested` is the request's side (the log function; hpchub's own stop forms call
  it before they stop), :func:`stopping` the spawner's; the second of the two records the
  ending: ``user`` (the owner: recorded, not shown), ``idle`` (the idle culler, with how
  long the server had been idle), ``admin`` (anyone else: an administrator, a service;
  ``by`` names them). A stop hpchub itself decides (a lifetime, a lost tunnel) is recorded
  by the spawner directly, with its own cause.
- **Retention**: :func:`start_with_hub` prunes endings older than
  ``console.endedRetentionDays`` every hour, in the hub.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from jupyterhub.apihandlers.users import UserServerAPIHandler
from jupyterhub.log import log_request as jupyterhub_log_request
from sqlalchemy.engine import Engine

from . import endings, metrics
from .endings import Ending

# A child of JupyterHub's logger: the hub's handlers and format apply.
log = logging.getLogger("JupyterHub").getChild("ends")

# The idle culler's service name (hpchub.config registers it): its stops are "idle".
CULLER_SERVICE = "idle-culler"
# How long one side waits for the other. A stop request is logged at most JupyterHub's
# slow-stop wait (10 s) after the spawner's stop began, or as soon as it ends; a stop
# begins a moment after its request. Anything older belongs to no stop.
WAIT_SECONDS = 120.0
PRUNE_EVERY = 3600.0


def record(engine: Engine | None, ending: Ending) -> int | None:
    """Write ``ending`` (the table, the metric, the log); its id, None if it failed."""
    if engine is None:
        log.error("no database to record how %s/%s ended (%s)", ending.username, ending.server, ending.cause)
        return None
    try:
        row = endings.record(engine, ending)
    except Exception:  # noqa: BLE001 - a poll or stop must not fail over its record
        log.exception("cannot record how %s/%s ended (%s)", ending.username, ending.server, ending.cause)
        return None
    metrics.server_ended(ending.system, ending.level, ending.cause)
    log.info(
        "%s/%s %s%s",
        ending.username,
        ending.server,
        ending.words,
        f" ({ending.details})" if ending.details else "",
    )
    return row


# --- who stopped it --------------------------------------------------------------------


@dataclass(frozen=True)
class Requester:
    """Who asked for a stop, and when."""

    name: str
    kind: str  # "user" or "service"
    at: float = field(default_factory=time.time)


@dataclass
class PendingStop:
    """A stop the spawner began without a cause of its own: the ending, less its cause."""

    engine: Engine | None
    ending: Ending
    last_activity: float | None = None  # epoch seconds: the server's, before the stop
    began: float = field(default_factory=time.time)


Key = tuple[str, str]  # (username, server name)
_requests: dict[Key, Requester] = {}
_stops: dict[Key, PendingStop] = {}


def cause_of(requester: Requester, owner: str) -> str:
    if requester.kind == "user" and requester.name == owner:
        return "user"
    if requester.kind == "service" and requester.name == CULLER_SERVICE:
        return "idle"
    return "admin"


def attributed(stop: PendingStop, requester: Requester) -> Ending:
    """The pending stop's ending, with the cause its requester gives it."""
    cause = cause_of(requester, stop.ending.username)
    details = {**stop.ending.details, "by": requester.name}
    if cause == "idle" and stop.last_activity:
        details["idle_seconds"] = max(stop.began - stop.last_activity, 0)
    return replace(stop.ending, cause=cause, details=details, ended=time.time())


def _expire(now: float) -> None:
    for key in [k for k, r in _requests.items() if now - r.at > WAIT_SECONDS]:
        del _requests[key]
    for key in [k for k, s in _stops.items() if now - s.began > WAIT_SECONDS]:
        del _stops[key]


def requested(username: str, server: str, requester: Requester) -> None:
    """A stop of ``username``'s ``server`` was asked for by ``requester``."""
    _expire(time.time())
    stop = _stops.pop((username, server), None)
    if stop is None:
        _requests[(username, server)] = requester
        return
    record(stop.engine, attributed(stop, requester))


def stopping(stop: PendingStop) -> None:
    """The spawner of ``stop.ending``'s server began a stop nobody in hpchub decided."""
    _expire(time.time())
    key = (stop.ending.username, stop.ending.server)
    requester = _requests.pop(key, None)
    if requester is None:
        _stops[key] = stop
        return
    record(stop.engine, attributed(stop, requester))


def forget(username: str, server: str) -> None:
    """A new start: nothing waiting for the server's last stop belongs to it."""
    _requests.pop((username, server), None)
    _stops.pop((username, server), None)


def requester_of(user: Any) -> Requester | None:
    """A JupyterHub user or service (``handler.current_user``) as a Requester."""
    name = getattr(user, "name", None)
    if not name:
        return None
    return Requester(str(name), "service" if getattr(user, "kind", "user") == "service" else "user")


def log_request(handler: Any) -> None:
    """Tornado's log_function for the hub: JupyterHub's own (its log line and request
    metrics), then the requester of a stop that JupyterHub's REST API accepted."""
    jupyterhub_log_request(handler)
    try:
        if (
            isinstance(handler, UserServerAPIHandler)
            and handler.request.method == "DELETE"
            and handler.get_status() in (202, 204)
            and len(handler.path_args) == 2
        ):
            requester = requester_of(handler.current_user)
            username, server = (str(a) for a in handler.path_args)
            if requester is not None and server:
                began = time.time() - handler.request.request_time()
                requested(username, server, replace(requester, at=began))
    except Exception:  # noqa: BLE001 - the request is over; its log must not fail
        log.exception("cannot tell who stopped %s", handler.request.path)


def last_activity(value: datetime | None) -> float | None:
    """JupyterHub's last_activity (naive UTC) in epoch seconds."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


# --- retention -------------------------------------------------------------------------

_retention_days: float = endings.RETENTION_DAYS
_task: asyncio.Task[None] | None = None


def configure(retention_days: float) -> None:
    """``console.endedRetentionDays`` (the loader sets it)."""
    global _retention_days
    _retention_days = float(retention_days)


def retention_days() -> float:
    return _retention_days


def prune(engine: Engine, now: float | None = None) -> int:
    """Forget endings past the retention period; how many."""
    gone = endings.prune(engine, endings.since(_retention_days, now))
    if gone:
        log.info("forgot %d ending(s) older than %g days", gone, _retention_days)
    return gone


def start_with_hub() -> None:
    """Called by the config loader while JupyterHub loads its configuration: prune once
    the hub runs, then every hour."""
    global _task
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    if _task is None or _task.done():
        _task = asyncio.ensure_future(_prune_loop())


async def _prune_loop() -> None:
    try:
        from jupyterhub.app import JupyterHub
    except ImportError:  # pragma: no cover - the hub image always has it
        return
    if not JupyterHub.initialized():
        return
    app = JupyterHub.instance()
    started = getattr(app, "_start_future", None)
    if started is not None:
        await asyncio.shield(started)
    while True:
        try:
            prune(app.db.get_bind())
        except Exception:  # noqa: BLE001 - the loop must outlive a DB blip
            log.exception("pruning endings failed")
        await asyncio.sleep(PRUNE_EVERY)
