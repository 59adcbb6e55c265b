"""/hub/metrics in the chart (issue 11 point 7): the token Prometheus uses, the Service
annotations, an optional ServiceMonitor, and the NetworkPolicy rule for a scraper. The
hub's side is tests/integration/test_metrics.py (real hub) and tests/e2e/test_70_metrics.py."""

from __future__ import annotations

import base64

import kubernetes_validate
import pytest

from tests.unit.test_config import configured

from .helm import CONFIG, find, render, render_error

MINIMAL = CONFIG / "values-minimal.yaml"
DEV = CONFIG / "values-dev.yaml"
MONITOR = ["hub.metrics.serviceMonitor.enabled=true"]


def test_hub_service_is_annotated_for_prometheus_and_operators_may_override(tmp_path) -> None:
    svc = find(render([MINIMAL], ["hub.baseUrl=/jupyter/"]), "Service", "t-hpchub-hub")
    assert svc["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/path": "/jupyter/hub/metrics",
        "prometheus.io/port": "8081",
    }
    extra = tmp_path / "svc.yaml"
    extra.write_text('hub:\n  service:\n    annotations: {prometheus.io/scrape: "false", team: hpc}\n')
    svc = find(render([MINIMAL, extra]), "Service", "t-hpchub-hub")
    assert svc["metadata"]["annotations"]["prometheus.io/scrape"] == "false"
    assert svc["metadata"]["annotations"]["team"] == "hpc"
    assert svc["metadata"]["annotations"]["prometheus.io/path"] == "/hub/metrics"


def test_no_service_monitor_unless_asked_for() -> None:
    assert not [d for d in render([MINIMAL]) if d["kind"] == "ServiceMonitor"]


def test_service_monitor_scrapes_only_the_hub_service_with_the_metrics_token() -> None:
    docs = render([DEV], [*MONITOR, "hub.metrics.serviceMonitor.labels.release=kube-prometheus-stack"])
    sm = find(docs, "ServiceMonitor", "t-hpchub-hub")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    selector = sm["spec"]["selector"]["matchLabels"]
    hub_svc = find(docs, "Service", "t-hpchub-hub")
    connect = find(docs, "Service", "t-hpchub-hub-connect")  # the dev values' NodePort
    assert selector.items() <= hub_svc["metadata"]["labels"].items()
    assert not selector.items() <= connect["metadata"]["labels"].items()  # not scraped twice
    [ep] = sm["spec"]["endpoints"]
    assert ep["port"] == hub_svc["spec"]["ports"][0]["name"]
    assert ep["path"] == "/hub/metrics"
    cred = ep["authorization"]["credentials"]
    secret = find(docs, "Secret", cred["name"])
    token = base64.b64decode(secret["data"][cred["key"]]).decode()
    assert len(token) == 64
    # The hub gets the same token from the same key.
    hub = find(docs, "Deployment", "t-hpchub-hub")["spec"]["template"]["spec"]["containers"][0]
    ref = next(e for e in hub["env"] if e["name"] == "HPCHUB_METRICS_TOKEN")["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == (cred["name"], cred["key"])


def test_service_monitor_with_gitops_secret_and_without_authentication() -> None:
    sm = find(render([DEV], [*MONITOR, "hub.existingSecret=site-tokens"]), "ServiceMonitor", "t-hpchub-hub")
    assert sm["spec"]["endpoints"][0]["authorization"]["credentials"]["name"] == "site-tokens"
    sm = find(render([DEV], [*MONITOR, "hub.metrics.authenticate=false"]), "ServiceMonitor", "t-hpchub-hub")
    assert "authorization" not in sm["spec"]["endpoints"][0]


def test_scraper_namespace_may_reach_the_hub_port(tmp_path) -> None:
    extra = tmp_path / "metrics.yaml"
    extra.write_text(
        "hub:\n  metrics:\n    ingressFrom:\n"
        "      - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}\n"
    )
    docs = render([MINIMAL, extra])
    np = find(docs, "NetworkPolicy", "t-hpchub-hub")
    rule = next(
        r
        for r in np["spec"]["ingress"]
        if r.get("from")
        == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    )
    assert rule["ports"] == [{"port": "http"}]
    kubernetes_validate.validate(np, "1.34.0", strict=True)
    # Without it, no rule admits another namespace.
    plain = find(render([MINIMAL]), "NetworkPolicy", "t-hpchub-hub")
    assert not [p for r in plain["spec"]["ingress"] for p in r.get("from", []) if "namespaceSelector" in p]


def test_metrics_service_may_read_metrics_and_nothing_else() -> None:
    c = configured("values-minimal.yaml")
    assert c.JupyterHub.authenticate_prometheus is True
    [svc] = [s for s in c.JupyterHub.services if s["name"] == "metrics"]
    assert len(svc["api_token"]) == 64 and "command" not in svc and "url" not in svc
    [role] = [r for r in c.JupyterHub.load_roles if r["name"] == "metrics"]
    assert role["scopes"] == ["read:metrics"] and role["services"] == ["metrics"]
    c = configured("values-minimal.yaml", ["hub.metrics.authenticate=false"])
    assert c.JupyterHub.authenticate_prometheus is False


@pytest.mark.parametrize(
    ("sets", "key"),
    [
        (["hub.metrics.serviceMonitor.interval=30 seconds"], "/hub/metrics/serviceMonitor/interval"),
        (["hub.metrics.authenticate=no"], "/hub/metrics/authenticate"),
        (["hub.metrics.scrape=true"], "/hub/metrics"),
    ],
)
def test_bad_metrics_values_are_refused_naming_the_key(sets: list[str], key: str) -> None:
    assert key in render_error([MINIMAL], sets)
