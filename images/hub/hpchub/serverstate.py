"""A server's state, one value for every view: the console cell, the admin view, the metrics,
the progress events and console.js all render a :class:`ServerStatus`.

Where it comes from:

- the backend's own knowledge of its run (its ``server_status()``: the phase of the run, the
  Slurm job, the login node, the pending reason, when it must end), and
- JupyterHub's view of the spawner (a spawn or stop under way, ready, a start that failed),
- how its last run ended (hpchub.endings, read by the console once per page:
  :meth:`ServerStatus.with_ending`), while it does not run again.

:func:`status_of` combines the two; it is the only reader of JupyterHub's private spawn
attributes (``_spawn_future``), and :func:`interrupt_start` the only writer besides the
restart adoption (hpchub/spawners/restart.py), which turns a run back into a pending spawn.

A leaf module: it imports nothing of hpchub, so views, spawners and metrics can all depend
on it (docs/design/architecture.md). Adding a field to what a cell shows is a field here and
a line in the template (home.html) — the sentence a queued cell shows is written once, in
:meth:`ServerStatus.detail`, for the page and for the progress events console.js draws.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any, Protocol


class Phase(StrEnum):
    """Where a server is in its life (the console's words are in STATE_LABELS)."""

    REQUESTED = "requested"  # JupyterHub started the spawn; the backend has done nothing yet
    SUBMITTING = "submitting"  # run named and pinned; launching or submitting
    QUEUED = "queued"  # the scheduler holds the job
    STARTING = "starting"  # the job runs (or the process was launched); no server answers yet
    RUNNING = "running"  # the server answers and is routed
    STOPPING = "stopping"
    ENDED = "ended"  # a start failed (or, with the reason, a run ended): the cell says why


# The console's words for each phase (and for a cell with no server at all).
STATE_LABELS = {
    "stopped": "Not running",
    Phase.REQUESTED: "Starting",
    Phase.SUBMITTING: "Starting",
    Phase.QUEUED: "Queued",
    Phase.STARTING: "Starting",
    Phase.RUNNING: "Running",
    Phase.STOPPING: "Stopping",
    Phase.ENDED: "Ended",  # a run that ended (hpchub.endings)
    "failed": "Failed",  # a start that failed
    "unavailable": "Unavailable",
}
# Phases in which a server exists (has a record, counts, can be stopped).
ACTIVE = frozenset(
    {Phase.REQUESTED, Phase.SUBMITTING, Phase.QUEUED, Phase.STARTING, Phase.RUNNING, Phase.STOPPING}
)
# Phases of a start still under way.
STARTING = frozenset({Phase.REQUESTED, Phase.SUBMITTING, Phase.QUEUED, Phase.STARTING})
# Causes of hpchub.endings.CAUSES for a run that never started: its cell says "Failed".
START_FAILURES = frozenset({"start_failed", "startup_script"})


class EndingRecord(Protocol):
    """How a server's last run ended: hpchub.endings.Ending (a leaf imports no other)."""

    cause: str
    details: Mapping[str, Any]
    log_tail: str
    ended: float  # epoch seconds

    @property
    def words(self) -> str: ...


@dataclass(frozen=True)
class JobShape:
    """A batch job as the hub submitted it, from the options it checked: what the extend
    account's forced command finds again in Slurm before it raises the job's time limit
    (config/login-node/hpchub-extend-command). An empty partition, QOS or account: the hub
    asked for none, so Slurm's default. ``gpus`` and ``exclusive`` None: the level's extra
    directives may set them their own way, so they are not compared."""

    nodes: int
    partition: str = ""
    qos: str = ""
    account: str = ""
    gpus: int | None = 0  # per node (--gpus-per-node)
    exclusive: bool | None = False
    requeue: bool = False

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, data: Any) -> JobShape | None:
        """The shape kept in a spawner's state; None where there is none or it is not one,
        or it lacks a field the login node now compares (a server started by an earlier
        hub: Extend asks to restart it)."""
        if not isinstance(data, Mapping) or not {"gpus", "exclusive", "requeue"} <= data.keys():
            return None
        nodes, gpus, exclusive, requeue = (data[k] for k in ("nodes", "gpus", "exclusive", "requeue"))
        names = {key: data.get(key) or "" for key in ("partition", "qos", "account")}
        if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
            return None
        if gpus is not None and (isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0):
            return None
        if not (exclusive is None or isinstance(exclusive, bool)) or not isinstance(requeue, bool):
            return None
        if not all(isinstance(v, str) for v in names.values()):
            return None
        return cls(nodes, **names, gpus=gpus, exclusive=exclusive, requeue=requeue)


