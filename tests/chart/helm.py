"""Run the real helm binary against the chart (hack/install-deps.sh installs it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "chart/hpchub"
CONFIG = ROOT / "config"
HELM = shutil.which("helm", path=f"{ROOT / '.tools/bin'}{os.pathsep}{os.environ.get('PATH', '')}")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert HELM, "helm not found: run hack/install-deps.sh"
    proc = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def template_args(
    values_files: Iterable[str | Path] = (),
    sets: Sequence[str] = (),
    chart: Path = CHART,
    release: str = "t",
    namespace: str = "hpc",
) -> list[str]:
    args = ["template", release, str(chart), "--namespace", namespace]
    for f in values_files:
        args += ["-f", str(f)]
    for s in sets:
        args += ["--set", s]
    return args


def render(
    values_files: Iterable[str | Path] = (), sets: Sequence[str] = (), **kw: Any
) -> list[dict[str, Any]]:
    out = helm(*template_args(values_files, sets, **kw)).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def render_error(values_files: Iterable[str | Path] = (), sets: Sequence[str] = ()) -> str:
    """Render expecting failure; returns helm's error text."""
    proc = helm(*template_args(values_files, sets), check=False)
    assert proc.returncode != 0, f"helm template succeeded but should have failed:\n{proc.stdout[:2000]}"
    return proc.stderr


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for d in docs:
        if d["kind"] == kind and d["metadata"]["name"] == name:
            return d
    raise AssertionError(f"no {kind} {name} in {[(d['kind'], d['metadata']['name']) for d in docs]}")


def guide_block(marker: str) -> str:
    """The operator guide's ```sh block containing ``marker``."""
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "docs/operator-guide.md").read_text(), flags=re.S)
    (block,) = [b for b in blocks if marker in b]
    return block


def run_bash(script: str, env: Mapping[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """``script`` as an operator's bash runs it, stopping at the first failing command."""
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
