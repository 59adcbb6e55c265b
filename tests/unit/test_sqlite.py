"""hub.db.sqlite: the hub's sqlite file in write-ahead-log mode (issue 10: a commit no
longer holds the hub's one event loop for a journal create/sync/delete)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy
from jupyterhub.app import JupyterHub

from hpchub import sqlite

from .test_config import configured


def _mode(path: Path) -> tuple[str, int]:
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            journal = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            sync = conn.exec_driver_sql("PRAGMA synchronous").scalar()
    finally:
        engine.dispose()
    return str(journal), int(sync)


@pytest.fixture(autouse=True)
def _restore():
    yield
    sqlite.configure("wal", "full")  # what every hub gets by default


def test_every_sqlite_engine_gets_the_configured_journal(tmp_path: Path) -> None:
    sqlite.configure("delete", "full")
    assert _mode(tmp_path / "a.sqlite") == ("delete", 2)
    sqlite.configure("wal", "full")
    assert _mode(tmp_path / "b.sqlite") == ("wal", 2)  # FULL: each commit synced
    sqlite.configure("WAL", "normal")
    assert _mode(tmp_path / "c.sqlite") == ("wal", 1)


def test_the_loader_configures_the_chart_values(tmp_path: Path) -> None:
    JupyterHub(config=configured("values-minimal.yaml"))
    assert _mode(tmp_path / "default.sqlite") == ("wal", 2)
    JupyterHub(config=configured("values-minimal.yaml", ["hub.db.sqlite.journalMode=delete"]))
    assert _mode(tmp_path / "nfs.sqlite") == ("delete", 2)


@pytest.mark.parametrize(("mode", "sync"), [("truncate", "full"), ("wal", "off")])
def test_other_settings_are_refused_naming_the_key(mode: str, sync: str) -> None:
    with pytest.raises(ValueError, match=r"hub\.db\.sqlite\.(journalMode|synchronous)"):
        sqlite.configure(mode, sync)


def test_a_killed_hubs_log_is_folded_into_the_file_before_anything_copies_it(tmp_path: Path) -> None:
    """JupyterHub's backup before a schema upgrade copies the main file only: a WAL left
    by a killed hub must be in it first, or the backup misses the last commits."""
    live = tmp_path / "live"
    live.mkdir()
    db = live / "jupyterhub.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute("PRAGMA wal_autocheckpoint=0")  # everything stays in the log, as mid-run
    conn.execute("CREATE TABLE servers (name TEXT)")
    conn.execute("INSERT INTO servers VALUES ('alice-perlmutter-shared')")
    conn.commit()
    # The hub is killed here: its files as they are on the volume.
    killed = tmp_path / "killed"
    killed.mkdir()
    for f in live.iterdir():
        shutil.copy(f, killed / f.name)
    conn.close()
    main_only = tmp_path / "main-only.sqlite"
    shutil.copy(killed / "jupyterhub.sqlite", main_only)
    with pytest.raises(sqlite3.OperationalError):  # the commit is only in the log
        sqlite3.connect(main_only).execute("SELECT name FROM servers").fetchall()

    sqlite.checkpoint(killed / "jupyterhub.sqlite")
    assert (
        not (killed / "jupyterhub.sqlite-wal").exists()
        or (killed / "jupyterhub.sqlite-wal").stat().st_size == 0
    )
    backup = tmp_path / "backup.sqlite"
    shutil.copy(killed / "jupyterhub.sqlite", backup)
    rows = sqlite3.connect(backup).execute("SELECT name FROM servers").fetchall()
    assert rows == [("alice-perlmutter-shared",)]
