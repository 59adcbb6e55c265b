"""/hub/metrics on the cluster, scraped the ways Prometheus does: through the public proxy
and from a pod in an allowed namespace (hub.metrics.ingressFrom in values-kind.yaml), each
with the metrics token the chart keeps in the hub's Secret. The values move when a Slurm
server starts on the mini HPC center; without the token, or from a namespace that is not
allowed, nothing is read."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
import requests
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from .conftest import HUB_URL, NAMESPACE, RELEASE, login, pods, wait_for
from .test_30_network_policy import CONNECT, outside_exec

USER = "bob"  # the mini HPC center's second user; alice's servers belong to other tests
PASSWORD = "hpchub-dev"
SERVER = "mini-exclusive"
CELL = {"system": "mini", "level": "exclusive"}
MONITORING = "hpchub-e2e-monitoring"  # admitted by config/values-kind.yaml


def metrics_token(kube: client.CoreV1Api) -> str:
    """The token from the Secret and key the hub Deployment reads it from (as a
    ServiceMonitor does)."""
    dep = client.AppsV1Api().read_namespaced_deployment(f"{RELEASE}-hub", NAMESPACE)
    hub = next(c for c in dep.spec.template.spec.containers if c.name == "hub")
    ref = next(e for e in hub.env if e.name == "HPCHUB_METRICS_TOKEN").value_from.secret_key_ref
    data = kube.read_namespaced_secret(ref.name, NAMESPACE).data
    return base64.b64decode(data[ref.key]).decode()


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def scrape(token: str) -> dict[tuple[str, frozenset], float]:
    r = requests.get(f"{HUB_URL}/hub/metrics", headers={"Authorization": f"token {token}"}, timeout=30)
    r.raise_for_status()
    return parse(r.text)


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def bob() -> Iterator:
    hub = login(USER, PASSWORD)
    yield hub
    if hub.server(SERVER):
        hub.stop(SERVER)


def test_metrics_through_the_proxy_move_when_a_slurm_server_starts(kube: client.CoreV1Api, bob) -> None:
    assert requests.get(f"{HUB_URL}/hub/metrics", timeout=30).status_code == 403
    token = metrics_token(kube)
    before = scrape(token)
    running = value(before, "hpchub_servers", **CELL, state="running")
    waits = value(before, "hpchub_spawn_queue_wait_seconds_count", **CELL)
    starts = value(before, "hpchub_spawn_server_start_seconds_count", **CELL, backend="slurm")

    bob.start(SERVER)
    during = scrape(token)
    assert value(during, "hpchub_servers", **CELL, state="running") == running + 1
    assert value(during, "hpchub_spawn_queue_wait_seconds_count", **CELL) == waits + 1
    assert value(during, "hpchub_spawn_server_start_seconds_count", **CELL, backend="slurm") == starts + 1
    assert value(during, "hpchub_ssh_connections", system="mini") >= 1

    bob.stop(SERVER)
    after = wait_for(
        "the stopped server gone from hpchub_servers",
        lambda: (s := scrape(token)) and value(s, "hpchub_servers", **CELL, state="running") == running and s,
        timeout=60,
    )
    assert value(after, "hpchub_spawn_queue_wait_seconds_count", **CELL) == waits + 1


def run_in(kube: client.CoreV1Api, namespace: str, name: str, image: str) -> None:
    body = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app": name}),
        spec=client.V1PodSpec(
            restart_policy="Never",
            termination_grace_period_seconds=0,
            containers=[
                client.V1Container(
                    name="main", image=image, image_pull_policy="Never", command=["sleep", "600"]
                )
            ],
        ),
    )
    kube.create_namespaced_pod(namespace, body)
    wait_for(
        f"pod {namespace}/{name} running",
        lambda: kube.read_namespaced_pod(name, namespace).status.phase == "Running",
        timeout=120,
    )


FETCH = (
    "import sys, urllib.request\n"
    "req = urllib.request.Request(sys.argv[1], headers={'Authorization': 'token ' + sys.argv[2]})\n"
    "body = urllib.request.urlopen(req, timeout=10).read().decode()\n"
    "print('hpchub_servers' in body)\n"
)


def test_prometheus_namespace_scrapes_the_hub_directly_and_others_cannot(kube: client.CoreV1Api) -> None:
    image = pods(kube, "app.kubernetes.io/component=hub")[0].spec.containers[0].image
    hub_host = f"{RELEASE}-hub.{NAMESPACE}"
    kube.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=MONITORING)))
    try:
        run_in(kube, MONITORING, "prometheus", image)
        # The allowed namespace reaches the hub's port and reads the metrics with the token.
        out = outside_exec(kube, "prometheus", ["python3", "-c", CONNECT, hub_host, "8081"], MONITORING)
        assert out.strip().startswith("open"), out
        url = f"http://{hub_host}:8081/hub/metrics"
        out = outside_exec(kube, "prometheus", ["python3", "-c", FETCH, url, metrics_token(kube)], MONITORING)
        assert out.strip() == "True", out
        # The same pod without the token gets nothing.
        out = outside_exec(kube, "prometheus", ["python3", "-c", FETCH, url, "not-the-token"], MONITORING)
        assert "403" in out, out
    finally:
        kube.delete_namespace(MONITORING, grace_period_seconds=0)
    # A namespace that is not listed is refused the same port:
    # test_30_network_policy.py::test_pod_outside_the_release_cannot_reach_the_hub.
