"""The ended cell: how a server's last run ended, in the terms the console and the admin view
show it.

The record is hpchub.endings' (the spawners write it); the cell's state and its sentence are
the server's one ServerStatus (hpchub.serverstate: ``with_ending``, ``detail``). Here is what
a cell shows beside that sentence — the scheduler's State, ExitCode and Reason, the time it
ran against its limit, the memory it used against its request, when it ended, the last lines
of its output — and which ending a cell shows (the user's own, not cleared, within
``console.endedRetentionDays``).

The output and every figure came from the user's job: the templates draw them as text
(autoescaped, never ``| safe``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from ..endings import Ending, for_user, hms, last, size


def fmt_age(seconds: float | None) -> str:
    """An age for people: "45 s", "12 min", "3 h 05 min", "2 d 4 h"."""
    if seconds is None:
        return ""
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def ago_text(seconds: float) -> str:
    return "just now" if seconds < 60 else f"{fmt_age(seconds)} ago"


@dataclass(frozen=True)
class EndedView:
    """One ending's figures as a cell (or the admin view's list) shows them."""

    cause: str  # a key of hpchub.endings.CAUSES
    words: str  # the cause in words with its figures: "reached its time limit of 1:00:00"
    scheduler: tuple[tuple[str, str], ...]  # (("State", "TIMEOUT"), ("ExitCode", "0:15"), ...)
    elapsed: str  # "1:00:02 of 1:00:00"
    memory: str  # "3.9 GiB used of 4.0 GiB requested"
    signal: str
    by: str  # who stopped it (an administrator, the idle culler)
    nodes: str  # the job's nodes as the scheduler gave them ("mini01")
    when: str  # "2026-12-05 10:02 UTC"
    when_iso: str  # for <time datetime=...>
    ago: str  # "12 min ago"
    log_tail: str  # the last 20 lines of the job's output

    @property
    def state_exit(self) -> str:
        """ "TIMEOUT 0:15": State and ExitCode for the admin view's column."""
        facts = dict(self.scheduler)
        return " ".join(v for v in (facts.get("State", ""), facts.get("ExitCode", "")) if v)

    @property
    def log_summary(self) -> str:
        n = len(self.log_tail.splitlines())
        return "Last line of output" if n == 1 else f"Last {n} lines of output"

    @property
    def reason(self) -> str:
        return dict(self.scheduler).get("Reason", "")


def elapsed_text(details: Mapping[str, Any]) -> str:
    elapsed, limit = details.get("elapsed_seconds"), details.get("limit_seconds")
    if elapsed is not None and limit:
        return f"{hms(elapsed)} of {hms(limit)}"
    if elapsed is not None:
        return hms(elapsed)
    return f"limit {hms(limit)}" if limit else ""


def memory_text(details: Mapping[str, Any]) -> str:
    used, asked = size(details.get("max_rss_bytes")), size(details.get("requested_memory_bytes"))
    if used and asked:
        return f"{used} used of {asked} requested"
    return f"{used} used" if used else (f"{asked} requested" if asked else "")


def ended_view(ending: Ending, now: float | None = None) -> EndedView:
    d = ending.details
    scheduler = tuple(
        (label, str(d[key]))
        for key, label in (("state", "State"), ("exit_code", "ExitCode"), ("reason", "Reason"))
        if d.get(key) not in (None, "")
    )
    now = time.time() if now is None else now
    return EndedView(
        cause=ending.cause,
        words=ending.words,
        scheduler=scheduler,
        elapsed=elapsed_text(d),
        memory=memory_text(d),
        signal=str(d.get("signal") or ""),
        by=str(d.get("by") or ""),
        nodes=str(d.get("nodes") or ""),
        when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ending.ended)),
        when_iso=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ending.ended)),
        ago=ago_text(now - ending.ended),
        log_tail=ending.log_tail,
    )


def shown_endings(
    engine: Engine, username: str, retention_seconds: int, now: float | None = None
) -> dict[str, Ending]:
    """The user's servers' endings a cell shows (server name -> Ending): one query."""
    since = (time.time() if now is None else now) - retention_seconds
    return {name: e for name, e in for_user(engine, username, since).items() if e.shown}


def shown_ending(
    engine: Engine, username: str, server: str, retention_seconds: int, now: float | None = None
) -> Ending | None:
    """The ending ``username``'s cell ``server`` shows, if any (Relaunch, Edit options)."""
    since = (time.time() if now is None else now) - retention_seconds
    ending = last(engine, username, server, since)
    return ending if ending is not None and ending.shown else None
