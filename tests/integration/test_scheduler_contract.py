"""The contract every scheduler adapter (hpchub.schedulers) must pass, against the real
scheduler (Slurm today: the harness's one-host cluster), through the real sshd as an
ordinary user — what the batch spawner's lifecycle, the status board and the reaper rely
on. A new adapter joins by adding its harness fixture to ADAPTERS.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from hpchub import remoteops
from hpchub.options import CleanOptions
from hpchub.remoteops import RemoteOps, cancel_run, job_name, whole_script
from hpchub.schedulers import SCHEDULERS, Scheduler
from hpchub.schedulers.base import ACTIVE, ENDED, parse_found
from hpchub.serverstate import Phase
from hpchub.sshca import SSHCertificateAuthority
from hpchub.sshpool import SSHPool, SSHTarget
from tests.harness import minihpc

pytestmark = pytest.mark.integration
USER = "hpcbob"
# The scheduler adapters the harness has a real scheduler for.
ADAPTERS = ["slurm"]


@pytest.fixture(params=ADAPTERS)
def scheduler(request: pytest.FixtureRequest, slurm: minihpc.Slurm) -> Scheduler:
    return SCHEDULERS[request.param]


@pytest.fixture()
async def ops(sshd: minihpc.SSHD, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RemoteOps]:
    """Commands as an ordinary user through the real sshd (a pool of the test's own)."""
    pool = SSHPool()
    monkeypatch.setattr(remoteops, "pool", pool)
    target = SSHTarget.from_values(
        "Mini HPC",
        {"hosts": [f"127.0.0.1:{sshd.port}"], "knownHosts": sshd.known_hosts([("127.0.0.1", sshd.port)])},
    )
    ca = SSHCertificateAuthority(sshd.ca_key, 10)

    async def creds():  # noqa: ANN202
        return ca.credentials_for(USER)

    yield RemoteOps(target, USER, creds)
    pool.close_all()


def options(**kw: object) -> CleanOptions:
    base = {"partition": "debug", "nodes": 1, "time": "00:05:00", "time_seconds": 300}
    return CleanOptions(**{**base, **kw})  # type: ignore[arg-type]


async def submit(ops: RemoteOps, scheduler: Scheduler, run_id: str, opts: CleanOptions) -> str:
    eof = f"EOF_{secrets.token_hex(4)}"
    prefix = scheduler.directive_prefix()
    lines = [f"{prefix} {d}" for d in scheduler.directives(opts, requeue=False)]
    job = "\n".join(
        [
            "#!/bin/sh",
            f"{prefix} --job-name={job_name(run_id)}",
            f"{prefix} --output=/dev/null",
            *lines,
            "sleep 600",
        ]
    )
    r = await ops.script(whole_script(f"{scheduler.submit_command(eof)}\n{job}\n{eof}\n"))
    assert r.ok, r.stderr
    return scheduler.parse_submitted("Mini HPC", r.stdout)


async def query(ops: RemoteOps, scheduler: Scheduler, ids: list[str]) -> dict:
    r = await ops.run(scheduler.query_argv(ids))
    assert r.ok or scheduler.refuses_id(r.stdout + r.stderr), r.stderr
    return scheduler.parse_query(r.stdout, ids) if r.ok else {}


async def test_an_adapter_submits_finds_queries_and_cancels_a_job(
    scheduler: Scheduler, ops: RemoteOps
) -> None:
    run_id = secrets.token_hex(8)
    job_id = await submit(ops, scheduler, run_id, options())
    try:
        # found again by the run's name (a submission whose answer was lost)
        r = await ops.script(scheduler.find_script(job_name(run_id)))
        assert job_id in parse_found(r.stdout)
        # one query for many ids: the row is believed for its owner
        rows = await query(ops, scheduler, [job_id])
        st = rows[job_id]
        assert st.user == USER and st.kind == ACTIVE, st
        assert scheduler.phase(st.state) in (Phase.QUEUED, Phase.STARTING)

        async def running() -> str:
            for _ in range(60):
                st = (await query(ops, scheduler, [job_id]))[job_id]
                if st.state == scheduler.running_state and st.nodes:
                    return st.nodes
                await asyncio.sleep(1)
            raise AssertionError(f"job {job_id} did not run: {st}")

        nodes = await running()
        assert scheduler.first_host(nodes) == "mini01"
        assert scheduler.describe("Mini HPC", (await query(ops, scheduler, [job_id]))[job_id]).startswith(
            f"{scheduler.title} job {job_id} on Mini HPC is {scheduler.running_state}"
        )
    finally:
        assert await cancel_run(ops, scheduler, run_id, job_id)
    rows = await query(ops, scheduler, [job_id])
    assert job_id not in rows or rows[job_id].kind == ENDED


async def test_an_id_the_scheduler_does_not_know_is_told_apart_from_no_answer(
    scheduler: Scheduler, ops: RemoteOps
) -> None:
    r = await ops.run(scheduler.query_argv(["2147483647"]))
    assert not r.ok and scheduler.refuses_id(r.stdout + r.stderr), r
    assert not scheduler.refuses_id(
        "slurm_load_jobs error: Unable to contact slurm controller (connect failure)"
    )


async def test_the_directives_of_clean_options_are_what_the_scheduler_accepts(
    scheduler: Scheduler, ops: RemoteOps
) -> None:
    run_id = secrets.token_hex(8)
    job_id = await submit(ops, scheduler, run_id, options(licenses=("scratch:2",), email_on_start=True))
    assert await cancel_run(ops, scheduler, run_id, job_id)


async def test_cancel_by_name_alone_finds_a_job_whose_id_was_lost(
    scheduler: Scheduler, ops: RemoteOps
) -> None:
    run_id = secrets.token_hex(8)
    job_id = await submit(ops, scheduler, run_id, options())
    assert await cancel_run(ops, scheduler, run_id, None)
    rows = await query(ops, scheduler, [job_id])
    assert job_id not in rows or rows[job_id].kind == ENDED


@pytest.mark.parametrize("known_id", [True, False])
async def test_the_by_hand_cancel_an_operator_is_given_cancels_the_job(
    scheduler: Scheduler, ops: RemoteOps, known_id: bool
) -> None:
    """What the uninstall hook prints for a stop it could not confirm, run as printed (as
    the user, on a login node): with the job id, and with only the run's name."""
    run_id = secrets.token_hex(8)
    job_id = await submit(ops, scheduler, run_id, options())
    command = scheduler.cancel_by_hand(job_name(run_id), job_id if known_id else None, USER)
    r = await ops.script(command)
    assert r.ok, (command, r.stderr)
    for _ in range(30):
        rows = await query(ops, scheduler, [job_id])
        if job_id not in rows or rows[job_id].kind == ENDED:
            return
        await asyncio.sleep(1)
    raise AssertionError(f"{command!r} left job {job_id}: {rows.get(job_id)}")
