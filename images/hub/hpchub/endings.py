"""How servers ended, kept in the hub's own database so the console can say why.

When a server ends without its user stopping it — the job reached its time limit, ran out
of memory, lost its node, was preempted or cancelled outside hpchub, the start-up script
failed, the idle culler or an administrator stopped it, the login node's lifetime watchdog
ended it — the spawner records an :class:`Ending` here: the cause, the scheduler's own
figures (state, exit code, reason, elapsed against the limit, memory used against the
request), the last lines of the job's output and the options it was started with (the
console's Relaunch). The console's cell and the admin view read it for
``console.endedRetentionDays`` (default 7); it survives hub restarts (table
``hpchub_endings``, same engine as JupyterHub's tables: sqlite or PostgreSQL).

A cell shows its server's latest ending until the user dismisses it or starts the server
again (:func:`clear`); the admin view lists every ending of the retention period.

A leaf below the views and the spawners (no SSH, nothing of hpchub imported): both use it.
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    Table,
    Unicode,
    UnicodeText,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine

# The causes and the words a cell says for each (sentence() adds the figures).
CAUSES: dict[str, str] = {
    "time_limit": "reached its time limit",
    "out_of_memory": "ran out of memory",
    "node_failure": "stopped: its node failed",
    "preempted": "was preempted",
    "evicted": "was evicted from its node",  # Kubernetes (Spin): the node ran short
    "cancelled": "was cancelled outside hpchub",
    "idle": "was stopped for being idle",
    "admin": "was stopped by an administrator",
    "lifetime": "reached its maximum lifetime",
    "startup_script": "could not start: the start-up script failed",
    "start_failed": "could not start",
    "exited": "ended: the server exited",
    "user": "was stopped by you",
    "unknown": "ended",
}
# Causes a cell shows (a stop the user asked for is not news to them; the admin view lists it).
SHOWN = frozenset(CAUSES) - {"user"}
# Figures a ``details`` mapping may carry (anything else is dropped), all bounded on input.
DETAIL_KEYS = (
    "state",  # the scheduler's State (TIMEOUT, OUT_OF_MEMORY, ...), a pod's reason (OOMKilled)
    "exit_code",  # as the source writes it: Slurm's "0:9", a process's "127"
    "reason",  # the scheduler's Reason
    "signal",  # a signal name, where one ended the server
    "elapsed_seconds",
    "limit_seconds",
    "max_rss_bytes",
    "requested_memory_bytes",
    "idle_seconds",
    "by",  # who stopped it (an administrator's name, the culler's service name)
    "nodes",  # the job's node list as the scheduler gave it
    "message",  # a failed start's error, as the user saw it (gone once the page is left)
)
MAX_TEXT = 256  # characters of a text figure
# Sizes and durations beyond any machine's (a 64-bit integer for every reader of the JSON).
MAX_FIGURE = 2**63
MAX_MESSAGE = 2000  # characters of ``message``
# How long endings are kept (console.endedRetentionDays' default).
RETENTION_DAYS = 7
MAX_LOG_LINES = 20
MAX_LOG = 4000  # characters of the job's output kept (at most its last 20 lines)

metadata = MetaData()
table = Table(
    "hpchub_endings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", Unicode(255), nullable=False, index=True),
    Column("server", Unicode(255), nullable=False),
    Column("system", Unicode(255), nullable=False),
    Column("level", Unicode(255), nullable=False),
    Column("backend", Unicode(32), nullable=False),
    Column("cause", Unicode(32), nullable=False),
    Column("details", UnicodeText),  # JSON, DETAIL_KEYS only
    Column("log_tail", UnicodeText),
    Column("options", UnicodeText),  # JSON: the start's user_options (Relaunch)
    Column("ended", Float, nullable=False, index=True),
    Column("cleared", Float),  # when the user dismissed it or started the server again
)


def clean_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """Only DETAIL_KEYS; numbers as non-negative ints, texts cut to MAX_TEXT printable characters."""
    out: dict[str, Any] = {}
    for key in DETAIL_KEYS:
        value = details.get(key)
        if value is None or value == "":
            continue
        if key.endswith(("_seconds", "_bytes")):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < MAX_FIGURE:
                continue
            out[key] = int(value)
        else:
            limit = MAX_MESSAGE if key == "message" else MAX_TEXT
            # A message keeps its line breaks (a failed start-up script's output).
            keep = "\n" if key == "message" else ""
            text = "".join(ch for ch in str(value)[:limit] if ch.isprintable() or ch in keep).strip()
            if text:
                out[key] = text
    return out


def since(retention_days: float = RETENTION_DAYS, now: float | None = None) -> float:
    """The oldest ``ended`` (epoch seconds) a view shows and the prune keeps."""
    return (time.time() if now is None else now) - retention_days * 86400


def tail(text: str, lines: int = MAX_LOG_LINES) -> str:
    """The last ``lines`` lines of ``text``, at most MAX_LOG characters."""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])[-MAX_LOG:]


@dataclass
class Ending:
    username: str
    server: str
    system: str
    level: str
    backend: str  # "ssh", "kubernetes", or a batch scheduler's name ("slurm")
    cause: str  # a key of CAUSES
    details: dict[str, Any] = field(default_factory=dict)
    log_tail: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    ended: float = field(default_factory=time.time)
    cleared: float | None = None
    id: int | None = None

    def __post_init__(self) -> None:
        if self.cause not in CAUSES:
            self.cause = "unknown"
        self.details = clean_details(self.details)
        self.log_tail = tail(self.log_tail or "")

    @property
    def shown(self) -> bool:
        return self.cause in SHOWN and self.cleared is None

    @property
    def words(self) -> str:
        return sentence(self.cause, self.details)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "words": self.words}


def hms(seconds: float | int | None) -> str:
    """``1:00:00`` for 3600 (Slurm's spelling of a duration, days as ``D-``)."""
    if seconds is None:
        return ""
    s = int(seconds)
    days, s = divmod(s, 86400)
    text = f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{days}-{text}" if days else text


def size(nbytes: float | int | None) -> str:
    """``3.9 GiB``, ``512 MiB``."""
    if not nbytes:
        return ""
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.0f} MiB"


