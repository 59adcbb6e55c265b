"""Every cross-key rule is refused by both sides, with the same id: the chart's validation
template at ``helm template``/``helm install``, and the hub's loader at start
(hpchub.config.configure). One row per rule id in tests/chart/rules.yaml; a rule written on
one side only, or an id missing from the table, fails here.

The helm runs are independent processes: they run in parallel, once per module."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from traitlets.config import Config

from hpchub.config import configure
from hpchub.values import ConfigError
from tests.chart.helm import CHART, CONFIG, ROOT, helm, template_args
from tests.harness.values import site_values

TABLE_FILE = Path(__file__).with_name("rules.yaml")
TABLE = yaml.safe_load(TABLE_FILE.read_text())
RULES: dict[str, dict[str, Any]] = TABLE["rules"]
MINIMAL = CONFIG / "values-minimal.yaml"
VALIDATE = CHART / "templates/_helpers-validate.tpl"
PACKAGE = ROOT / "images/hub/hpchub"
RULE_ID = re.compile(r"HPCHUB-R\d{3}")
# Checks of hub.existingSecret's content (helm reads the Secret with lookup at install;
# the hub reads it mounted, hpchub/hubsecrets.py): not values, so no rule id.
SECRET_CONTENT_CHECKS = "hpchub.validateExistingSecret"


def layers(rule: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The values over the chart's defaults, in order: minimal, the row's base, the row."""
    base = [TABLE["bases"][rule["over"]]] if rule.get("over") else []
    return [yaml.safe_load(MINIMAL.read_text()), *base, rule["values"]]


def values_files(rule_id: str, rule: Mapping[str, Any], directory: Path) -> list[Path]:
    files = []
    for i, layer in enumerate(layers(rule)):
        f = directory / f"{rule_id}-{i}.yaml"
        f.write_text(yaml.safe_dump(layer))
        files.append(f)
    return files


def helm_refusal(files: list[Path]) -> str:
    """The chart's message (after helm's 'execution error at (...): '), or what else happened."""
    proc = helm(*template_args(files), check=False)
    if proc.returncode == 0:
        return "(helm template succeeded)"
    found = re.search(r"execution error at \([^)]*\): (.*)", proc.stderr)
    return found.group(1).strip() if found else proc.stderr.strip()


def loader_refusal(rule: Mapping[str, Any]) -> str:
    """The loader's ConfigError on the same values (the chart's defaults under them), or
    '(accepted)'. The secrets stay in these values (the chart would pass them to the hub
    in its environment), so the environment is empty."""
    try:
        configure(Config(), site_values(*layers(rule)), env={})
    except ConfigError as e:
        return str(e)
    return "(accepted)"


@pytest.fixture(scope="module")
def chart_says(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("rules")
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        said = dict(
            zip(
                RULES,
                pool.map(lambda item: helm_refusal(values_files(*item, directory)), RULES.items()),
                strict=True,
            )
        )
    print(f"{len(RULES)} helm template runs in {time.monotonic() - started:.1f} s")
    return said


@pytest.mark.parametrize("rule_id", list(RULES))
def test_both_sides_refuse_the_bad_values_with_the_rule_id(rule_id: str, chart_says: dict[str, str]) -> None:
    rule = RULES[rule_id]
    chart = chart_says[rule_id]
    assert chart.startswith(rule_id + " "), f"helm template: {chart}"
    loader = loader_refusal(rule)
    if rule["side"] == "both":
        # The same rule in the same words (the chart quotes with %q, the loader likewise).
        assert loader == chart, f"loader: {loader}\nchart:  {chart}"
    else:
        assert rule["side"] == "chart" and rule.get("why"), "side is both or chart (with why)"
        assert not loader.startswith(rule_id), f"the loader checks {rule_id} too: make the row side: both"


def chart_ids() -> list[str]:
    """The rule id each `fail` of the validation template starts with, in file order."""
    ids, define = [], ""
    for line in VALIDATE.read_text().splitlines():
        named = re.search(r'define "([^"]+)"', line)
        define = named.group(1) if named else define
        failing = re.search(r'fail (?:\(printf )?"([^"]*)', line)
        if failing and define != SECRET_CONTENT_CHECKS:
            found = RULE_ID.match(failing.group(1))
            assert found, f"{define}: a fail without a rule id: {line.strip()}"
            ids.append(found.group(0))
    return ids


def python_ids() -> set[str]:
    return {m for path in PACKAGE.rglob("*.py") for m in RULE_ID.findall(path.read_text())}


def test_every_chart_rule_is_in_the_table_once() -> None:
    ids = chart_ids()
    assert len(ids) == len(set(ids)), "one fail per rule id"
    assert set(ids) == set(RULES)


def test_every_loader_rule_is_in_the_table_and_on_its_side() -> None:
    ids = python_ids()
    assert ids - set(RULES) == set(), "ids only the loader knows"
    assert {i for i, r in RULES.items() if r["side"] == "both"} == ids


def test_table_ids_are_well_formed_and_in_order() -> None:
    assert all(RULE_ID.fullmatch(i) for i in RULES)
    assert list(RULES) == sorted(RULES)
    for rule_id, rule in RULES.items():
        assert {"key", "says", "side", "values"} <= set(rule), rule_id
        assert rule.get("over") in (None, *TABLE["bases"]), rule_id


def test_rules_doc_is_generated_from_the_table() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "hack/gen-rules.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def _quoted_error(doc: str, rule_id: str) -> str:
    """The helm error line a doc quotes for ``rule_id``, without helm's location prefix."""
    (line,) = [
        ln for ln in (ROOT / doc).read_text().splitlines() if ln.startswith("Error:") and rule_id in ln
    ]
    return line.split("): ", 1)[1]


def test_the_rule_list_quotes_what_helm_prints(chart_says: dict[str, str]) -> None:
    assert _quoted_error("docs/rules.md", "HPCHUB-R008") == chart_says["HPCHUB-R008"]


def test_the_operator_guide_quotes_what_helm_prints(tmp_path: Path) -> None:
    over = tmp_path / "nodes.yaml"
    over.write_text(
        yaml.safe_dump({"systems": {"perlmutter": {"levels": {"exclusive": {"slurm": {"nodes": 99}}}}}})
    )
    said = helm_refusal([CONFIG / "values-nersc-example.yaml", over])
    assert _quoted_error("docs/operator-guide.md", "HPCHUB-R038") == said
