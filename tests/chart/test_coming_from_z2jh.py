"""docs/coming-from-z2jh.md maps every key of Zero to JupyterHub's values (its top-level
keys and the keys one level below, from tests/chart/z2jh_values_keys.txt) to hpchub: each
row names z2jh keys that exist in z2jh's schema, and either hpchub keys that exist in
hpchub's schema ("same" when the name is unchanged) or says "refused because ..." or
"not applicable because ..."."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .helm import CHART, ROOT
from .test_operator_docs import schema_has

PAGE = ROOT / "docs/coming-from-z2jh.md"
Z2JH_KEYS = [
    line.strip()
    for line in (Path(__file__).parent / "z2jh_values_keys.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]
SCHEMA: dict[str, Any] = yaml.safe_load((CHART / "values.schema.yaml").read_text())
# A backticked key: dotted words, `<placeholder>` segments, a `.*` tail; `: value` is ignored.
KEY = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)((\.[A-Za-z0-9_<>-]+)*)(\.\*)?")
VERDICTS = ("refused because ", "not applicable because ")
# Keys of the hub's Secrets (hub.existingSecret, the chart's), which the page names beside
# values keys.
SECRET_KEYS = {
    "hub.cookie-secret",
    "hub.crypt-key",
    "proxy.token",
    "hub.uninstall-token",
    "hub.metrics-token",
}


def rows() -> list[tuple[int, list[str], str]]:
    """(line number, z2jh keys, hpchub cell) of every mapping table row."""
    out = []
    in_table = False
    for n, line in enumerate(PAGE.read_text().splitlines(), 1):
        if line.startswith("| z2jh | hpchub |"):
            in_table = True
            continue
        if not line.startswith("|"):
            in_table = False
            continue
        if not in_table or line.startswith("| ---"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 2, f"line {n}: a row has two cells: {line}"
        keys = [_key(t) for t in re.findall(r"`([^`]+)`", cells[0])]
        out.append((n, [k for k in keys if k], cells[1]))
    return out


def _key(text: str) -> str | None:
    m = KEY.match(text.split(":")[0].strip())
    return m.group(0) if m else None


def _normal(key: str) -> str:
    return re.sub(r"<[^>]+>", "<name>", key)


def in_z2jh(key: str) -> bool:
    key = _normal(key)
    if key in Z2JH_KEYS or key.removesuffix(".*") in Z2JH_KEYS:
        return True
    parts = key.split(".")
    return any(".".join(parts[:i]) + ".*" in Z2JH_KEYS for i in range(1, len(parts)))


def in_hpchub(key: str) -> bool:
    """Whether ``key`` is a path hpchub's schema accepts (`<x>` is any entry of a map;
    `.*` any key below)."""
    return schema_has(_normal(key.removesuffix(".*")))


def hpchub_keys(cell: str) -> list[str]:
    top = set(SCHEMA["properties"])
    keys = [_key(t) for t in re.findall(r"`([^`]+)`", cell)]
    return [k for k in keys if k and k.split(".")[0] in top and k not in SECRET_KEYS]


def test_every_z2jh_key_named_exists_in_z2jh() -> None:
    bad = [(n, k) for n, keys, _ in rows() for k in keys if not in_z2jh(k)]
    assert not bad, f"not keys of z2jh's values: {bad}"


def test_every_row_maps_to_hpchub_keys_or_says_why_not() -> None:
    problems = []
    for n, keys, cell in rows():
        assert keys, f"line {n}: no z2jh key"
        if cell.startswith(VERDICTS):
            continue
        if cell.startswith("same"):
            problems += [(n, k, "not in hpchub's schema") for k in keys if not in_hpchub(k)]
            continue
        mapped = hpchub_keys(cell)
        if not mapped:
            problems.append((n, cell, "names no hpchub key and is not 'refused/not applicable because'"))
        problems += [(n, k, "not in hpchub's schema") for k in mapped if not in_hpchub(k)]
    assert not problems, problems


def test_every_z2jh_top_level_and_second_level_key_is_on_the_page() -> None:
    named = [_normal(k) for _, keys, _ in rows() for k in keys]
    wanted = [k for k in Z2JH_KEYS if k.count(".") <= 1 and "*" not in k and "<" not in k]
    missing = [k for k in wanted if not any(n == k or n.startswith(k + ".") for n in named)]
    assert not missing, f"z2jh keys the page does not map: {missing}"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("hub.config.KubeSpawner.environment", True),
        ("spin.volumes.<name>.emptyDir", True),
        ("systems.<s>.singleuser.environment", True),
        ("hub.nosuch", False),
        ("culling.*", True),
        ("hub.networkPolicy.extraIngress", True),
        ("proxy.chp", False),
    ],
)
def test_the_checker_itself(key: str, expected: bool) -> None:
    assert in_hpchub(key) is expected
