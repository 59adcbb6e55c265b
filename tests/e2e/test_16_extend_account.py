"""`make up` runs Extend as the operator guide sets it up (issue 18): the mini HPC center's
login node has the extend account from the guide's steps (images/mini-hpc runs them), the
hub's values enable ``systems.mini.slurm.extend`` (cap 2:00:00), and a user's running Slurm
job's time limit grows when they ask, as ``scontrol show job`` says, and not past the cap.
The guide's steps, run as written on a fresh login node, give it a working extend account
that refuses anything but the one request.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from hpchub.remoteops import extend_request
from hpchub.serverstate import JobShape
from hpchub.sshca import SSHCertificateAuthority
from hpchub.sshpool import SSHError, SSHPool, SSHTarget

from .conftest import (
    ROOT,
    SLURM_SERVER,
    STATE,
    USER,
    Hub,
    docker_exec,
    fresh_login_node,
    guide_block,
    run_guide_steps_while_logged_in,
    slurm_jobs,
)

EXTEND_USER = "hpchubext"
FORCE_COMMAND = "/usr/local/libexec/hpchub-extend-command"


def time_limit(job: str) -> str:
    r = docker_exec("hpc-login", "scontrol", "show", "job", job)
    m = re.search(r"\bTimeLimit=(\S+)", r.stdout)
    assert m, r.stdout + r.stderr
    return m.group(1)


def minutes(limit: str) -> int:
    h, m, _ = (int(x) for x in limit.split(":"))
    return h * 60 + m


def alices_job() -> str:
    (job,) = [j for j, state, _ in slurm_jobs(USER) if state == "RUNNING"]
    return job


def job_name(job: str) -> str:
    r = docker_exec("hpc-login", "squeue", "-h", "-j", job, "-o", "%j")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


# The job of make up's exclusive level (config/values-dev.yaml): one node in partition debug,
# no GPUs, nodes shared, not requeued (JobShape's defaults).
SHAPE = JobShape(nodes=1, partition="debug")


def test_make_ups_hub_extends_a_running_job_within_the_cap(
    hub: Hub, servers: dict[str, dict[str, Any]]
) -> None:
    job = alices_job()
    before = minutes(time_limit(job))
    status = hub.api("GET", f"/hpchub/servers/{USER}/{SLURM_SERVER}").json()
    assert status["extend"]["allowed"], status
    r = hub.api("POST", f"/hpchub/servers/{USER}/{SLURM_SERVER}/extend", json={"seconds": 600})
    assert r.status_code == 200, r.text
    assert minutes(time_limit(job)) == before + 10
    past = hub.api("POST", f"/hpchub/servers/{USER}/{SLURM_SERVER}/extend", json={"seconds": 24 * 3600})
    assert past.status_code in (403, 409) and "2:00:00" in past.json()["message"], past.text
    assert minutes(time_limit(job)) == before + 10


def test_the_guides_steps_give_a_login_node_a_working_extend_account(
    servers: dict[str, dict[str, Any]],
) -> None:
    """The operator guide's extend-account steps, run as written on a login node that has
    none (the mini HPC image with MINI_HPC_EXTEND_ACCOUNT=0): before them the account
    cannot log in; after them it raises alice's job's limit and refuses anything else,
    a job of another shape than the server's included."""
    steps = guide_block("extend-account-setup")
    container = "hpc-login-fresh-extend"
    with fresh_login_node(container, {"MINI_HPC_EXTEND_ACCOUNT": "0"}) as (ip, known):
        target = SSHTarget.from_values("Fresh", {"hosts": [f"{ip}:22"], "knownHosts": known})
        ca = SSHCertificateAuthority(STATE / "ssh-ca" / "ca", 10)
        job = alices_job()
        name = job_name(job)

        async def ask(argv: list[str]) -> Any:
            pool = SSHPool()
            try:
                creds = ca.service_credentials(EXTEND_USER, force_command=FORCE_COMMAND)
                return await pool.run(target, EXTEND_USER, creds, argv)
            except SSHError as e:
                return e
            finally:
                pool.close_all()

        before = minutes(time_limit(job))
        refused_login = asyncio.run(ask(extend_request(USER, job, before + 5, name, SHAPE)))
        assert isinstance(refused_login, SSHError), (
            f"the extend account worked before the steps: {refused_login}"
        )
        run_guide_steps_while_logged_in(
            container, ip, known, ca, steps, ROOT / "config" / "login-node" / "hpchub-extend-command"
        )
        good = extend_request(USER, job, before + 5, name, SHAPE)
        for argv, why in (
            (["id"], "not a request"),
            (["extend", USER, job, str(before + 5)], "expected: extend"),  # an earlier hub's request
            (good[:9], "expected: extend"),  # the previous hub's (no GPUs, exclusive, requeue)
            (extend_request("bob", job, before + 5, name, SHAPE), "is not bob's"),
            ([*good[:3], f"{before + 5};id", *good[4:]], "expected: extend"),
            (extend_request(USER, job, before + 5, name, JobShape(nodes=2, partition="debug")), "has 1 node"),
            (
                extend_request(USER, job, before + 5, name, JobShape(nodes=1, partition="gpu")),
                "partition debug",
            ),
            (
                extend_request(USER, job, before + 5, name, JobShape(nodes=1, partition="debug", gpus=2)),
                "no GPUs",
            ),
            (
                extend_request(
                    USER, job, before + 5, name, JobShape(nodes=1, partition="debug", exclusive=True)
                ),
                "does not hold its nodes whole",
            ),
            (
                extend_request(
                    USER, job, before + 5, name, JobShape(nodes=1, partition="debug", requeue=True)
                ),
                "is not requeueable",
            ),
        ):
            no = asyncio.run(ask(argv))
            assert not isinstance(no, Exception) and no.exit_status == 126 and why in no.stderr, (argv, no)
        assert minutes(time_limit(job)) == before
        ok = asyncio.run(ask(good))
        assert not isinstance(ok, Exception) and ok.exit_status == 0, ok
        assert minutes(time_limit(job)) == before + 5
