"""The hub's sqlite file in write-ahead-log mode.

JupyterHub runs its database calls on the one event loop that also serves every page, and
commits often: each notebook's activity report, each token use (every 30 s per user), every
spawner state change. In sqlite's default rollback-journal mode a commit creates, syncs and
deletes a journal file and syncs the database: ~24 ms per commit on the 2-core bench
machine (p95 47 ms), during which the loop serves nothing. With 1,000 notebooks reporting
activity that is several commits a second, and a page request queues behind each one.

In WAL mode a commit appends to one file and syncs it once (~2 ms there). With
``synchronous=FULL`` (the default here) each commit is still on disk before it returns, so
a hub or node crash loses nothing that was committed (hpchub's orphan rules rely on that).

- Set on every sqlite connection the hub opens (a SQLAlchemy ``connect`` listener on all
  engines: JupyterHub makes its engine itself). Other databases are left alone.
- The mode is kept in the file; the ``-wal`` and ``-shm`` files beside it are part of the
  database. :func:`checkpoint` folds a WAL left by a killed hub into the main file before
  JupyterHub starts, so the copy it makes before a schema upgrade is complete.
- WAL needs the file on a local (block) volume, which ``hub.db.pvc`` is with the default
  ReadWriteOnce claim; on a network filesystem (NFS) set ``hub.db.sqlite.journalMode:
  delete``.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

log = logging.getLogger("hpchub.sqlite")

JOURNAL_MODES = ("wal", "delete")
SYNCHRONOUS = ("full", "normal")

_settings: dict[str, str] = {}


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection) or not _settings:
        return
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA journal_mode={_settings['journal_mode']}")
        cursor.execute(f"PRAGMA synchronous={_settings['synchronous']}")
    finally:
        cursor.close()


def configure(journal_mode: str = "wal", synchronous: str = "full") -> None:
    """Apply these pragmas to every sqlite connection opened from now on (idempotent)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    journal_mode, synchronous = journal_mode.lower(), synchronous.lower()
    if journal_mode not in JOURNAL_MODES:
        raise ValueError(f"hub.db.sqlite.journalMode: {journal_mode!r} is not one of {JOURNAL_MODES}")
    if synchronous not in SYNCHRONOUS:
        raise ValueError(f"hub.db.sqlite.synchronous: {synchronous!r} is not one of {SYNCHRONOUS}")
    _settings.update(journal_mode=journal_mode, synchronous=synchronous)
    if not event.contains(Engine, "connect", _on_connect):
        event.listen(Engine, "connect", _on_connect)


def checkpoint(path: str | Path) -> None:
    """Fold a WAL left next to ``path`` (a hub that was killed) into the database file.

    Closing the last connection of a WAL database checkpoints it and removes the WAL; a
    killed hub leaves it, and JupyterHub's pre-upgrade backup copies the main file only."""
    path = Path(path)
    if not Path(f"{path}-wal").exists():
        return
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    log.info("Checkpointed the write-ahead log of %s", path)
