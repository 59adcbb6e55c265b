"""Users cannot reach each other (issue 8), HPC side: a hostile user with an ordinary
account on the login node plays against the real sshd, Slurm, hub and proxy.

Boundaries (docs/security.md): what a user's shell prints is capped; the notebook reaches
the hub API only through a socket its owner alone can open; the proxy's route to a Slurm
notebook takes its host from Slurm and its port only after a check; the API token never
enters a Slurm job's record.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.harness import minihpc

pytestmark = pytest.mark.integration

HOSTILE = minihpc.HOSTILE_USER


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


# How much the hub may grow while one user floods it: the cap (1 MiB) per command plus
# asyncssh's window (2 MiB) per channel, times a few concurrent commands, is far below.
RSS_GROWTH_LIMIT = 128 * 1024 * 1024


def test_endless_shell_output_fails_only_that_users_spawn(hub: minihpc.Hub, sshd: minihpc.SSHD) -> None:
    """A ~/.bashrc that prints without end (bash sources it for sshd's commands): the hub
    reads at most ssh.maxOutputBytes per command, fails that user's spawn with an error
    naming the system and the command, and another user's spawn on the same hub succeeds
    meanwhile."""
    assert hub.hub is not None and hub.hub.popen is not None
    hub_pid = hub.hub.popen.pid
    before = rss_bytes(hub_pid)
    honest = "hpcbob"
    with sshd.shell_startup(HOSTILE, "yes 'hpchub flood: this line repeats without end'\n"):
        with ThreadPoolExecutor(2) as ex:
            hostile_start = ex.submit(hub.start_server, HOSTILE, "mini-shared")
            honest_start = ex.submit(hub.start_server, honest, "mini-shared")
            peak = before

            def settled() -> bool:
                # Until the hostile spawn has an outcome: refused, failed, or (old code) a
                # 202 whose spawn goes on reading while the hub grows.
                if not (hostile_start.done() and honest_start.done()):
                    return False
                return hostile_start.result().status_code != 202 or (
                    hub.server_model(HOSTILE, "mini-shared") is None
                )

            try:
                while not settled():
                    peak = max(peak, rss_bytes(hub_pid))
                    assert peak - before < RSS_GROWTH_LIMIT, (
                        f"the hub grew from {before >> 20} MiB to {peak >> 20} MiB reading one user's shell output"
                    )
                    time.sleep(0.05)
            finally:
                # On failure: end the flood, so the hub (and the request threads) come back.
                sshd.kill_sessions(HOSTILE)
        r = hostile_start.result()
        print(f"hub RSS {before >> 20} MiB before, peak {peak >> 20} MiB during the flood")
        assert r.status_code == 403, r.text
        message = r.json()["message"]
        assert "Mini HPC" in message and "ssh.maxOutputBytes" in message, message
        assert "printed more than 1048576 bytes" in message, message
        assert hub.server_model(HOSTILE, "mini-shared") is None
        # The honest user's spawn went on while the flood was refused.
        r = honest_start.result()
        assert r.status_code in (201, 202), r.text
        hub.wait_ready(honest, "mini-shared")
        hub.wait_answering(honest, "mini-shared")
    # Nothing stuck on the hostile user's pooled connection: with a quiet shell it works.
    r = hub.start_server(HOSTILE, "mini-shared")
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(HOSTILE, "mini-shared")
    hub.wait_answering(HOSTILE, "mini-shared")
    for user in (honest, HOSTILE):
        hub.stop_server(user, "mini-shared")
    minihpc.wait_for(
        lambda: not minihpc.user_processes(honest, hub) and not minihpc.user_processes(HOSTILE, hub),
        15,
        "the notebook processes to exit",
    )
