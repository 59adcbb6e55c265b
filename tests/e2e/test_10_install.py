"""The chart is installed and reachable: every pod Ready, the hub API through the proxy."""

from __future__ import annotations

import requests
from kubernetes import client

from .conftest import HUB_URL, NAMESPACE, is_ready, wait_for


def test_every_pod_of_the_release_becomes_ready(kube: client.CoreV1Api) -> None:
    def all_ready() -> bool:
        items = kube.list_namespaced_pod(NAMESPACE).items
        components = {p.metadata.labels.get("app.kubernetes.io/component") for p in items}
        return {"hub", "proxy"} <= components and all(is_ready(p) for p in items)

    wait_for("every pod in the namespace Ready", all_ready, timeout=300)


def test_hub_api_answers_through_the_proxy_service(kube: client.CoreV1Api) -> None:
    # 127.0.0.1:30080 is the proxy-public NodePort, published by the kind node.
    svc = kube.read_namespaced_service("hpchub-proxy-public", NAMESPACE)
    assert svc.spec.type == "NodePort" and svc.spec.ports[0].node_port == 30080
    r = requests.get(f"{HUB_URL}/hub/api", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert "version" in r.json()


def test_login_page_is_served_through_the_proxy() -> None:
    r = requests.get(f"{HUB_URL}/hub/login", timeout=10)
    assert r.status_code == 200
    assert "password" in r.text.lower()
