"""Defaults an operator coming from z2jh expects: no hub PDB blocking node drains, image
tags from the chart's appVersion (one place to bump), DNS only to the cluster's DNS."""

from __future__ import annotations

import tomllib

import pytest
import yaml

import hpchub

from .helm import CHART, CONFIG, ROOT, find, render

MINIMAL = CONFIG / "values-minimal.yaml"
APP_VERSION = str(yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"])


def test_hub_pdb_is_off_by_default_and_can_be_turned_on() -> None:
    docs = render([MINIMAL])
    assert not [
        d for d in docs if d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"] == "t-hpchub-hub"
    ]
    pdb = find(render([MINIMAL], ["hub.pdb.enabled=true"]), "PodDisruptionBudget", "t-hpchub-hub")
    assert pdb["spec"]["minAvailable"] == 1


def _images(docs: list[dict]) -> dict[str, str]:
    out = {}
    for d in docs:
        spec = (d.get("spec") or {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []):
            out[f"{d['metadata']['name']}/{c['name']}"] = c["image"]
    return out


def test_image_tags_default_to_the_chart_app_version() -> None:
    images = _images(render([MINIMAL]))
    assert images["t-hpchub-hub/hub"] == f"hpchub/hub:{APP_VERSION}"
    assert images["t-hpchub-proxy/chp"] == f"hpchub/proxy:{APP_VERSION}"
    assert images["t-hpchub-stop-servers/stop-servers"] == f"hpchub/hub:{APP_VERSION}"


def test_an_explicit_image_tag_wins() -> None:
    images = _images(
        render([MINIMAL], ["hub.image.tag=2026.11.1", "proxy.image.repository=reg.example.org/chp"])
    )
    assert images["t-hpchub-hub/hub"] == "hpchub/hub:2026.11.1"
    assert images["t-hpchub-proxy/chp"] == f"reg.example.org/chp:{APP_VERSION}"


def test_spin_image_tag_defaults_to_the_chart_app_version_in_the_loader() -> None:
    from traitlets.config import Config

    from hpchub.config import configure
    from tests.unit.test_config import mounted_values

    c = Config()
    configure(c, mounted_values("values-minimal.yaml"), env={"HPCHUB_DUMMY_PASSWORD": "change-me"})
    assert c.DispatchSpawner.spin["image"]["tag"] == APP_VERSION
    from hpchub.spawners.spin import image_for

    assert image_for(c.DispatchSpawner.spin, None) == f"hpchub/singleuser:{APP_VERSION}"


def test_python_package_version_is_the_chart_app_version() -> None:
    # Chart.yaml is where versions are bumped; the hub's package must say the same.
    pyproject = tomllib.loads((ROOT / "images/hub/pyproject.toml").read_text())
    assert hpchub.__version__ == APP_VERSION, "bump hpchub/__init__.py with Chart.yaml's appVersion"
    assert pyproject["project"]["version"] == APP_VERSION, "bump images/hub/pyproject.toml too"


@pytest.mark.parametrize("values", ["values-minimal.yaml", "values-dev.yaml", "values-nersc-example.yaml"])
def test_dns_egress_goes_to_the_cluster_dns_only(values: str) -> None:
    policies = [d for d in render([CONFIG / values]) if d["kind"] == "NetworkPolicy"]
    assert {p["metadata"]["name"] for p in policies} >= {"t-hpchub-hub", "t-hpchub-proxy"}
    for p in policies:
        dns_rules = [r for r in p["spec"]["egress"] if {"port": 53, "protocol": "UDP"} in r.get("ports", [])]
        assert dns_rules, p["metadata"]["name"]
        for rule in dns_rules:
            # Never "port 53 to anywhere": a pod could tunnel data out through any resolver.
            assert rule["to"] == [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }
            ], p["metadata"]["name"]
        # No other rule opens port 53 (or every port), whatever its peers: every rule is
        # checked, those with a `to:` too (tests/chart/test_network_policy.py: every flow).
        for rule in p["spec"]["egress"]:
            if rule in dns_rules:
                continue
            assert rule.get("ports"), rule
            for port in rule["ports"]:
                assert "port" in port, rule
                assert not port["port"] <= 53 <= port.get("endPort", port["port"]), rule


def test_dns_servers_are_configurable_for_node_local_dns() -> None:
    docs = render(
        [MINIMAL],
        ["clusterDNS.cidrs[0]=169.254.20.10/32", "clusterDNS.podLabels.k8s-app=coredns"],
    )
    rule = next(
        r
        for r in find(docs, "NetworkPolicy", "t-hpchub-hub")["spec"]["egress"]
        if {"port": 53, "protocol": "UDP"} in r.get("ports", [])
    )
    assert rule["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "coredns"}}
    assert rule["to"][1] == {"ipBlock": {"cidr": "169.254.20.10/32"}}
