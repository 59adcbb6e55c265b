"""hpchub.endings: the record of how servers ended (sqlite in memory; PostgreSQL shares the SQL)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from hpchub import endings
from hpchub.endings import Ending


@pytest.fixture
def engine() -> Engine:
    return create_engine("sqlite://")


def ending(cause: str = "time_limit", **kw: object) -> Ending:
    fields: dict = dict(
        username="hpcalice", server="mini-shared", system="mini", level="shared", backend="slurm", cause=cause
    )
    fields.update(kw)
    return Ending(**fields)


@pytest.mark.parametrize(
    ("cause", "details", "words"),
    [
        ("time_limit", {"limit_seconds": 3600}, "reached its time limit of 1:00:00"),
        ("time_limit", {"limit_seconds": 90061}, "reached its time limit of 1-1:01:01"),
        (
            "out_of_memory",
            {"max_rss_bytes": int(3.9 * 2**30), "requested_memory_bytes": 4 * 2**30},
            "ran out of memory: 3.9 GiB used of 4.0 GiB requested",
        ),
        ("out_of_memory", {"requested_memory_bytes": 512 * 2**20}, "ran out of memory (512 MiB requested)"),
        ("idle", {"idle_seconds": 3600}, "was stopped after 60 min idle"),
        ("startup_script", {"exit_code": "127"}, "could not start: the start-up script exited with 127"),
        ("node_failure", {}, "stopped: its node failed"),
        ("exited", {"exit_code": "1:0"}, "ended: the server exited with status 1"),
        ("exited", {"exit_code": "0:9"}, "ended: the server exited on signal 9"),
        ("exited", {"signal": "15"}, "ended: the server exited on signal 15"),
        ("exited", {"exit_code": "0"}, "ended: the server exited with status 0"),
        ("lifetime", {"limit_seconds": 30}, "reached its maximum lifetime of 0:00:30"),
        ("evicted", {}, "was evicted from its node"),
        ("no such cause", {}, "ended"),
    ],
)
def test_sentence_says_the_cause_with_its_figures(cause: str, details: dict, words: str) -> None:
    assert ending(cause, details=details).words == words


def test_details_keep_known_bounded_figures_only() -> None:
    e = ending(
        details={"state": "TIMEOUT\x1b[31m" + "x" * 1000, "limit_seconds": -5, "evil": "y", "exit_code": 0}
    )
    assert set(e.details) == {"state", "exit_code"}
    assert e.details["state"].startswith("TIMEOUT[31m") and len(e.details["state"]) <= endings.MAX_TEXT
    assert e.details["exit_code"] == "0"
    huge = ending(details={"max_rss_bytes": 10**130, "elapsed_seconds": 2**63, "limit_seconds": 2**63 - 1})
    assert huge.details == {"limit_seconds": 2**63 - 1}


def test_log_tail_keeps_the_last_20_lines() -> None:
    e = ending(log_tail="".join(f"line {i}\n" for i in range(100)))
    assert e.log_tail.splitlines() == [f"line {i}" for i in range(80, 100)]
    assert len(ending(log_tail="x" * 100_000).log_tail) == endings.MAX_LOG


def test_a_server_shows_its_latest_ending_until_cleared(engine: Engine) -> None:
    first = endings.record(engine, ending("cancelled", ended=time.time() - 10))
    endings.record(engine, ending("time_limit", details={"limit_seconds": 60}, options={"time": "0:01:00"}))
    endings.record(engine, ending("idle", username="hpcbob"))
    got = endings.last(engine, "hpcalice", "mini-shared", 0)
    assert got is not None and got.cause == "time_limit" and got.options == {"time": "0:01:00"}
    assert got.id != first
    # Recording the newer one cleared the older: the admin view still lists both.
    assert [e.cause for e in endings.recent(engine, 0)] == ["idle", "time_limit", "cancelled"]
    assert set(endings.for_user(engine, "hpcalice", 0)) == {"mini-shared"}
    assert endings.clear(engine, "hpcalice", "mini-shared") == 1
    assert endings.last(engine, "hpcalice", "mini-shared", 0) is None
    assert endings.last(engine, "hpcbob", "mini-shared", 0) is not None  # another user's untouched


def test_retention(engine: Engine) -> None:
    endings.record(engine, ending(ended=time.time() - 8 * 86400))
    endings.record(engine, ending(server="mini-exclusive"))
    assert endings.last(engine, "hpcalice", "mini-shared", time.time() - 7 * 86400) is None
    assert endings.prune(engine, time.time() - 7 * 86400) == 1
    assert [e.server for e in endings.recent(engine, 0)] == ["mini-exclusive"]


def test_a_stop_by_the_user_is_recorded_but_not_shown(engine: Engine) -> None:
    endings.record(engine, ending("user"))
    got = endings.last(engine, "hpcalice", "mini-shared", 0)
    assert got is not None and not got.shown and got.words == "was stopped by you"


def test_a_failed_starts_message_keeps_its_lines_and_is_bounded() -> None:
    e = ending("start_failed", details={"message": "Mini HPC: refused\nover quota\x1b[0m" + "z" * 5000})
    assert e.details["message"].startswith("Mini HPC: refused\nover quota[0m")
    assert len(e.details["message"]) <= endings.MAX_MESSAGE
    assert "\n" not in ending(details={"reason": "a\nb"}).details["reason"]


def test_since_is_the_retention_period_back() -> None:
    assert endings.since(7, now=10 * 86400) == 3 * 86400
