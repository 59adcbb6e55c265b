#!/usr/bin/env python3
"""Generate docs/rules.md (what each install-time rule id means) from tests/chart/rules.yaml,
the table the parity test runs against the chart and the hub's loader. `--check` fails
when docs/rules.md is stale."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "tests/chart/rules.yaml"
DOC_OUT = ROOT / "docs/rules.md"

HEAD = """\
# Rules between values keys

<!-- Generated from tests/chart/rules.yaml by hack/gen-rules.py (make schema); do not edit. -->

The values schema checks each key alone; these rules check keys against each other. When
values break one, `helm install` (and `helm upgrade`, `helm template`) stops with the
rule's id first in the message, naming the key and what to write instead:

```
Error: execution error at (hpchub/templates/hub/secret-config.yaml:1:4): HPCHUB-R008 hub.connectBack.host: required when hub.connectBack.type is NodePort (the name or address login and compute nodes use to reach the hub API)
```

Rules marked *chart and hub* are also checked by the hub when it starts, with the same id
and words (in its log, and the pod restarts): for a hub configured without the chart, or
values that reached it another way. Rules marked *chart* are about what only the chart
makes (NetworkPolicies, Services, the proxy's TLS, the pods' environment and files).

Each rule below shows one set of values it refuses (over an otherwise working site's
values); the chart's tests install exactly these and check that both sides refuse them.
"""


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on ``base``, maps merged key by key (as Helm merges values files)."""
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merged(out[key], value) if both else value
    return out


def section(rule_id: str, rule: dict[str, Any], bases: dict[str, Any]) -> str:
    where = "chart and hub" if rule["side"] == "both" else "chart"
    # The row's values over its base (a system or an authenticator it breaks a rule of).
    example = merged(bases[rule["over"]], rule["values"]) if rule.get("over") else rule["values"]
    lines = [
        f"## {rule_id}",
        "",
        f"`{rule['key']}`: {rule['says']}",
        "",
        f"Checked by: {where}." + (f" {rule['why']}" if rule.get("why") else ""),
        "",
        "Refused, for example:",
        "",
        "```yaml",
        yaml.safe_dump(example, sort_keys=False, default_flow_style=False).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def render() -> str:
    table = yaml.safe_load(SRC.read_text())
    rules = table["rules"]
    index = ["| id | key | checked by |", "| --- | --- | --- |"]
    for rule_id, rule in rules.items():
        where = "chart and hub" if rule["side"] == "both" else "chart"
        index.append(f"| [{rule_id}](#{rule_id.lower()}) | `{rule['key']}` | {where} |")
    return (
        HEAD
        + "\n"
        + "\n".join(index)
        + "\n\n"
        + "\n".join(section(i, r, table["bases"]) for i, r in rules.items())
    )


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        if not DOC_OUT.is_file() or DOC_OUT.read_text() != text:
            print(f"{DOC_OUT.relative_to(ROOT)} is stale: run make schema", file=sys.stderr)
            return 1
        return 0
    DOC_OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
