"""The chart is installed and reachable: every pod Ready, the hub API through the proxy."""

from __future__ import annotations

import subprocess

import requests
from kubernetes import client

from .conftest import HUB_URL, NAMESPACE, NODE_PORT, is_ready, wait_for


def test_every_pod_of_the_release_becomes_ready(kube: client.CoreV1Api) -> None:
    def all_ready() -> bool:
        # A finished Job's pod (an uninstall hook's) is never Ready and is not the release's.
        items = [p for p in kube.list_namespaced_pod(NAMESPACE).items if p.status.phase != "Succeeded"]
        components = {p.metadata.labels.get("app.kubernetes.io/component") for p in items}
        return {"hub", "proxy"} <= components and all(is_ready(p) for p in items)

    wait_for("every pod in the namespace Ready", all_ready, timeout=300)


def test_hub_api_answers_through_the_proxy_service(kube: client.CoreV1Api) -> None:
    # The proxy-public NodePort (values-dev.yaml), which the kind node publishes on
    # 127.0.0.1:<HPCHUB_HTTP_PORT as make up created the cluster, 30080 by default>;
    # HUB_URL reads that port from the node (conftest.published_port).
    svc = kube.read_namespaced_service("hpchub-proxy-public", NAMESPACE)
    assert svc.spec.type == "NodePort" and svc.spec.ports[0].node_port == NODE_PORT
    r = requests.get(f"{HUB_URL}/hub/api", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert "version" in r.json()


def test_login_page_is_served_through_the_proxy() -> None:
    r = requests.get(f"{HUB_URL}/hub/login", timeout=10)
    assert r.status_code == 200
    assert "password" in r.text.lower()


def test_network_policies_name_the_real_subnet_of_the_mini_hpc_network() -> None:
    # values-dev.yaml holds a placeholder; make up must put kind's real subnet in its place.
    r = subprocess.run(
        ["docker", "network", "inspect", "-f", "{{range .IPAM.Config}}{{println .Subnet}}{{end}}", "kind"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    subnet = next(s for s in r.stdout.split() if "." in s)
    policy = client.NetworkingV1Api().read_namespaced_network_policy("hpchub-hub", NAMESPACE)
    blocks = {p.ip_block.cidr for rule in policy.spec.egress or [] for p in rule.to or [] if p.ip_block}
    assert subnet in blocks and "192.0.2.0/24" not in blocks, (subnet, blocks)
