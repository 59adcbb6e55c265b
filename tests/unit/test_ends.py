"""hpchub.ends: endings written with their metric; a stop's requester and the spawner's stop
meet in either order and give the cause; the retention prune. (The real hub's REST stops,
console stops and culler are tests/integration/test_endings_stops.py.)"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from hpchub import endings, ends
from hpchub.endings import Ending


@pytest.fixture
def engine() -> Iterator[Engine]:
    ends._requests.clear()
    ends._stops.clear()
    yield create_engine("sqlite://")
    ends._requests.clear()
    ends._stops.clear()


def pending(engine: Engine, user: str = "hpcalice", last_activity: float | None = None) -> ends.PendingStop:
    e = Ending(
        username=user, server="mini-shared", system="mini", level="shared", backend="ssh", cause="unknown",
        options={"startup_script": "~/env.sh"},
    )  # fmt: skip
    return ends.PendingStop(engine, e, last_activity=last_activity)


def count(cause: str) -> float:
    labels = {"system": "mini", "level": "shared", "cause": cause}
    return REGISTRY.get_sample_value("hpchub_server_ends_total", labels) or 0.0


@pytest.mark.parametrize("spawner_first", [True, False])
@pytest.mark.parametrize(
    ("who", "cause"),
    [
        (("hpcalice", "user"), "user"),
        (("hpccarol", "user"), "admin"),
        (("hpchub-tests", "service"), "admin"),
        (("idle-culler", "service"), "idle"),
    ],
)
def test_the_requester_gives_the_cause_in_either_order(
    engine: Engine, who: tuple[str, str], cause: str, spawner_first: bool
) -> None:
    # Made here, not at collection: a request is stamped when made and expires after
    # WAIT_SECONDS, which a full make test (collection to this test: ~35 min) exceeds.
    requester = ends.Requester(*who)
    before = count(cause)
    stop = pending(engine, last_activity=time.time() - 3700)
    if spawner_first:
        ends.stopping(stop)
        assert endings.last(engine, "hpcalice", "mini-shared", 0) is None  # waits for its requester
        ends.requested("hpcalice", "mini-shared", requester)
    else:
        ends.requested("hpcalice", "mini-shared", requester)
        ends.stopping(stop)
    e = endings.last(engine, "hpcalice", "mini-shared", 0)
    assert e is not None and e.cause == cause and e.details["by"] == requester.name
    assert e.options == {"startup_script": "~/env.sh"}
    assert count(cause) == before + 1
    if cause == "idle":
        assert 3699 <= e.details["idle_seconds"] <= 3710 and e.words == "was stopped after 61 min idle"
    assert not ends._requests and not ends._stops


def test_nothing_is_recorded_for_another_server_or_a_stale_request(engine: Engine, monkeypatch) -> None:
    ends.requested("hpcbob", "mini-shared", ends.Requester("hpcbob", "user"))
    ends.stopping(pending(engine))  # hpcalice's: not hpcbob's request
    assert endings.recent(engine, 0) == []
    # A request nobody's stop followed is forgotten after WAIT_SECONDS; so is a stop nobody asked for.
    later = time.time() + ends.WAIT_SECONDS + 1
    monkeypatch.setattr(ends.time, "time", lambda: later)
    ends.requested("hpcalice", "mini-exclusive", ends.Requester("hpcalice", "user"))
    assert set(ends._requests) == {("hpcalice", "mini-exclusive")} and not ends._stops


def test_a_new_start_forgets_what_waited_for_the_last_stop(engine: Engine) -> None:
    ends.requested("hpcalice", "mini-shared", ends.Requester("hpccarol", "user"))
    ends.forget("hpcalice", "mini-shared")
    ends.stopping(pending(engine))
    assert endings.recent(engine, 0) == []


def test_a_record_that_cannot_be_written_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    broken = create_engine("sqlite:////nonexistent/dir/hub.sqlite")
    assert ends.record(broken, pending(broken).ending) is None
    assert ends.record(None, pending(broken).ending) is None
    assert "cannot record how hpcalice/mini-shared ended" in caplog.text


def test_prune_keeps_the_retention_period(engine: Engine) -> None:
    ends.configure(3)
    try:
        old = Ending(
            "hpcalice", "mini-shared", "mini", "shared", "ssh", "exited", ended=time.time() - 4 * 86400
        )
        endings.record(engine, old)
        endings.record(
            engine, Ending("hpcalice", "mini-exclusive", "mini", "exclusive", "slurm", "time_limit")
        )
        assert ends.prune(engine) == 1
        assert [e.server for e in endings.recent(engine, 0)] == ["mini-exclusive"]
    finally:
        ends.configure(endings.RETENTION_DAYS)


def test_requester_of_jupyterhubs_users_and_services() -> None:
    class User:
        name, kind = "hpcalice", "user"

    class Service:
        name, kind = "idle-culler", "service"

    r = ends.requester_of(User())
    assert r is not None and (r.name, r.kind) == ("hpcalice", "user")
    assert ends.requester_of(Service()).kind == "service"
    assert ends.requester_of(None) is None
