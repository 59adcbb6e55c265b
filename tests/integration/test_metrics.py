"""/hub/metrics of the real hub, scraped through the real proxy the way Prometheus does
(with the metrics service's token): hpchub's gauges, histograms and counters move when a
Slurm server starts and stops, and nobody else may read them."""

from __future__ import annotations

import pytest
import requests

from tests.harness import minihpc

pytestmark = pytest.mark.integration

USER = "hpccarol"
SERVER = "mini-exclusive"


def sample(scrape: dict, name: str, **labels: str) -> float:
    return scrape.get((name, frozenset(labels.items())), 0.0)


def total(scrape: dict, name: str) -> float:
    return sum(v for (n, _), v in scrape.items() if n == name)


def test_metrics_move_when_a_slurm_server_starts_and_stops(hub: minihpc.Hub, slurm: minihpc.Slurm) -> None:
    cell = {"system": "mini", "level": "exclusive"}
    before = hub.metrics()
    # Every cell has its series from the start (0), so dashboards and rate() have data.
    assert ("hpchub_servers", frozenset({**cell, "state": "running"}.items())) in before
    assert (
        "hpchub_scheduler_errors_total",
        frozenset({"system": "mini", "operation": "query"}.items()),
    ) in before
    running0 = sample(before, "hpchub_servers", **cell, state="running")
    waits0 = sample(before, "hpchub_spawn_queue_wait_seconds_count", **cell)
    starts0 = sample(before, "hpchub_spawn_server_start_seconds_count", **cell, backend="slurm")
    spawns0 = total(before, "jupyterhub_server_spawn_duration_seconds_count")  # JupyterHub's own

    r = hub.start_server(USER, SERVER)
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(USER, SERVER)
    during = hub.metrics()
    assert sample(during, "hpchub_servers", **cell, state="running") == running0 + 1
    assert sample(during, "hpchub_spawn_queue_wait_seconds_count", **cell) == waits0 + 1
    assert sample(during, "hpchub_spawn_server_start_seconds_count", **cell, backend="slurm") == starts0 + 1
    assert total(during, "jupyterhub_server_spawn_duration_seconds_count") == spawns0 + 1
    # The spawn went over SSH: the pool holds a connection to the mini HPC's login node.
    assert sample(during, "hpchub_ssh_connections", system="mini") >= 1
    # The first login host of the test values is a dead one: every hub process meets it once.
    assert (
        sum(
            v
            for (n, lab), v in during.items()
            if n == "hpchub_ssh_errors_total" and ("kind", "unreachable") in lab
        )
        >= 1
    )
    [job] = slurm.squeue(USER)
    assert job["state"] == "RUNNING"

    hub.stop_server(USER, SERVER)
    after = hub.metrics()
    assert sample(after, "hpchub_servers", **cell, state="running") == running0
    assert slurm.squeue(USER) == []


def test_metrics_need_the_metrics_token(hub: minihpc.Hub) -> None:
    url = f"{hub.public}/hub/metrics"
    # Anonymous, through the public proxy: refused.
    assert requests.get(url, timeout=10).status_code == 403
    # An ordinary user's own API token: refused too.
    r = hub.request("POST", f"/users/{USER}/tokens", json={"note": "metrics test", "expires_in": 300})
    assert r.status_code in (200, 201), r.text
    user_token = r.json()["token"]
    r = requests.get(url, headers={"Authorization": f"token {user_token}"}, timeout=10)
    assert r.status_code == 403, r.text[:200]
    # The metrics token reads the metrics and nothing else.
    assert hub.metrics()  # raises on a non-2xx answer
    r = requests.get(f"{hub.api}/users", headers={"Authorization": f"token {hub.metrics_token}"}, timeout=10)
    assert r.status_code == 403, r.text[:200]