@dataclass(frozen=True)
class ServerStatus:
    """What is known about one server, in one typed value."""

    phase: Phase | None = None  # None: no server (never started, or stopped)
    job_id: str = ""  # the scheduler's job, where there is one
    host: str = ""  # login node (SSH), node list (Slurm) or pod address (Spin)
    port: int | None = None
    reason: str = ""  # the scheduler's pending reason
    expected_start: str = ""  # the scheduler's expected start ("2026-11-24 10:00:00")
    ends_at: float | None = None  # when the run must end (walltime, lifetime), epoch seconds
    time_limit: int | None = None  # seconds the run may last in all (a job's limit, extensions included)
    qos: str = ""  # the job's QOS, where the scheduler has one (an extension cap may depend on it)
    job_shape: JobShape | None = None  # a batch job as submitted (Extend checks the job still has it)
    # "hpchub-notebook/<version>" once the server's notebook package asked the hub (the
    # console says where it is missing); empty until then.
    notebook_client: str = ""
    message: str = ""  # progress text while starting; the error of a failed start
    credentials_problem: str = ""  # the user's credentials could not be used (sign in again)
    # How the last run ended (hpchub.endings), while the server does not run: the cell
    # shows it until the user dismisses it or starts the server again.
    ending: EndingRecord | None = None

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE

    @property
    def state(self) -> str:
        """The console's state word: a phase's value, ``stopped`` without a server, ``failed``
        for a start that ended in an error. Starting phases the user need not tell apart
        (requested, submitting) read as ``starting``."""
        if self.phase is None:
            return "stopped"
        if self.phase is Phase.ENDED:
            return "ended" if self.ending is not None else "failed"
        if self.phase in (Phase.REQUESTED, Phase.SUBMITTING):
            return "starting"
        return self.phase.value

    @property
    def label(self) -> str:
        if self.phase is Phase.ENDED and (self.ending is None or self.ending.cause in START_FAILURES):
            return STATE_LABELS["failed"]
        return STATE_LABELS.get(self.phase or "stopped", "Not running")

    def with_ending(self, ending: EndingRecord | None) -> ServerStatus:
        """This status with how the server's last run ended, unless it runs again."""
        if ending is None or self.active:
            return self
        return replace(self, phase=Phase.ENDED, ending=ending)

    def time_left(self, now: float | None = None) -> int | None:
        if self.ends_at is None or self.phase is not Phase.RUNNING:
            return None
        return max(int(self.ends_at - (time.time() if now is None else now)), 0)

    def time_left_text(self, now: float | None = None) -> str:
        seconds = self.time_left(now)
        if seconds is None:
            return ""
        h, rest = divmod(seconds, 3600)
        return f"{h} h {rest // 60:02d} min" if h else f"{rest // 60} min"

    def detail(self) -> str:
        """The line under the cell's state, the one place its sentences are written."""
        if self.phase is Phase.QUEUED and (self.reason or self.expected_start):
            text = f"Pending: {self.reason}." if self.reason else ""
            if self.expected_start:
                text += f"{' ' if text else ''}Expected start: {self.expected_start}."
            return text
        if self.phase is Phase.RUNNING:
            where = f"on {self.host}" if self.host else ""
            left = self.time_left_text()
            return " · ".join(p for p in (where, f"{left} left" if left else "") if p)
        if self.phase is Phase.ENDED and self.ending is not None:
            text = f"Your server {self.ending.words}."
            # A failed start's error: the spawner's while it lives, else the one recorded
            # with the ending (after the page was left or the hub restarted).
            message = self.message or str(self.ending.details.get("message") or "")
            return f"{text} {message}" if message else text
        return self.message

    def event(self) -> dict[str, Any]:
        """The fields a progress event carries for console.js (it draws ``label`` and
        ``detail`` as they are: no sentence is written again in JavaScript)."""
        return {"state": self.state, "label": self.label, "detail": self.detail()}

    def to_json(self) -> dict[str, Any]:
        data = asdict(replace(self, ending=None))
        data["phase"] = self.phase.value if self.phase else None
        if self.ending is not None:
            e = self.ending
            data["ending"] = {
                "cause": e.cause,
                "words": e.words,
                "details": dict(e.details),
                "log_tail": e.log_tail,
                "ended": e.ended,
            }
        data.update(state=self.state, label=self.label, detail=self.detail(), time_left=self.time_left())
        return data


class Reporting(Protocol):
    """What a backend spawner tells about its own run (hpchub's spawners implement it)."""

    def server_status(self) -> ServerStatus: ...


def status_of(spawner: Any) -> ServerStatus:
    """The one ServerStatus of a spawner: the backend's report, placed in JupyterHub's view
    (a stop or spawn under way, ready, a failed start)."""
    report = spawner.server_status() if hasattr(spawner, "server_status") else ServerStatus()
    pending = getattr(spawner, "pending", None)
    if pending == "stop":
        return replace(report, phase=Phase.STOPPING)
    if pending == "spawn":
        phase = report.phase if report.phase in STARTING else Phase.REQUESTED
        return replace(report, phase=phase)
    if getattr(spawner, "ready", False):
        host = report.host
        if not host:
            server = getattr(spawner, "server", None)
            host = getattr(server, "ip", "") or "" if server is not None else ""
        return replace(report, phase=Phase.RUNNING, host=host)
    failed = start_error(spawner)
    if failed is not None:
        return ServerStatus(phase=Phase.ENDED, message=failed, credentials_problem=report.credentials_problem)
    return replace(report, phase=None)


def start_error(spawner: Any) -> str | None:
    """The error of the spawner's last start, if it failed (JupyterHub keeps the failed
    spawn future until the next start)."""
    future = getattr(spawner, "_spawn_future", None)
    if future is None or not future.done() or future.cancelled() or future.exception() is None:
        return None
    return error_text(future.exception())


def error_text(exc: BaseException) -> str:
    """What a scientist reads for a failed start: the message, not "HTTP 403: Forbidden (...)"."""
    text = getattr(exc, "jupyterhub_message", None)
    log_message = getattr(exc, "log_message", None)
    if not text and log_message:
        args = getattr(exc, "args", ())
        text = log_message % args if args else log_message
    return str(text or exc) or type(exc).__name__


async def interrupt_start(spawner: Any) -> bool:
    """Cancel a start under way (a queued job), as JupyterHub's REST DELETE does: its
    ``stop_single_user`` refuses a pending spawn. True when there was one to cancel; the
    spawner's stop then cancels the job or process it launched."""
    future = getattr(spawner, "_spawn_future", None)
    if getattr(spawner, "pending", None) != "spawn" or future is None:
        return False
    future.cancel()
    return True
