"""Faults on the real cluster (the Kubernetes rows of docs/reliability.md): the hub pod
deleted, and a `helm upgrade`, while Slurm servers are queued, starting and running beside
running SSH and Spin servers. After each, the same job / process / pod is there, a queued
job kept its place, and once the servers this file started are stopped, squeue, ps on the
login and compute nodes and the Spin pods show nothing beyond the servers that ran before."""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client

from .conftest import (
    COMPUTE_NODES,
    NAMESPACE,
    SLURM_SERVER,
    SPIN_SERVER,
    SSH_SERVER,
    USER,
    Hub,
    docker_exec,
    helm_install,
    hub_pod,
    is_ready,
    login_node_servers,
    notebook_processes,
    pods,
    slurm_jobs,
    spin_pod,
    wait_for,
)

QUEUED = "mini-gpu"
STARTING = "mini-configurable"


def free_cpus() -> dict[str, int]:
    r = docker_exec("hpc-login", "scontrol", "show", "node", "-o")
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        f = dict(x.split("=", 1) for x in line.split() if "=" in x)
        out[f["NodeName"]] = int(f["CPUTot"]) - int(f["CPUAlloc"])
    return out


def fill_nodes() -> list[str]:
    """Root's jobs on every free CPU: the next notebook job queues for Resources."""
    ids = []
    for node, n in free_cpus().items():
        if n > 0:
            r = docker_exec(
                "hpc-login", "sbatch", "--parsable", "-w", node, "-n", "1", "-c", str(n), "-t", "10",
                "-J", "e2e-blocker", "-o", "/dev/null", "--wrap", "sleep 600",
            )  # fmt: skip
            assert r.returncode == 0, r.stderr
            ids.append(r.stdout.strip())
    wait_for("the blockers to run", lambda: all(j[1] == "RUNNING" for j in slurm_jobs("root") if j[0] in ids))
    return ids


def release(ids: list[str]) -> None:
    if ids:
        docker_exec("hpc-login", "scancel", *ids)


def jobs_of_server(before: set[str]) -> list[tuple[str, str, str]]:
    return [j for j in slurm_jobs() if j[0] not in before]


def compute_node_servers() -> list[str]:
    """<node>:<pid> of the user's notebooks on the compute nodes (Slurm jobs' servers)."""
    return sorted(f"{node}:{pid}" for node in COMPUTE_NODES for pid in notebook_processes(node))


def spin_pods(kube: client.CoreV1Api) -> list[str]:
    return sorted(p.metadata.uid for p in pods(kube, f"hub.jupyter.org/username={USER}"))


def snapshot(kube: client.CoreV1Api) -> dict[str, Any]:
    """The running servers' pod, processes and jobs. Each is there (the `servers` fixture
    started one per backend): compared against an empty list, "the same ones afterwards"
    would hold whatever happened."""
    now = {
        "spin": spin_pod(kube).metadata.uid,
        "ssh": sorted(login_node_servers()),
        "slurm": sorted(j[0] for j in slurm_jobs() if j[1] == "RUNNING"),
        "compute": compute_node_servers(),
    }
    assert now["ssh"] and now["slurm"] and now["compute"], f"a running server has no process or job: {now}"
    return now


def assert_nothing_left(kube: client.CoreV1Api, before: dict[str, Any], known_jobs: set[str]) -> None:
    """Once this test's servers are stopped: no Slurm job, no notebook process on the login
    or compute nodes and no Spin pod beyond those of the servers running before."""

    def left() -> bool:
        extra = {
            "Slurm jobs": sorted({j[0] for j in slurm_jobs()} - known_jobs),
            "login-node notebooks": sorted(set(login_node_servers()) - set(before["ssh"])),
            "compute-node notebooks": sorted(set(compute_node_servers()) - set(before["compute"])),
            "Spin pods": sorted(set(spin_pods(kube)) - {before["spin"]}),
        }
        assert not any(extra.values()), f"left behind: {extra}"
        return True

    wait_for("nothing left of the stopped servers (squeue, ps, Spin pods)", left, timeout=120)


def new_hub_ready(kube: client.CoreV1Api, old: str) -> None:
    wait_for(
        "a new Ready hub pod",
        lambda: [
            p for p in pods(kube, "app.kubernetes.io/component=hub") if p.metadata.name != old and is_ready(p)
        ],
        timeout=300,
    )


