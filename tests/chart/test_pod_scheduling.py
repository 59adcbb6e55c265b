"""Where the chart's pods run: one helper (``hpchub.podScheduling`` in _helpers.tpl) places
the hub, the proxy and the hub's uninstall hook from their component's values, so the same
values give the same placement, and no template spells the block out itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.chart.helm import CHART, CONFIG, find, render

MINIMAL = CONFIG / "values-minimal.yaml"
SCHEDULING_KEYS = ("priorityClassName", "affinity", "nodeSelector", "tolerations")
# A placement that uses every key, as a site pinning its core pods would write it.
PLACEMENT = {
    "priorityClassName": "hpc-core",
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "node-role", "operator": "In", "values": ["core"]}]}
                ]
            }
        },
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 10,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "hpchub"}},
                    },
                }
            ]
        },
    },
    "nodeSelector": {"kubernetes.io/os": "linux", "node-role": "core"},
    "tolerations": [
        {"key": "core", "operator": "Equal", "value": "true", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 30},
    ],
}


def pod_specs(docs: list[dict]) -> dict[str, dict]:
    return {
        "hub": find(docs, "Deployment", "t-hpchub-hub")["spec"]["template"]["spec"],
        "proxy": find(docs, "Deployment", "t-hpchub-proxy")["spec"]["template"]["spec"],
        "uninstall": find(docs, "Job", "t-hpchub-stop-servers")["spec"]["template"]["spec"],
    }


def placement(spec: dict) -> dict:
    return {k: spec[k] for k in SCHEDULING_KEYS if k in spec}


def values_file(tmp_path: Path, values: dict) -> Path:
    f = tmp_path / "placement.yaml"
    f.write_text(yaml.safe_dump(values))
    return f


def test_hub_proxy_and_hook_render_the_same_placement_for_the_same_values(tmp_path: Path) -> None:
    f = values_file(tmp_path, {"hub": PLACEMENT, "proxy": PLACEMENT, "imagePullSecrets": ["site-registry"]})
    specs = pod_specs(render([MINIMAL, f]))
    for name, spec in specs.items():
        assert placement(spec) == PLACEMENT, name
        assert spec["imagePullSecrets"] == [{"name": "site-registry"}], name


def test_each_component_is_placed_by_its_own_values(tmp_path: Path) -> None:
    proxy_only = {"nodeSelector": {"edge": "yes"}, "tolerations": [{"key": "edge", "operator": "Exists"}]}
    f = values_file(tmp_path, {"hub": PLACEMENT, "proxy": proxy_only})
    specs = pod_specs(render([MINIMAL, f]))
    assert placement(specs["hub"]) == PLACEMENT
    # The uninstall hook runs the hub's image: it goes where the hub may go.
    assert placement(specs["uninstall"]) == PLACEMENT
    assert placement(specs["proxy"]) == proxy_only


def test_no_placement_keys_without_values() -> None:
    for name, spec in pod_specs(render([MINIMAL])).items():
        assert placement(spec) == {}, name
        assert "imagePullSecrets" not in spec, name


@pytest.mark.parametrize(
    "template", ["hub/deployment.yaml", "proxy/deployment.yaml", "hub/uninstall-job.yaml"]
)
def test_templates_use_the_helper_instead_of_spelling_the_block(template: str) -> None:
    text = (CHART / "templates" / template).read_text()
    assert 'include "hpchub.podScheduling"' in text
    for key in (*SCHEDULING_KEYS, "imagePullSecrets"):
        assert not re.search(rf"^\s*{key}:", text, flags=re.M), f"{template} writes {key}: itself"
