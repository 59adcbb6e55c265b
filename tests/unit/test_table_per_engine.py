"""The endings and reaper tables are made once per engine, and a new engine is never taken
for an earlier one that was freed: CPython reuses a freed object's address, so a set of
``id(engine)`` said "made" for a new in-memory database that had no table ("no such
table", seen once in a full unit run)."""

from __future__ import annotations

import gc

from sqlalchemy import create_engine

from hpchub import endings, reaper_table
from hpchub.endings import Ending
from hpchub.reaper_table import Cancellation


def test_every_new_engine_gets_its_tables() -> None:
    # Until a freed engine's address has been given to a new one, and a few engines after
    # (how soon CPython reuses an address depends on what the run allocated before).
    ids: set[int] = set()
    reused = 0
    for i in range(400):
        engine = create_engine("sqlite://")
        if id(engine) in ids:
            reused += 1
        ids.add(id(engine))
        endings.record(engine, Ending("hpcalice", f"s{i}", "mini", "shared", "ssh", "exited"))
        assert [e.server for e in endings.recent(engine, 0)] == [f"s{i}"]
        row = Cancellation(
            username="hpcalice", server=f"s{i}", system="mini", host="login1", backend="ssh", run_id="r" * 16
        )
        reaper_table.insert_row(engine, row, 0.0)
        assert len(reaper_table.pending(engine)) == 1
        engine.dispose()
        del engine
        gc.collect()
        if reused >= 5:
            break
    # The case this is about happened: an address was reused (else the test proves nothing).
    assert reused, f"no engine address was reused in {len(ids)} engines"