def sentence(cause: str, details: Mapping[str, Any]) -> str:
    """The cause in words, with its figures: "reached its time limit of 1:00:00"."""
    words = CAUSES.get(cause, CAUSES["unknown"])
    limit = details.get("limit_seconds")
    if cause in ("time_limit", "lifetime") and limit:
        words += f" of {hms(limit)}"
    elif cause == "out_of_memory":
        used, asked = size(details.get("max_rss_bytes")), size(details.get("requested_memory_bytes"))
        if used and asked:
            words += f": {used} used of {asked} requested"
        elif asked:
            words += f" ({asked} requested)"
    elif cause == "idle" and details.get("idle_seconds"):
        words = f"was stopped after {int(details['idle_seconds']) // 60} min idle"
    elif cause == "startup_script" and details.get("exit_code"):
        words = f"could not start: the start-up script exited with {details['exit_code']}"
    elif cause == "exited":
        words += exit_words(str(details.get("exit_code") or ""), str(details.get("signal") or ""))
    return words


def exit_words(exit_code: str, signal: str = "") -> str:
    """ " with status 1", " on signal 9" — Slurm's ``status:signal`` read as such."""
    status, _, sig = exit_code.partition(":")
    sig = signal or (sig if sig not in ("", "0") else "")
    if sig:
        return f" on signal {sig}"
    return f" with status {status}" if status else ""


# The engines whose table exists: weak, so a new engine at a freed one's address (id) is
# not taken for it.
_tables: weakref.WeakSet[Engine] = weakref.WeakSet()


def ensure_table(engine: Engine) -> None:
    if engine not in _tables:
        metadata.create_all(engine, checkfirst=True)
        _tables.add(engine)


def record(engine: Engine, ending: Ending) -> int:
    """Store an ending; its id. Clears the server's earlier endings (one cell, one story)."""
    ensure_table(engine)
    values = asdict(ending)
    values.pop("id")
    values["details"] = json.dumps(ending.details)
    values["options"] = json.dumps(ending.options, default=str)
    with engine.begin() as conn:
        conn.execute(
            update(table)
            .where(
                table.c.username == ending.username,
                table.c.server == ending.server,
                table.c.cleared.is_(None),
            )
            .values(cleared=ending.ended)
        )
        ending.id = int(conn.execute(insert(table).values(**values)).inserted_primary_key[0])
    return ending.id


def _row(r: Any) -> Ending:
    m = dict(r._mapping)
    m["details"] = json.loads(m.get("details") or "{}")
    m["options"] = json.loads(m.get("options") or "{}")
    m["log_tail"] = m.get("log_tail") or ""
    return Ending(**m)


def last(engine: Engine, username: str, server: str, since: float) -> Ending | None:
    """The server's latest ending after ``since`` (epoch seconds) not yet cleared."""
    ensure_table(engine)
    q = (
        select(table)
        .where(
            table.c.username == username,
            table.c.server == server,
            table.c.ended >= since,
            table.c.cleared.is_(None),
        )
        .order_by(table.c.ended.desc(), table.c.id.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(q).first()
    return _row(row) if row is not None else None


def for_user(engine: Engine, username: str, since: float) -> dict[str, Ending]:
    """Each of the user's servers' shown ending (server name -> Ending): one query per page."""
    ensure_table(engine)
    q = (
        select(table)
        .where(table.c.username == username, table.c.ended >= since, table.c.cleared.is_(None))
        .order_by(table.c.ended.asc(), table.c.id.asc())
    )
    with engine.connect() as conn:
        return {e.server: e for e in map(_row, conn.execute(q))}


def clear(engine: Engine, username: str, server: str) -> int:
    """The user dismissed the cell's ending or started the server again; how many rows."""
    ensure_table(engine)
    with engine.begin() as conn:
        return (
            conn.execute(
                update(table)
                .where(table.c.username == username, table.c.server == server, table.c.cleared.is_(None))
                .values(cleared=time.time())
            ).rowcount
            or 0
        )


def recent(engine: Engine, since: float, limit: int = 500) -> list[Ending]:
    """Endings after ``since``, newest first (the admin view)."""
    ensure_table(engine)
    q = select(table).where(table.c.ended >= since).order_by(table.c.ended.desc()).limit(limit)
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(q)]


def prune(engine: Engine, before: float) -> int:
    """Forget endings older than ``before``; how many."""
    ensure_table(engine)
    with engine.begin() as conn:
        return conn.execute(delete(table).where(table.c.ended < before)).rowcount or 0