def assert_running_kept(hub: Hub, kube: client.CoreV1Api, before: dict[str, Any]) -> None:
    for name in (SPIN_SERVER, SSH_SERVER, SLURM_SERVER):
        wait_for(f"{name} ready", lambda n=name: (hub.server(n) or {}).get("ready"), timeout=120)
        r = hub.through_proxy(name)
        assert r.status_code == 200, f"{name} through the proxy: {r.status_code}"
    now = snapshot(kube)
    assert now["spin"] == before["spin"] and set(before["ssh"]) <= set(now["ssh"])
    assert set(before["slurm"]) <= set(now["slurm"]) and set(before["compute"]) <= set(now["compute"])


def stop_extra(hub: Hub, names: list[str], blockers: list[str]) -> None:
    release(blockers)
    for name in names:
        if hub.server(name):
            hub.stop(name)


def test_hub_pod_deleted_with_slurm_servers_queued_starting_and_running(
    kube: client.CoreV1Api, hub: Hub, servers: dict[str, dict[str, Any]]
) -> None:
    before = snapshot(kube)
    known = {j[0] for j in slurm_jobs()}
    blockers: list[str] = []
    try:
        r = hub.api("POST", f"/users/{USER}/servers/{STARTING}", json={"user_options": {}})
        assert r.status_code in (201, 202), r.text
        starting = wait_for(
            "the starting job", lambda: [j[0] for j in jobs_of_server(known) if j[1] == "RUNNING"]
        )
        blockers = fill_nodes()
        r = hub.api("POST", f"/users/{USER}/servers/{QUEUED}", json={"user_options": {}})
        assert r.status_code in (201, 202), r.text
        queued = wait_for(
            "the queued job",
            lambda: [j[0] for j in jobs_of_server(known | set(starting)) if j[1] == "PENDING"],
        )
        old = hub_pod(kube).metadata.name
        kube.delete_namespaced_pod(old, NAMESPACE)
        new_hub_ready(kube, old)
        wait_for("hub API back", lambda: hub.api("GET", "/").ok, timeout=120)
        assert_running_kept(hub, kube, before)
        # The queued job kept its place: the same job, still pending, shown as a pending spawn.
        assert [j[0] for j in slurm_jobs() if j[1] == "PENDING"] == queued
        wait_for(
            "the queued server pending again", lambda: (hub.server(QUEUED) or {}).get("pending") == "spawn"
        )
        wait_for(f"{STARTING} ready", lambda: (hub.server(STARTING) or {}).get("ready"), timeout=180)
        assert hub.through_proxy(STARTING).status_code == 200
        release(blockers)
        blockers = []
        wait_for(f"{QUEUED} ready", lambda: (hub.server(QUEUED) or {}).get("ready"), timeout=300)
        assert hub.through_proxy(QUEUED).status_code == 200
        assert {j[0] for j in slurm_jobs() if j[1] == "RUNNING"} >= set(queued) | set(starting)
    finally:
        stop_extra(hub, [QUEUED, STARTING], blockers)
    assert_nothing_left(kube, before, known)


def test_helm_upgrade_with_a_queued_and_running_servers_of_each_backend(
    kube: client.CoreV1Api, hub: Hub, servers: dict[str, dict[str, Any]]
) -> None:
    before = snapshot(kube)
    known = {j[0] for j in slurm_jobs()}
    blockers = fill_nodes()
    try:
        r = hub.api("POST", f"/users/{USER}/servers/{QUEUED}", json={"user_options": {}})
        assert r.status_code in (201, 202), r.text
        queued = wait_for(
            "the queued job", lambda: [j[0] for j in jobs_of_server(known) if j[1] == "PENDING"]
        )
        old = hub_pod(kube).metadata.name
        # A changed value (whatever an earlier test left set): the hub pod is replaced.
        helm_install("--set-string", f"hub.extraEnv.E2E_UPGRADE={time.time_ns()}")
        new_hub_ready(kube, old)
        wait_for("hub API back", lambda: hub.api("GET", "/").ok, timeout=120)
        assert_running_kept(hub, kube, before)
        assert [j[0] for j in slurm_jobs() if j[1] == "PENDING"] == queued
        wait_for(
            "the queued server pending again", lambda: (hub.server(QUEUED) or {}).get("pending") == "spawn"
        )
        release(blockers)
        blockers = []
        wait_for(f"{QUEUED} ready", lambda: (hub.server(QUEUED) or {}).get("ready"), timeout=300)
        assert hub.through_proxy(QUEUED).status_code == 200
    finally:
        stop_extra(hub, [QUEUED], blockers)
        helm_install()  # back to the values `make up` installs
    assert_nothing_left(kube, before, known)
