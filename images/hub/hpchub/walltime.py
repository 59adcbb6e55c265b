"""The walltime guard's rules, one place for every view and the spawner: what Extend
offers a running server (the cap of its level or QOS, the steps that still fit), whether a
request stays within it, and the console's warning before the end.

Pure functions of the grid cell (values) and the server's one state value
(hpchub.serverstate.ServerStatus): the status API and the console draw the offer, the
batch spawner checks a request against the same offer before anything reaches a login
node (docs/design/architecture.md). The job an extension applies to is never part of a
request: the spawner uses the job id of its own state, and the login node extends it only
if Slurm has it in the shape the hub submitted (``ServerStatus.job_shape``: name,
partition, QOS, account, nodes). So the cap, computed from the QOS the server asked for,
is the cap of the job's real QOS: a job in another is refused there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .grid import Cell
from .serverstate import Phase, ServerStatus
from .settings import WalltimeSettings


class ExtendRefused(Exception):
    """An extension the hub will not make (or could not): ``status`` is the HTTP status the
    API answers, ``message`` the sentence the user reads (names the cap where it is one)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def clock(seconds: int) -> str:
    """A duration as Slurm and the issue write a time limit: ``1:30:00``, ``1-02:00:00``."""
    days, rest = divmod(int(seconds), 86400)
    h, rest = divmod(rest, 3600)
    text = f"{h}:{rest // 60:02d}:{rest % 60:02d}"
    return f"{days}-{h:02d}:{rest // 60:02d}:{rest % 60:02d}" if days else text


def minutes_text(seconds: int) -> str:
    """``30 min``, ``1 h``, ``1 h 30 min``: a step or an amount of time in words."""
    h, m = divmod(int(seconds) // 60, 60)
    if not h:
        return f"{m} min"
    return f"{h} h {m:02d} min" if m else f"{h} h"


@dataclass(frozen=True)
class ExtendOffer:
    """What Extend offers a server now. ``allowed`` False: ``reason`` says why (shown in
    Lab's tooltip and on the console); the cap is named where there is one."""

    allowed: bool
    max_ends_at: float | None
    steps_seconds: tuple[int, ...]
    reason: str
    cap_seconds: int | None = None
    cap_source: str = ""  # "the Exclusive node level on Mini HPC", "QOS debug", "Mini HPC"

    def to_json(self) -> dict[str, Any]:
        """The ``extend`` object of the status JSON (hpchub_notebook/status.py)."""
        return {
            "allowed": self.allowed,
            "max_ends_at": self.max_ends_at,
            "steps_seconds": list(self.steps_seconds),
            "reason": self.reason,
        }


def cap_for(cell: Cell, qos: str) -> tuple[int | None, str]:
    """(the cap on the job's whole time limit, whose cap it is): the level's
    (``levels.<l>.extend.maxTime``) else the system's (``slurm.extend.maxTime``), lowered
    by the job's QOS's own (``slurm.extend.qos.<q>``). 0: the level is not extendable."""
    ext = cell.system.settings.extend
    system = cell.system.display_name
    if cell.extend_max_seconds == 0:
        return 0, f"the {cell.level.title} level on {system}"
    if cell.extend_max_seconds:
        cap, source = cell.extend_max_seconds, f"the {cell.level.title} level on {system}"
    else:
        cap, source = ext.max_seconds, system
    qos_cap = ext.qos_max_seconds.get(qos) if qos else None
    if qos_cap is not None and (cap is None or qos_cap < cap):
        cap, source = qos_cap, f"QOS {qos} on {system}"
    return cap, source


def extend_offer(cell: Cell | None, status: ServerStatus) -> ExtendOffer | None:
    """The offer for a server of ``cell`` in ``status``; None where the system does not
    extend at all (not a batch level, or ``slurm.extend.enabled`` off)."""
    if cell is None or not cell.is_batch or not cell.system.settings.extend.enabled:
        return None
    ext = cell.system.settings.extend
    cap, source = cap_for(cell, status.qos)

    def refused(reason: str, max_ends_at: float | None = None) -> ExtendOffer:
        return ExtendOffer(False, max_ends_at, (), reason, cap, source)

    if not cap:
        return refused(f"Servers of {source} cannot be extended.")
    if status.phase is not Phase.RUNNING:
        return refused("Only a running server can be extended.")
    if status.ends_at is None or not status.time_limit:
        return refused("The time limit of this server's job is not known, so it cannot be extended.")
    if status.job_shape is None:
        # Started by a hub that did not record the job's options: the login node could not
        # check the job is the one the hub submitted (config/login-node/hpchub-extend-command).
        return refused(
            "This server was started before the hub recorded its job's options, so its job cannot be "
            "checked and extended; restart the server to extend it."
        )
    max_ends_at = status.ends_at - status.time_limit + cap
    room = (cap - status.time_limit) // 60 * 60  # Slurm's limits are whole minutes
    if room < 60:
        return refused(
            f"This server already has the longest time {source} allows ({clock(cap)}).", max_ends_at
        )
    steps = tuple(s for s in ext.steps_seconds if s <= room) or (room,)
    return ExtendOffer(True, max_ends_at, steps, "", cap, source)


def check_extend(offer: ExtendOffer | None, status: ServerStatus, seconds: Any) -> int:
    """The job's new time limit (seconds, whole minutes) for a request to add ``seconds``;
    ExtendRefused with the reason, naming the cap, for anything the offer does not cover."""
    if offer is None:
        raise ExtendRefused(400, "This server cannot be extended.")
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 60 or seconds % 60:
        raise ExtendRefused(400, "seconds: expected whole minutes in seconds, at least 60 (e.g. 1800)")
    if not offer.allowed:
        # The cap reached, or not running: the offer's reason already names it.
        raise ExtendRefused(409 if offer.cap_seconds else 403, offer.reason)
    assert offer.cap_seconds and status.time_limit
    new_limit = status.time_limit + seconds
    if new_limit > offer.cap_seconds:
        raise ExtendRefused(
            403,
            f"Not extended by {minutes_text(seconds)}: the job would run {clock(new_limit)} in all, "
            f"past its cap of {clock(offer.cap_seconds)} ({offer.cap_source}).",
        )
    return new_limit


def warnings_passed(status: ServerStatus, walltime: WalltimeSettings, now: float | None = None) -> int:
    """How many of the warning times a running server has passed (0: none yet)."""
    left = status.time_left(now)
    if left is None:
        return 0
    return sum(1 for w in walltime.warnings_seconds if left <= w)


def time_warning(status: ServerStatus, walltime: WalltimeSettings, now: float | None = None) -> str:
    """The console's warning for a running server past its first warning time, else ''."""
    if not warnings_passed(status, walltime, now):
        return ""
    return f"Ends in {status.time_left_text(now)}: save your work."
