"""The status account's forced command (config/login-node/hpchub-status-command): exactly
the three status queries, with numbers that are numbers (issue 16, item 8)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.harness.loginnode import LOGIN_NODE, load_script

SCRIPT = LOGIN_NODE / "hpchub-status-command"
FORMAT = "%i|%T|%r|%S|%N|%u"


def load() -> ModuleType:
    return load_script("hpchub-status-command")


def squeue(ids: str) -> list[str]:
    return ["squeue", "-h", "-t", "all", "-j", ids, "-o", FORMAT]


def test_the_three_queries_with_number_lists_are_allowed() -> None:
    cmd = load()
    assert cmd.allowed(squeue("1,22,4294967293"))
    assert cmd.allowed(["sacct", "-X", "-n", "-P", "-j", "7", "-o", "JobID,State,Reason,User"])
    assert cmd.allowed(["env", "LC_ALL=C", "ps", "-o", "pid=,euser:64=,lstart=", "-p", "1,2"])
    assert cmd.allowed(squeue(",".join(["4294967293"] * 10_000)))


@pytest.mark.parametrize(
    "ids",
    [
        "1\n",  # re.match with `$` let this through
        "1,2\n",
        "١٢",
        "１",
        "12345678901",
        ",".join(["1"] * 10_001),
        "1,,2",
        "1;id",
        "",
    ],
)
def test_anything_but_a_number_list_is_refused(ids: str) -> None:
    assert not load().allowed(squeue(ids))


def test_a_refused_request_exits_126_without_running_anything(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    for request in (
        f"squeue -h -t all -j '1\n' -o '{FORMAT}'",
        f"touch {marker}",
        "x" * 120_000,
    ):
        r = subprocess.run(
            [sys.executable, str(SCRIPT)],
            env={**os.environ, "SSH_ORIGINAL_COMMAND": request},
            capture_output=True,
            text=True,
        )
        assert r.returncode == 126 and "refused" in r.stderr, (request[:40], r)
    assert not marker.exists()
