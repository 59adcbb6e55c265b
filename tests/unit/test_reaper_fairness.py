"""One user's pending cancellations cannot delay another user's (hostile-user review,
finding 3): her ~/.bashrc sleeps (or exits 1) for the stop script and she cycles starts
and stops, each unconfirmed stop a row of the reaper's. Her rows are tried one at a time
per login host, the other users' alongside; none of hers is ever dropped."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from hpchub import reaper
from hpchub.reaper import Reaper
from hpchub.reaper_table import Cancellation, insert_row, pending

HOST = "login1:22"


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return create_engine(f"sqlite:///{tmp_path / 'hub.sqlite'}")


def add(engine: Engine, user: str, n: int, host: str = HOST) -> None:
    for i in range(n):
        row = Cancellation(
            user, f"s{i}", "mini", "ssh", host, f"{i:016x}", "stop not confirmed", pid=1000 + i
        )
        insert_row(engine, row, next_try=0.0)


def left(engine: Engine, user: str) -> list[Cancellation]:
    return pending(engine, user)


class Remote:
    """The login node as the reaper's act sees it: mallory's stop script hangs in her
    shell, everyone else's stop is confirmed at once."""

    def __init__(self) -> None:
        self.running: dict[str, int] = {}
        self.most: dict[str, int] = {}

    async def __call__(self, row: Cancellation) -> bool:
        self.running[row.username] = self.running.get(row.username, 0) + 1
        self.most[row.username] = max(self.most.get(row.username, 0), self.running[row.username])
        try:
            if row.username == "mallory":
                await asyncio.sleep(3600)
            await asyncio.sleep(0.01)
            return True
        finally:
            self.running[row.username] -= 1


async def wait_until(condition, seconds: float) -> bool:  # noqa: ANN001
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not condition():
        if loop.time() > end:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_one_users_hanging_cancels_do_not_delay_the_others(engine: Engine) -> None:
    add(engine, "mallory", 10)  # the oldest rows: hers
    add(engine, "bob", 3)
    add(engine, "carol", 2)
    remote = Remote()
    r = Reaper(engine, remote)
    passing = asyncio.ensure_future(r.run_once())
    try:
        others_done = await wait_until(lambda: not left(engine, "bob") and not left(engine, "carol"), 2)
        assert others_done, (
            f"after 2 s: bob {len(left(engine, 'bob'))}, carol {len(left(engine, 'carol'))} rows pending"
        )
        assert len(left(engine, "mallory")) == 10  # none of hers dropped
        assert remote.most["mallory"] == 1  # one of hers at a time on this host
    finally:
        passing.cancel()
    await r.close()
    assert len(left(engine, "mallory")) == 10


async def test_a_row_that_hangs_is_given_up_on_for_this_attempt_and_kept(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reaper, "ROW_TIMEOUT", 0.2)
    add(engine, "mallory", 2)
    r = Reaper(engine, Remote())
    assert await r.run_once() == 0
    rows = left(engine, "mallory")
    assert len(rows) == 2 and all(row.attempts == 1 and "no answer" in row.last_error for row in rows)
    assert all(row.next_try > 0 for row in rows)


async def test_new_rows_of_others_are_taken_while_her_rows_still_run(engine: Engine) -> None:
    add(engine, "mallory", 5)
    remote = Remote()
    r = Reaper(engine, remote)
    r.start_pass()
    add(engine, "bob", 2)  # a stop of bob's not confirmed while hers hang
    r.start_pass()  # the next pass (the loop's, 5 s later or woken by the new row)
    assert await wait_until(lambda: not left(engine, "bob"), 2), "bob's new rows waited behind hers"
    assert remote.most["mallory"] == 1
    await r.close()
    assert len(left(engine, "mallory")) == 5
