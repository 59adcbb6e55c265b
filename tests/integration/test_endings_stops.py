"""Who stopped a server, recorded with its ending (real hub, proxy, sshd and the real idle
culler service): the user themselves ("user": recorded, not shown), an administrator or a
service ("admin", naming them), the idle culler ("idle", with how long the server had been
idle). JupyterHub's stop API does not tell the spawner who asked; the finished request
does (hpchub.ends). A stop someone was refused leaves no trace.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from hpchub import endings
from hpchub.endings import Ending
from tests.harness import minihpc

pytestmark = pytest.mark.integration

SERVER = "mini-shared"
ADMIN = "hpccarol"  # an administrator of this hub (hub.adminUsers)
CULL_TIMEOUT = 60  # culling.timeout (the schema's minimum)


@pytest.fixture(scope="module")
def stops_hub(workdir: Path, sshd: minihpc.SSHD) -> Iterator[minihpc.Hub]:
    values = minihpc.test_values(sshd, [("127.0.0.1", sshd.port)])
    values["hub"]["adminUsers"] = [ADMIN]
    # The idle culler as the chart runs it (hpchub.culler, the hub's managed service).
    values["hub"]["activityIntervalSeconds"] = CULL_TIMEOUT // 2
    values["culling"] = {"enabled": True, "timeout": CULL_TIMEOUT, "every": 10}
    with minihpc.running_hub(workdir, values, sshd.ca_key, "endings-stops-hub") as hub:
        yield hub


def session(hub: minihpc.Hub, user: str) -> requests.Session:
    password = minihpc.ADMIN_PASSWORD if user == ADMIN else "test-password"
    return hub.session_of(user, password)


def rest(s: requests.Session, hub: minihpc.Hub, method: str, path: str) -> requests.Response:
    """The hub's REST API from a signed-in browser (JupyterHub's own pages do this)."""
    return s.request(
        method, f"{hub.public}/hub/api{path}", headers={"X-XSRFToken": s.cookies["_xsrf"]}, timeout=90
    )


def started(hub: minihpc.Hub, user: str) -> float:
    since = time.time()
    outcome, message = hub.start_outcome(user, SERVER)
    assert outcome == "ready", message
    return since


def ending(hub: minihpc.Hub, user: str, since: float) -> Ending:
    minihpc.wait_for(lambda: hub.server_model(user, SERVER) is None, 60, f"{user}/{SERVER} stopped", 0.5)
    return minihpc.wait_for(lambda: endings.last(hub.db_engine(), user, SERVER, since), 5, "the ending")


def test_a_user_stopping_their_own_server_is_recorded_and_not_shown(stops_hub: minihpc.Hub) -> None:
    hub, user = stops_hub, "hpcalice"
    since = started(hub, user)
    r = rest(session(hub, user), hub, "DELETE", f"/users/{user}/servers/{SERVER}")
    assert r.status_code in (202, 204), r.text
    e = ending(hub, user, since)
    assert (e.cause, e.details.get("by")) == ("user", user), e
    assert not e.shown and e.words == "was stopped by you"


def test_the_consoles_stop_button_is_the_user_too(stops_hub: minihpc.Hub) -> None:
    # The console's form says who asks before it stops (the other order than the REST API's).
    hub, user = stops_hub, "hpcbob"
    since = started(hub, user)
    s = session(hub, user)
    r = s.post(f"{hub.public}/hub/console/stop/{SERVER}", data={"_xsrf": s.cookies["_xsrf"]}, timeout=90)
    assert r.ok, r.status_code
    e = ending(hub, user, since)
    assert (e.cause, e.details.get("by")) == ("user", user), e


def test_an_administrator_stopping_a_server_is_named(stops_hub: minihpc.Hub) -> None:
    hub, user = stops_hub, "hpcalice"
    since = started(hub, user)
    # Another user, not an administrator, is refused; that leaves no trace on the ending.
    r = rest(session(hub, "hpcbob"), hub, "DELETE", f"/users/{user}/servers/{SERVER}")
    assert r.status_code in (403, 404), r.text
    assert hub.server_model(user, SERVER)["ready"]
    r = rest(session(hub, ADMIN), hub, "DELETE", f"/users/{user}/servers/{SERVER}")
    assert r.status_code in (202, 204), r.text
    e = ending(hub, user, since)
    assert (e.cause, e.details.get("by")) == ("admin", ADMIN), e
    assert e.shown and e.words == "was stopped by an administrator"


def test_a_service_stopping_a_server_is_named_as_an_administrator(stops_hub: minihpc.Hub) -> None:
    hub, user = stops_hub, "hpcbob"
    since = started(hub, user)
    hub.stop_server(user, SERVER)  # the tests' own service token (admin:servers)
    e = ending(hub, user, since)
    assert (e.cause, e.details.get("by")) == ("admin", "hpchub-tests"), e


def test_the_idle_culler_is_recorded_with_how_long_the_server_was_idle(stops_hub: minihpc.Hub) -> None:
    hub, user = stops_hub, "hpccarol"
    before = hub.metrics()
    since = started(hub, user)
    # Nobody uses it: the culler (every 10 s) stops it once it has been idle 60 s.
    minihpc.wait_for(lambda: hub.server_model(user, SERVER) is None, CULL_TIMEOUT + 120, "the culler", 1)
    e = minihpc.wait_for(lambda: endings.last(hub.db_engine(), user, SERVER, since), 5, "the ending")
    assert (e.cause, e.details.get("by")) == ("idle", "idle-culler"), e
    assert CULL_TIMEOUT <= e.details["idle_seconds"] <= CULL_TIMEOUT + 60, e.details
    assert e.words == f"was stopped after {e.details['idle_seconds'] // 60} min idle"
    # hpchub_server_ends_total counts it by cause.
    series = (
        "hpchub_server_ends_total",
        frozenset({"system": "mini", "level": "shared", "cause": "idle"}.items()),
    )
    assert hub.metrics()[series] == before[series] + 1
