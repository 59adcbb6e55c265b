"""`make bench-scale` at a small N, so the bench keeps working between full runs (issue 10:
"CI may run a small N as a smoke test"). No timing is asserted: the bench prints figures;
this only checks that every spawn succeeded, the hub restart kept every server and each
figure of the table was measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_bench_scale_runs_end_to_end_at_a_small_n(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    doc = tmp_path / "performance.md"
    doc.write_text("# t\n\n<!-- bench-scale:start -->\n<!-- bench-scale:end -->\n")
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "tests" / "bench" / "bench_scale.py"),
            "--users", "3", "--peers", "0", "--wave", "4", "--interval", "10",
            "--small-steady", "12", "--steady", "25",
            "--json", str(out), "--write", str(doc),
        ],
        cwd=REPO,
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    main = json.loads(out.read_text())["main"]
    assert main["failed"] == 0 and main["running"] == 6, main
    assert main["after_restart_running"] == 6 and main["after_restart_stopped"] == 0, main
    big = main["steady"]
    # Each figure was measured: the status board queried slurmctld, the console was loaded,
    # the hub's own request log was read, sshd was sampled.
    assert big["job_info_rpcs_per_min"] > 0 and big["home_p95"] > 0 and big["home_hub_p95"] > 0, big
    assert big["sshd_held_max"] >= 1, big
    text = doc.read_text()
    assert "| running servers reached |" in text and "bench_scale.py --users 3" in text, text
