"""The SSH backend's stop script, run by the login node's real /bin/sh (dash on Debian) as
a test user, against a real process group: nothing of the group may survive a stop."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from hpchub.launcher import stop_script
from tests.harness import minihpc

pytestmark = pytest.mark.integration

USER = "hpccarol"


def group_members(pgid: int) -> list[int]:
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.getpgid(int(p)) == pgid:
                    out.append(int(p))
            except ProcessLookupError:
                continue
    return out


def test_stop_ends_a_kernel_that_ignores_term(tmp_path) -> None:
    minihpc.ensure_users((USER,))
    # A "server" leading its own process group (as the launcher's setsid makes it), with a
    # "kernel" child that ignores TERM, like a busy or badly behaved kernel.
    leader = subprocess.Popen(
        ["su", USER, "-c", 'exec setsid /bin/sh -c \'sh -c "trap \\"\\" TERM; sleep 300" & wait\''],
        stdin=subprocess.DEVNULL,
    )
    try:
        pid = minihpc.wait_for(
            lambda: next(
                (
                    int(p)
                    for p in minihpc.run(
                        "pgrep", "-u", USER, "-f", "^/bin/sh -c sh -c", check=False
                    ).stdout.split()
                    if os.getpgid(int(p)) == int(p)
                ),
                None,
            ),
            20,
            "the process group leader",
        )
        minihpc.wait_for(lambda: len(group_members(pid)) >= 3, 20, "the kernel in the group")
        r = subprocess.run(
            ["su", USER, "-c", "/bin/sh -s"],
            input=stop_script(pid, 1.0),
            capture_output=True,
            text=True,
            timeout=60,
        )
        time.sleep(0.5)
        left = group_members(pid)
        assert r.returncode == 0 and not left, f"left in the group: {left} ({r.stderr})"
    finally:
        for p in group_members(pid) if "pid" in locals() else []:
            os.kill(p, signal.SIGKILL)
        leader.kill()
