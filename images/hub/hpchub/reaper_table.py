"""The reaper's table: runs whose stop could not be confirmed, in the hub's own database
(``hpchub_reaper``, same engine as JupyterHub's tables; sqlite or PostgreSQL). The reaper
(hpchub/reaper.py) retries them; the console and the uninstall hook read them. No SSH here,
so views can read what is pending without depending on the layer that stops it.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, field

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    Table,
    Unicode,
    UnicodeText,
    insert,
    select,
)
from sqlalchemy.engine import Engine

metadata = MetaData()
table = Table(
    "hpchub_reaper",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", Unicode(255), nullable=False),
    Column("server", Unicode(255), nullable=False),
    Column("system", Unicode(255), nullable=False),
    Column("backend", Unicode(16), nullable=False),
    Column("host", Unicode(255), nullable=False),
    Column("run_id", Unicode(64), nullable=False),
    Column("job_id", Unicode(64)),
    Column("pid", Integer),
    Column("reason", UnicodeText),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created", Float, nullable=False),
    Column("next_try", Float, nullable=False),
    Column("last_error", UnicodeText),
)


@dataclass
class Cancellation:
    """One run to be stopped: where it is and how to name it on the HPC side."""

    username: str
    server: str
    system: str
    backend: str  # "ssh", or a batch scheduler's name ("slurm")
    host: str  # login host label host:port
    run_id: str
    reason: str = ""
    job_id: str | None = None
    pid: int | None = None
    id: int | None = None
    attempts: int = 0
    created: float = field(default_factory=time.time)
    next_try: float = 0.0
    last_error: str = ""

    @property
    def what(self) -> str:
        if self.backend != "ssh":
            return f"{self.backend.capitalize()} job {self.job_id or 'hpchub-' + self.run_id}"
        return f"process {self.pid or '(run ' + self.run_id + ')'} on {self.host}"


# The engines whose table exists: weak, so a new engine at a freed one's address (id) is
# not taken for it.
_tables_made: weakref.WeakSet[Engine] = weakref.WeakSet()


def ensure_table(engine: Engine) -> None:
    if engine not in _tables_made:
        metadata.create_all(engine, checkfirst=True)
        _tables_made.add(engine)


def pending(engine: Engine, username: str | None = None) -> list[Cancellation]:
    """Rows still waiting (all, or one user's), oldest first."""
    ensure_table(engine)
    q = select(table).order_by(table.c.id)
    if username is not None:
        q = q.where(table.c.username == username)
    with engine.connect() as conn:
        return [Cancellation(**{k: v for k, v in r._mapping.items()}) for r in conn.execute(q)]


def insert_row(engine: Engine, row: Cancellation, next_try: float) -> int:
    """Commit a pending cancellation (hpchub.reaper.add: and wake the loop)."""
    ensure_table(engine)
    now = time.time()
    values = {
        "username": row.username,
        "server": row.server,
        "system": row.system,
        "backend": row.backend,
        "host": row.host,
        "run_id": row.run_id,
        "job_id": row.job_id,
        "pid": row.pid,
        "reason": row.reason,
        "attempts": 0,
        "created": row.created or now,
        "next_try": next_try,
        "last_error": "",
    }
    with engine.begin() as conn:
        row.id = int(conn.execute(insert(table).values(**values)).inserted_primary_key[0])
    return row.id
