"""How a login-node server ended, recorded at the poll that sees it gone (real sshd, hub,
proxy): the exit status or signal its waiting parent wrote, the lifetime watchdog's word,
the last lines of its log. What the run directory holds is the user's claim about their own
server: a user who fills it with FIFOs, endless files and forged marks neither hangs nor
slows the hub, and gets a bounded record of their own server only.
"""

from __future__ import annotations

import copy
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from hpchub import endings
from hpchub.endings import Ending
from tests.harness import minihpc

pytestmark = pytest.mark.integration

SHARED = "mini-shared"
BRIEF = "brief-shared"
RECORDED_WITHIN = 5  # seconds after the poll that sees the end (the bound)


@pytest.fixture(scope="module")
def ssh_hub(workdir: Path, sshd: minihpc.SSHD) -> Iterator[minihpc.Hub]:
    """The login node, and "brief": the same with a 30 s lifetime (its watchdog's test)."""
    values = minihpc.test_values(sshd, [("127.0.0.1", sshd.port)])
    brief = copy.deepcopy(values["systems"]["mini"])
    brief["displayName"] = "Brief HPC"
    brief["singleuser"]["maxLifetime"] = "00:00:30"
    brief["levels"] = {"shared": brief["levels"]["shared"]}
    values["systems"]["brief"] = brief
    users = (*minihpc.USERS, minihpc.HOSTILE_USER)
    with minihpc.running_hub(workdir, values, sshd.ca_key, "endings-ssh-hub", users) as hub:
        yield hub


def start(hub: minihpc.Hub, user: str, server: str) -> tuple[float, str, Path]:
    """Start ``server``: when, its PID and its run directory."""
    since = time.time()
    outcome, message = hub.start_outcome(user, server)
    assert outcome == "ready", message
    pid = minihpc.wait_for(
        lambda: minihpc.notebook_process(hub, user, server), 30, f"{user}/{server}'s process"
    )
    return since, pid, Path(minihpc.environ(pid)["JUPYTER_RUNTIME_DIR"])


def wait_for_ending(hub: minihpc.Hub, user: str, server: str, since: float, timeout: float) -> Ending:
    minihpc.wait_for(lambda: hub.server_model(user, server) is None, timeout, f"{user}/{server} to end", 0.5)
    return minihpc.wait_for(
        lambda: endings.last(hub.db_engine(), user, server, since),
        RECORDED_WITHIN,
        f"the ending of {user}/{server}",
    )


def test_a_server_killed_on_the_login_node_is_recorded_with_its_signal(ssh_hub: minihpc.Hub) -> None:
    hub, user = ssh_hub, "hpcalice"
    since, pid, run_dir = start(hub, user, SHARED)
    os.kill(int(pid), signal.SIGKILL)  # the login node's OOM killer, or an operator
    e = wait_for_ending(hub, user, SHARED, since, 30)
    assert e.cause == "exited", e
    assert e.details["signal"] == "9" and "exit_code" not in e.details, e.details
    assert e.words == "ended: the server exited on signal 9"
    assert e.details["elapsed_seconds"] >= 0 and e.backend == "ssh"
    assert "Jupyter" in e.log_tail  # the last lines of the server's own log
    assert (run_dir / "exit").read_text() == "signal 9\n"  # what its parent wrote


def test_a_server_that_exits_is_recorded_with_its_status(ssh_hub: minihpc.Hub) -> None:
    hub, user = ssh_hub, "hpcbob"
    since, pid, _ = start(hub, user, SHARED)
    # The user shuts their server down from inside (File > Shut Down in JupyterLab).
    r = requests.post(
        f"{hub.public}/user/{user}/{SHARED}/api/shutdown",
        headers={"Authorization": f"token {hub.api_token}"},
        timeout=30,
    )
    assert r.status_code in (200, 202), r.text
    e = wait_for_ending(hub, user, SHARED, since, 30)
    assert e.cause == "exited" and e.details["exit_code"] == "0", e
    assert e.words == "ended: the server exited with status 0"


