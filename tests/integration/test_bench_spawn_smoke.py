"""`make bench`'s spawn bench (tests/bench/bench_spawn.py: hub spawn time against the same
server started by hand) at n=1, so it keeps working between full runs. No timing is
asserted: the bench prints figures; this checks that every spawn of both kinds on both
levels ran the real server, that each figure of its breakdown was measured (the hub's
spawn steps, the run directories' files, slurmctld's and slurmd's logs) and that the table
went into the Markdown file with the command that made it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_bench_spawn_runs_end_to_end_at_n_1(tmp_path: Path) -> None:
    out = tmp_path / "spawn.json"
    doc = tmp_path / "performance.md"
    doc.write_text("# t\n\n<!-- bench-spawn:start -->\n<!-- bench-spawn:end -->\n")
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "tests" / "bench" / "bench_spawn.py"),
            "--n", "1", "--json", str(out), "--write", str(doc),
        ],
        cwd=REPO,
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    runs = results["runs"]
    assert set(runs) == {"ssh", "slurm"}
    for level, kinds in runs.items():
        (hub,) = kinds["hub"]
        (hand,) = kinds["hand"]
        # Both started the real server: its runtime file (jupyter_server's) was written.
        for run in (hub, hand):
            assert run["total"] > 0 and run["runtime_file"] is not None, (level, run)
        # The hub's own account of the spawn (spawnsteps.py) and JupyterHub's were read.
        assert hub["steps"] and "route" in hub["steps"] and hub["hub_took"] > 0, hub
        if level == "ssh":
            assert "launch" in hub["steps"] and hub["launcher_started"] and hand["launcher_started"], (
                hub,
                hand,
            )
        else:
            assert "submit" in hub["steps"] and hub["address_file"], hub
            for run in (hub, hand):  # slurmctld's and slurmd's own times of the job
                assert {"submitted", "allocated", "launched"} <= run.keys(), run
    assert "SchedulerParameters" in results["slurm_settings"]
    # The run's first spawn (cold: the SSH handshake, the identity lookup) is kept apart.
    assert {"credentials", "login host"} <= results["first"]["ssh"]["steps"].keys(), results["first"]
    text = doc.read_text()
    assert "| SSH |" in text and "| Slurm |" in text and "bench_spawn.py --n 1" in text, text
    assert "load average" in text
    # The by-hand runs cleaned up after themselves.
    hand = Path(os.path.expanduser("~hpcalice")) / ".hpchub" / "hand"
    left = [n for k in runs.values() for n in (k["hand"][0]["name"],) if (hand / n).exists()]
    assert not left, left
