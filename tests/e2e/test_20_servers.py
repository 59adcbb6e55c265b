"""A test user starts one server per backend; each answers through the proxy."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from .conftest import (
    SLURM_SERVER,
    SPIN_SERVER,
    SSH_SERVER,
    STATE,
    USER,
    Hub,
    docker_exec,
    login_node_servers,
    pod_exec,
    slurm_jobs,
    spin_pod,
)


def test_spin_server_runs_as_the_users_uid_with_the_home_volume(
    kube: client.CoreV1Api, servers: dict[str, dict[str, Any]]
) -> None:
    pod = spin_pod(kube)
    assert pod.status.phase == "Running"
    assert pod_exec(kube, pod.metadata.name, ["id", "-u"]).strip() == "1000"
    # The home volume is the mini HPC center's /home: a file written in Spin appears there.
    marker = f"/home/{USER}/e2e-from-spin.txt"
    pod_exec(kube, pod.metadata.name, ["sh", "-c", f"echo spin > {marker}"])
    assert (STATE / "home" / USER / "e2e-from-spin.txt").read_text().strip() == "spin"
    r = docker_exec("hpc-login", "cat", marker, user=USER)
    assert r.returncode == 0 and r.stdout.strip() == "spin"


def test_spin_server_answers_through_the_proxy(hub: Hub, servers: dict[str, dict[str, Any]]) -> None:
    r = hub.through_proxy(SPIN_SERVER)
    assert r.status_code == 200, r.text[:300]


def test_ssh_server_runs_on_the_login_node_and_answers_through_the_proxy(
    hub: Hub, servers: dict[str, dict[str, Any]]
) -> None:
    assert login_node_servers(), "no jupyterhub-singleuser of the user on hpc-login"
    r = hub.through_proxy(SSH_SERVER)
    assert r.status_code == 200, r.text[:300]


def test_slurm_server_runs_in_a_job_on_a_compute_node_and_answers_through_the_proxy(
    hub: Hub, servers: dict[str, dict[str, Any]]
) -> None:
    jobs = [j for j in slurm_jobs() if j[1] == "RUNNING"]
    assert len(jobs) == 1, f"expected one running job, squeue says {slurm_jobs()}"
    assert jobs[0][2] in ("hpc-c1", "hpc-c2")
    r = hub.through_proxy(SLURM_SERVER)
    assert r.status_code == 200, r.text[:300]
