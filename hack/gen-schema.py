#!/usr/bin/env python3
"""Generate chart/hpchub/values.schema.json and docs/values-reference.md from
chart/hpchub/values.schema.yaml (the one source). `--check` fails when either is stale."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "chart/hpchub/values.schema.yaml"
JSON_OUT = ROOT / "chart/hpchub/values.schema.json"
DOC_OUT = ROOT / "docs/values-reference.md"


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Merge a $ref target under the node's own keys (its description wins)."""
    if "$ref" in node:
        target = schema["definitions"][node["$ref"].rsplit("/", 1)[-1]]
        merged = dict(resolve(schema, target))
        merged.update({k: v for k, v in node.items() if k != "$ref"})
        return merged
    return node


def type_of(node: dict[str, Any]) -> str:
    t = node.get("type")
    if isinstance(t, list):
        return " or ".join(t)
    if t:
        return str(t)
    return "string" if "anyOf" in node else "any"


def walk(schema: dict[str, Any], node: dict[str, Any], path: str, rows: list[str]) -> None:
    node = resolve(schema, node)
    if path:
        extra = []
        if "enum" in node:
            extra.append("one of " + ", ".join(f"`{e}`" for e in node["enum"]))
        if "pattern" in node:
            extra.append(f"pattern `{node['pattern']}`")
        desc = " ".join(node.get("description", "").split())
        if extra:
            desc += " (" + "; ".join(extra) + ")"
        desc = desc.replace("|", "\\|")
        rows.append(f"| `{path}` | {type_of(node)} | {desc} |")
    for key, child in (node.get("properties") or {}).items():
        walk(schema, child, f"{path}.{key}" if path else key, rows)
    addl = node.get("additionalProperties")
    if isinstance(addl, dict) and ("properties" in resolve(schema, addl) or "$ref" in addl):
        walk(schema, addl, f"{path}.<name>", rows)
    items = node.get("items")
    if isinstance(items, dict) and "properties" in resolve(schema, items):
        walk(schema, items, f"{path}[]", rows)


def render() -> tuple[str, str]:
    schema = yaml.safe_load(SRC.read_text())
    js = json.dumps(schema, indent=2, sort_keys=False) + "\n"
    rows = ["| key | type | description |", "| --- | --- | --- |"]
    walk(schema, schema, "", rows)
    doc = (
        "# Values reference\n\n"
        "Generated from `chart/hpchub/values.schema.yaml` by `make schema`; do not edit by hand.\n"
        "Defaults are in `chart/hpchub/values.yaml`. `<name>` stands for a key you choose.\n\n"
        + "\n".join(rows)
        + "\n"
    )
    return js, doc


def main() -> int:
    js, doc = render()
    if "--check" in sys.argv:
        stale = [p for p, text in ((JSON_OUT, js), (DOC_OUT, doc)) if not p.exists() or p.read_text() != text]
        for p in stale:
            print(f"{p.relative_to(ROOT)} is stale: run `make schema`", file=sys.stderr)
        return 1 if stale else 0
    JSON_OUT.write_text(js)
    DOC_OUT.write_text(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
