"""The status board against the real sshd and slurmctld: polls of many servers cost one
scheduler RPC and one process listing; the status account runs nothing but status queries;
a job id or PID a user's shell reports is never taken for theirs when it is someone else's.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpchub.schedulers import TransientSchedulerError
from hpchub.sshca import SSHCertificateAuthority
from hpchub.sshpool import SSHPool, SSHTarget
from hpchub.status import StatusBoard
from tests.harness import minihpc

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def status_command(sshd: minihpc.SSHD) -> str:
    """The force-command filter, installed root-owned as the operator guide says (the
    harness's sshd does it, and forces it on the status account)."""
    return str(sshd.status_command)


def as_user(user: str, slurm: minihpc.Slurm, *argv: str) -> str:
    return minihpc.run("runuser", "-u", user, "--", *argv, env=slurm.env).stdout.strip()


@pytest.fixture()
def jobs(slurm: minihpc.Slurm) -> Iterator[dict[str, str]]:
    """Two small jobs per test user, submitted by the users themselves: id -> user."""
    made: dict[str, str] = {}
    for user in minihpc.USERS:
        for _ in range(2):
            out = as_user(
                user, slurm, "sbatch", "--parsable", "-o", "/dev/null", "-t", "5", "--wrap", "sleep 300"
            )
            made[out.split(";")[0]] = user
    yield made
    for job_id in made:
        minihpc.run("scancel", job_id, check=False, env=slurm.env)


@pytest.fixture()
def processes() -> Iterator[dict[int, str]]:
    """One long-running process per test user (a stand-in for a login-node notebook)."""
    procs = {}
    for user in minihpc.USERS:
        p = subprocess.Popen(["runuser", "-u", user, "--", "sleep", "300"])
        procs[p] = user
    pids: dict[int, str] = {}
    for p, user in procs.items():
        # runuser forks: the user's sleep is its child.
        child = minihpc.wait_for(
            lambda p=p: minihpc.run("pgrep", "-P", str(p.pid), check=False).stdout.split(), 10, "sleep"
        )
        pids[int(child[0])] = user
    yield pids
    for p in procs:
        p.kill()
    for pid in pids:
        minihpc.run("kill", str(pid), check=False)


def lstart(pid: int) -> str:
    return minihpc.run("env", "LC_ALL=C", "ps", "-o", "lstart=", "-p", str(pid)).stdout.strip()


def service_board(sshd: minihpc.SSHD, force_command: str | None) -> tuple[StatusBoard, SSHPool]:
    pool = SSHPool()
    target = SSHTarget.from_values(
        "Mini HPC",
        {"hosts": [f"127.0.0.1:{sshd.port}"], "knownHosts": sshd.known_hosts([("127.0.0.1", sshd.port)])},
    )
    ca = SSHCertificateAuthority(sshd.ca_key, 10)

    async def creds():  # noqa: ANN202
        return ca.service_credentials(minihpc.STATUS_USER, force_command=force_command)

    board = StatusBoard(
        "Mini HPC", target, pool, interval=30, service_user=minihpc.STATUS_USER, service_credentials=creds
    )
    return board, pool


async def test_polls_of_every_job_and_process_cost_one_squeue_rpc_and_one_ps(
    slurm: minihpc.Slurm,
    sshd: minihpc.SSHD,
    status_command: str,
    jobs: dict[str, str],
    processes: dict[int, str],
) -> None:
    board, pool = service_board(sshd, status_command)
    label = f"127.0.0.1:{sshd.port}"
    for job_id, user in jobs.items():
        board.watch_job(job_id, user)
    for pid, user in processes.items():
        board.watch_process(label, pid, lstart(pid), user)
    sessions = sshd.sessions(minihpc.STATUS_USER)
    _, before = slurm.rpc_counts()
    # Ten polls of every server at once, as after a hub restart.
    reads = [board.job(j, u) for j, u in jobs.items() for _ in range(10)] + [
        board.process(label, p, u) for p, u in processes.items() for _ in range(10)
    ]
    results = await asyncio.gather(*reads)
    _, after = slurm.rpc_counts()
    assert all(r.active for r in results[: 10 * len(jobs)])
    assert all(r.alive for r in results[10 * len(jobs) :])
    # One squeue from the status account for six jobs and sixty reads (squeue -j <list> is
    # two RPCs: REQUEST_JOB_INFO and REQUEST_PARTITION_INFO); one ps.
    assert after.get(minihpc.STATUS_USER, 0) - before.get(minihpc.STATUS_USER, 0) == 2
    assert sshd.sessions(minihpc.STATUS_USER) - sessions == 2
    # The users asked slurmctld nothing.
    assert all(after.get(u, 0) == before.get(u, 0) for u in minihpc.USERS)

    # A job cancelled and a process killed outside the hub: the next refresh says so.
    gone_job = next(iter(jobs))
    slurm.scancel(gone_job)
    gone_pid = next(iter(processes))
    minihpc.run("kill", str(gone_pid))
    minihpc.wait_for(
        lambda: not minihpc.run("ps", "-p", str(gone_pid), check=False).returncode == 0, 10, "kill"
    )
    st = await board.job(gone_job, jobs[gone_job], max_age=0)
    minihpc.wait_for(
        lambda: (
            slurm.squeue() and all(j["id"] != gone_job or j["state"] != "RUNNING" for j in slurm.squeue())
        ),
        30,
        "the job to end",
    )
    st = await board.job(gone_job, jobs[gone_job], max_age=0)
    assert not st.active, st
    assert not (await board.process(label, gone_pid, processes[gone_pid], max_age=0)).alive
    others = [await board.job(j, u) for j, u in jobs.items() if j != gone_job]
    assert all(o.active for o in others)
    pool.close_all()


@pytest.mark.parametrize("in_certificate", [True, False], ids=["certificate", "sshd_config"])
async def test_status_account_certificate_runs_nothing_but_status_queries(
    sshd: minihpc.SSHD, status_command: str, in_certificate: bool
) -> None:
    # The forced command holds both from the certificate (status.forceCommand) and from
    # sshd_config's Match block alone (operator guide, step 4).
    board, pool = service_board(sshd, status_command if in_certificate else None)
    assert board._service_credentials is not None
    creds = await board._service_credentials()
    for argv in (
        ["cat", "/etc/shadow"],
        ["sh", "-c", "id"],
        ["squeue", "-h", "-t", "all", "-j", "1;id", "-o", "%i"],
        ["squeue", "-h", "-t", "all", "-j", "1\n", "-o", "%i|%T|%r|%S|%N|%u"],
        ["squeue", "-h", "-t", "all", "-j", "١", "-o", "%i|%T|%r|%S|%N|%u"],
    ):
        r = await pool.run(board.target, minihpc.STATUS_USER, creds, argv)
        assert r.exit_status == 126 and "refused" in r.stderr, (argv, r)
    ok = await pool.run(
        board.target,
        minihpc.STATUS_USER,
        creds,
        ["env", "LC_ALL=C", "ps", "-o", "pid=,euser:64=,lstart=", "-p", "1"],
    )
    assert ok.exit_status == 0 and ok.stdout.split()[:2] == ["1", "root"]
    pool.close_all()


async def test_a_job_id_reported_by_a_users_shell_is_not_taken_for_theirs(
    slurm: minihpc.Slurm, sshd: minihpc.SSHD, status_command: str, jobs: dict[str, str]
) -> None:
    # hpcmallory's start "reported" hpcalice's job (her sbatch on PATH prints any number).
    board, pool = service_board(sshd, status_command)
    alices = next(j for j, u in jobs.items() if u == "hpcalice")
    board.watch_job(alices, minihpc.HOSTILE_USER)
    st = await board.job(alices, minihpc.HOSTILE_USER)
    # FOREIGN, and without the owner's name (PrivateData=jobs may hide who owns an id).
    assert st.state == "FOREIGN" and st.gone and "hpcalice" not in st.reason
    # The same id watched for its real owner is running: the claim did not touch her row.
    board.watch_job(alices, "hpcalice")
    assert (await board.job(alices, "hpcalice", max_age=0)).state == "RUNNING"
    pool.close_all()


async def test_a_users_shell_cannot_change_what_the_board_says_about_others(
    slurm: minihpc.Slurm, sshd: minihpc.SSHD, jobs: dict[str, str]
) -> None:
    # Per-user mode (no status account). hpcmallory's ~/.bashrc prints forged squeue rows
    # saying hpcalice's job was cancelled, for every command sshd runs for her.
    alices = next(j for j, u in jobs.items() if u == "hpcalice")
    mallory = minihpc.HOSTILE_USER
    mine = as_user(
        mallory, slurm, "sbatch", "--parsable", "-o", "/dev/null", "-t", "5", "--wrap", "sleep 300"
    )
    bashrc = Path(f"/home/{mallory}/.bashrc")
    saved = bashrc.read_text() if bashrc.exists() else None
    bashrc.write_text(
        f"echo '{alices}|CANCELLED|None|N/A|mini01|hpcalice'\necho '{mine}|RUNNING|None|N/A|mini01|{mallory}'\n"
    )
    pool = SSHPool()
    target = SSHTarget.from_values(
        "Mini HPC",
        {"hosts": [f"127.0.0.1:{sshd.port}"], "knownHosts": sshd.known_hosts([("127.0.0.1", sshd.port)])},
    )
    ca = SSHCertificateAuthority(sshd.ca_key, 10)
    board = StatusBoard("Mini HPC", target, pool, interval=30)
    try:
        for user, job_id in (("hpcalice", alices), (mallory, mine)):

            async def creds(user: str = user):  # noqa: ANN202
                return ca.credentials_for(user)

            board.watch_job(job_id, user, creds)
        alice, hers = await asyncio.gather(
            board.job(alices, "hpcalice"), board.job(mine, mallory), return_exceptions=True
        )
        assert alice.state == "RUNNING", alice  # her forged row was never asked for, so never read
        # Her own job: the forged row and squeue's real one conflict, and neither is believed.
        assert isinstance(hers, TransientSchedulerError), hers
    finally:
        if saved is None:
            bashrc.unlink()
        else:
            bashrc.write_text(saved)
        minihpc.run("scancel", mine, check=False, env=slurm.env)
        pool.close_all()
