"""`helm uninstall` leaves no pods behind — including user servers' pods — and the chart
installs again afterwards (the install `make up` made is restored for the next run)."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from .conftest import (
    NAMESPACE,
    RELEASE,
    docker_exec,
    helm,
    helm_install,
    login_node_servers,
    slurm_jobs,
    spin_pod,
    wait_for,
)


def test_helm_uninstall_leaves_no_pods(kube: client.CoreV1Api, servers: dict[str, dict[str, Any]]) -> None:
    # There is something to stop: a Spin pod, a notebook on the login node, a running job.
    spin_pod(kube)
    assert login_node_servers(), "no notebook runs on hpc-login before the uninstall"
    assert [j for j in slurm_jobs() if j[1] == "RUNNING"], (
        f"no running Slurm job before the uninstall: {slurm_jobs()}"
    )
    try:
        r = helm("uninstall", RELEASE, "--wait", "--timeout", "5m")
        assert r.returncode == 0, r.stderr
        wait_for(
            "no pods left in the namespace",
            lambda: not [p.metadata.name for p in kube.list_namespaced_pod(NAMESPACE).items],
            timeout=180,
        )
        # ... and nothing of the user's left running on the HPC side either.
        assert not [j for j in slurm_jobs() if j[1] in ("RUNNING", "PENDING")], slurm_jobs()
        assert not login_node_servers(), "a notebook is still running on hpc-login"
    finally:
        # Whatever the outcome: no orphaned user pods or Slurm jobs, and the release back.
        for p in kube.list_namespaced_pod(
            NAMESPACE, label_selector="app.kubernetes.io/managed-by=kubespawner"
        ).items:
            kube.delete_namespaced_pod(p.metadata.name, NAMESPACE, grace_period_seconds=0)
        for job_id, _state, _nodes in slurm_jobs():
            docker_exec("hpc-login", "scancel", job_id)
        docker_exec("hpc-login", "pkill", "-u", "alice", "-f", "jupyterhub-singleuser")
        helm_install()
