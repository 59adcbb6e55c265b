"""A login-node server's watch on the status board follows its current PID: a user's find
script that prints a new ``HPCHUB-PID`` every second (and never a port) while the hub
waits for the server (a start whose launcher said nothing, an adoption after a restart)
leaves one watch, not one per line printed."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

from hpchub.spawners.loginnode import SSHSpawner
from hpchub.sshpool import SSHTarget
from hpchub.status import StatusBoard
from tests.harness.values import dispatcher, grid_values

HOST = "login01:22"
VALUES = grid_values(
    {"pm": {"displayName": "Perlmutter", "ssh": {"hosts": [HOST]}}}, cells={"pm-shared": "ssh"}
)


class NoPool:
    async def run(self, *a, **kw):  # noqa: ANN002, ANN003, ANN201
        raise AssertionError("no remote command in this test")


@pytest.fixture
def board(monkeypatch: pytest.MonkeyPatch) -> StatusBoard:
    board = StatusBoard("Perlmutter", SSHTarget.from_values("Perlmutter", {"hosts": [HOST]}), NoPool())
    monkeypatch.setattr(SSHSpawner, "status_board", property(lambda self: board))
    return board


def mallorys_server() -> SSHSpawner:
    spawner = dispatcher(VALUES, "pm-shared", {"ssh_ca": {"enabled": False}})
    assert type(spawner) is SSHSpawner
    spawner.user = SimpleNamespace(name="mallory")
    spawner.orm_spawner = None  # no hub database here
    spawner.run_id = "ab12cd34ab12cd34"
    spawner.remote_host = HOST
    return spawner


async def test_a_find_script_printing_a_new_pid_every_second_leaves_one_watch(
    board: StatusBoard, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawner = mallorys_server()
    printed = iter(range(1000, 100_000))
    most = 0

    async def find() -> dict[str, str]:
        nonlocal most
        most = max(most, board.watched[1])
        return {"PID": str(next(printed))}  # a new PID, never a PORT

    spawner.find = find
    sleep = asyncio.sleep
    monkeypatch.setattr(asyncio, "sleep", lambda s: sleep(0))  # her 120 loops, at once
    loops = 0
    real_time = time.time

    def clock() -> float:
        nonlocal loops
        loops += 1
        return real_time() + (200 if loops > 120 else 0)

    monkeypatch.setattr(time, "time", clock)
    with pytest.raises(RuntimeError, match="did not start"):
        await spawner.wait_for_server(real_time() + 100)
    assert most <= 1 and board.watched == (0, 1), (most, board.watched)
    # The one watched is her current claim, with no start time from an earlier PID.
    assert list(board._procs) == [(HOST, spawner.pid, "mallory")]
    assert spawner.pid_start is None
    spawner.forget_run()
    assert board.watched == (0, 0)


async def test_the_watch_moves_with_a_new_pid_and_goes_with_the_run(board: StatusBoard) -> None:
    spawner = mallorys_server()
    spawner.load_state({"run_id": spawner.run_id, "remote_host": HOST, "pid": 4242, "phase": "running"})
    assert list(board._procs) == [(HOST, 4242, "mallory")]
    spawner.pid = 4343  # however the PID changed, the next watch follows it
    spawner.watch()
    assert list(board._procs) == [(HOST, 4343, "mallory")]
    spawner.unwatch()
    assert board.watched == (0, 0)
