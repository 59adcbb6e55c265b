"""The schema documents the chart: every field has a description, every object refuses
unknown keys, and the generated JSON schema and values reference are up to date."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import yaml

from .helm import CHART, ROOT

# Objects that pass Kubernetes structures through unchanged (tolerations, policy rules).
PASSTHROUGH = {
    "definitions.tolerations.items",
    "definitions.networkPolicyPeer",
    "definitions.networkPolicyIngressRules.items",
    "definitions.networkPolicyEgressRules.items",
    # Extension points passing JupyterHub or Kubernetes structures through (z2jh's names).
    ".properties.global",
    ".properties.custom",
    ".properties.hub.properties.config.additionalProperties",
    ".properties.hub.properties.extraEnv.items",
    ".properties.hub.properties.extraFiles.additionalProperties.properties.data",
    ".properties.hub.properties.services.additionalProperties",
    ".properties.hub.properties.loadRoles.additionalProperties",
    ".properties.hub.properties.affinity",
    ".properties.proxy.properties.affinity",
    "definitions.podSecurityContext",
    "definitions.containerSecurityContext",
    "definitions.kubernetesObject",
    "definitions.container",
    ".properties.hub.properties.config.additionalProperties.properties.extra_container_config",
    ".properties.hub.properties.config.additionalProperties.properties.extra_pod_config",
}


def _described(schema: dict[str, Any], node: dict[str, Any]) -> bool:
    """A field is described by its own text or by the definition it refers to."""
    if "description" in node:
        return True
    ref = node.get("$ref")
    return bool(ref) and "description" in schema["definitions"][ref.rsplit("/", 1)[-1]]


SCHEMA: dict[str, Any] = yaml.safe_load((CHART / "values.schema.yaml").read_text())


def _walk(node: Any, path: str, problems: list[str]) -> None:
    if not isinstance(node, dict):
        return
    if node.get("type") == "object" or "properties" in node:
        addl = node.get("additionalProperties")
        if addl is None or (addl is True and path not in PASSTHROUGH):
            problems.append(f"{path}: object without additionalProperties false or a schema")
    for key, child in (node.get("properties") or {}).items():
        p = f"{path}.properties.{key}"
        if not _described(SCHEMA, child):
            problems.append(f"{p}: no description")
        _walk(child, p, problems)
    for key in ("additionalProperties", "items"):
        child = node.get(key)
        if isinstance(child, dict):
            if "description" not in child and "$ref" not in child and child.get("type") == "object":
                problems.append(f"{path}.{key}: no description")
            _walk(child, f"{path}.{key}", problems)
    for key, child in (node.get("definitions") or {}).items():
        _walk(child, f"definitions.{key}", problems)


def test_every_field_has_a_description_and_every_object_refuses_unknown_keys() -> None:
    problems: list[str] = []
    _walk(SCHEMA, "", problems)
    assert problems == []


def _resolved(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    return {**SCHEMA["definitions"][ref.rsplit("/", 1)[-1]], **node} if ref else node


def _undescribed_defaults(value: Any, node: dict[str, Any], path: str, problems: list[str]) -> None:
    """Every key and list item under ``value`` (a default from values.yaml) has a schema
    node with a description; descends as deep as the defaults go."""
    node = _resolved(node)
    if isinstance(value, dict):
        for key, child in value.items():
            p = f"{path}.{key}" if path else str(key)
            if key in (node.get("properties") or {}):
                sub = node["properties"][key]
            elif isinstance(node.get("additionalProperties"), dict):
                sub = node["additionalProperties"]
                if not isinstance(child, dict | list):
                    continue  # an entry of a described map (e.g. resources.requests.cpu)
            elif node.get("additionalProperties") is True:
                continue  # passed through unchanged (e.g. Kubernetes structures)
            else:
                problems.append(f"{p}: not in the schema")
                continue
            if not _described(SCHEMA, sub):
                problems.append(f"{p}: no description")
            _undescribed_defaults(child, sub, p, problems)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for i, item in enumerate(value):
            _undescribed_defaults(item, node["items"], f"{path}[{i}]", problems)


def test_every_default_value_is_described_by_the_schema() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    problems: list[str] = []
    _undescribed_defaults(values, SCHEMA, "", problems)
    assert problems == []


def test_generated_json_schema_and_values_reference_are_in_sync() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "hack/gen-schema.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