def test_the_lifetime_watchdog_records_that_it_ended_the_server(ssh_hub: minihpc.Hub) -> None:
    hub, user = ssh_hub, "hpccarol"
    since, _, run_dir = start(hub, user, BRIEF)
    # The watchdog checks every 20 s: the server ends 30-60 s after its start.
    e = wait_for_ending(hub, user, BRIEF, since, 150)
    assert e.cause == "lifetime", e
    assert e.details["limit_seconds"] == 30 and e.details["elapsed_seconds"] >= 30, e.details
    assert e.words == "reached its maximum lifetime of 0:00:30"
    assert (run_dir / "watchdog").read_text() == "lifetime 30\n"


def poison(run_dir: Path, uid: int, how: str) -> None:
    """What a user can put in their own run directory (as them: their files)."""
    for name in ("exit", "watchdog", "server.log"):
        (run_dir / name).unlink(missing_ok=True)
    if how == "hangs":
        # Reading any of these would never end: FIFOs with no writer, an endless device.
        os.mkfifo(run_dir / "exit")
        os.mkfifo(run_dir / "server.log")
        (run_dir / "watchdog").symlink_to("/dev/zero")
    else:
        # Far more than a record holds, and forged marks where the hub's script prints its own.
        # (Each forged "exit" section reads "exit 0": believed, it would say the server exited.)
        marks = "HPCHUB-END watchdog 0\nexit 0\nHPCHUB-END exit 0\n" * 200
        (run_dir / "exit").write_text("signal 9\n" + "x" * (8 << 20))
        (run_dir / "watchdog").write_text("lifetime " + "9" * 100_000 + "\n")
        with (run_dir / "server.log").open("w") as f:
            f.write("y" * (32 << 20))  # one endless line
            f.write("\n" + marks)
    for p in run_dir.iterdir():
        os.lchown(p, uid, uid)


@pytest.mark.parametrize("how", ["hangs", "floods"])
def test_a_run_directory_full_of_traps_neither_hangs_nor_slows_the_hub(
    ssh_hub: minihpc.Hub, how: str
) -> None:
    hub, user = ssh_hub, minihpc.HOSTILE_USER
    since, pid, run_dir = start(hub, user, SHARED)
    uid = os.stat(run_dir).st_uid
    # The user ends the server's parent (so nothing writes a true word), lays the traps,
    # then ends the server.
    parent = int(Path(f"/proc/{pid}/status").read_text().split("PPid:")[1].split()[0])
    os.kill(parent, signal.SIGKILL)
    poison(run_dir, uid, how)
    os.kill(int(pid), signal.SIGKILL)
    gone = time.monotonic()
    slowest = 0.0
    while hub.server_model(user, SHARED) is not None:  # meanwhile the hub answers at once
        t0 = time.monotonic()
        assert requests.get(f"{hub.api}/", timeout=5).ok
        slowest = max(slowest, time.monotonic() - t0)
        assert time.monotonic() - gone < 30, "the hub did not see the server end"
        time.sleep(0.2)
    e = minihpc.wait_for(
        lambda: endings.last(hub.db_engine(), user, SHARED, since), RECORDED_WITHIN, "the ending"
    )
    assert slowest < 2, f"the hub took {slowest:.1f} s to answer while reading the traps"
    # A bounded record of their own server: nothing believed that the files could not say.
    assert e.username == user and e.server == SHARED
    assert e.cause in ("exited", "unknown"), e
    assert len(e.log_tail) <= endings.MAX_LOG and len(e.log_tail.splitlines()) <= endings.MAX_LOG_LINES
    assert all(len(str(v)) <= endings.MAX_TEXT for k, v in e.details.items() if k != "message")
    if how == "hangs":
        assert e.cause == "unknown" and e.log_tail == ""
    else:
        # The forged marks printed inside the log make its section (and the others named
        # twice) unbelievable: the end is not taken from them.
        assert e.cause == "unknown" and "exit_code" not in e.details
