"""Hub restarts and `helm upgrade` keep user servers: the same Spin pod, the same process on
the login node, the same Slurm job, all still answering through the proxy."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from .conftest import (
    NAMESPACE,
    SLURM_SERVER,
    SPIN_SERVER,
    SSH_SERVER,
    Hub,
    helm_install,
    hub_pod,
    login_node_servers,
    pods,
    slurm_jobs,
    spin_pod,
    wait_for,
)


def snapshot(kube: client.CoreV1Api) -> dict[str, Any]:
    return {
        "spin": spin_pod(kube).metadata.uid,
        "ssh": sorted(login_node_servers()),
        "slurm": sorted(j[0] for j in slurm_jobs() if j[1] == "RUNNING"),
    }


def assert_servers_answer(hub: Hub) -> None:
    for name in (SPIN_SERVER, SSH_SERVER, SLURM_SERVER):
        s = hub.server(name)
        assert s and s.get("ready"), f"hub lost {name}: {s}"
        r = hub.through_proxy(name)
        assert r.status_code == 200, f"{name} through the proxy: {r.status_code}"


def test_deleting_the_hub_pod_keeps_user_servers(
    kube: client.CoreV1Api, hub: Hub, servers: dict[str, dict[str, Any]]
) -> None:
    before = snapshot(kube)
    old = hub_pod(kube).metadata.name
    kube.delete_namespaced_pod(old, NAMESPACE)
    wait_for(
        "a new Ready hub pod",
        lambda: [
            p
            for p in pods(kube, "app.kubernetes.io/component=hub")
            if p.metadata.name != old
            and p.status.phase == "Running"
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        ],
        timeout=300,
    )
    wait_for("hub API back", lambda: hub.api("GET", "/").ok, timeout=120)
    assert snapshot(kube) == before
    assert_servers_answer(hub)


def test_helm_upgrade_with_a_changed_value_keeps_user_servers(
    kube: client.CoreV1Api, hub: Hub, servers: dict[str, dict[str, Any]]
) -> None:
    before = snapshot(kube)
    old = hub_pod(kube).metadata.name
    # A value the hub reads: its config Secret changes, so the hub pod is replaced.
    helm_install("--set", "hub.debug=false")
    wait_for(
        "the upgraded hub Ready",
        lambda: [
            p
            for p in pods(kube, "app.kubernetes.io/component=hub")
            if p.metadata.name != old
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        ],
        timeout=300,
    )
    wait_for("hub API back", lambda: hub.api("GET", "/").ok, timeout=120)
    assert snapshot(kube) == before
    assert_servers_answer(hub)
