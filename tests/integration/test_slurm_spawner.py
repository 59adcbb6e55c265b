"""Slurm spawner against the real one-host Slurm: REST start, proxy, stop, outages."""

from __future__ import annotations

import pytest

from tests.harness import minihpc

pytestmark = pytest.mark.integration


def test_slurm_server_answers_through_proxy_and_stop_leaves_no_job(
    hub: minihpc.Hub, slurm: minihpc.Slurm
) -> None:
    user = "hpcbob"
    r = hub.start_server(user, "mini-exclusive")
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(user, "mini-exclusive")
    hub.wait_answering(user, "mini-exclusive")
    jobs = [j for j in slurm.squeue(user) if j["state"] == "RUNNING"]
    assert len(jobs) == 1 and jobs[0]["name"] == "hpchub-mini-exclusive"
    hub.stop_server(user, "mini-exclusive")
    assert slurm.squeue(user) == []
