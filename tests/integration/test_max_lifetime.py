"""``systems.<s>.singleuser.maxLifetime``: a login-node notebook ends at its lifetime.

Against the real sshd, hub and proxy. System "brief" is the login node with a lifetime of
30 s; "mini" keeps the default (12 h). The login node's watchdog ends the brief server (the
hub only notices it gone); with the watchdog killed, the hub's poll stops it (the backstop,
which logs that the server outlived its lifetime); the longer-lived server is untouched and
the console shows its time left.
"""

from __future__ import annotations

import copy
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import minihpc

pytestmark = pytest.mark.integration

BRIEF = "brief-shared"
LONG = "mini-shared"
LIFETIME = "00:00:30"


def backstop_log(user: str) -> str:
    """What the hub logs when its poll stops a server its watchdog missed (spawners/loginnode.py)."""
    return f"Brief HPC: {user}:{BRIEF} outlived its maximum lifetime; stopping it"


@pytest.fixture(scope="module")
def lifetime_hub(workdir: Path, sshd: minihpc.SSHD) -> Iterator[minihpc.Hub]:
    values = minihpc.test_values(sshd, [("127.0.0.1", sshd.port)])
    brief = copy.deepcopy(values["systems"]["mini"])
    brief["displayName"] = "Brief HPC"
    brief["singleuser"]["maxLifetime"] = LIFETIME
    brief["levels"] = {"shared": brief["levels"]["shared"]}
    values["systems"]["brief"] = brief
    hub = minihpc.Hub(workdir, values, sshd.ca_key, name="lifetime-hub")
    hub.start()
    for user in minihpc.USERS:
        hub.ensure_user(user)
    yield hub
    hub.stop_all_servers(minihpc.USERS)
    hub.stop()


def run_processes(user: str, run_dir: str) -> list[str]:
    """Every process of ``user`` that belongs to the run ``run_dir`` (the server, its
    kernels, its children: all inherit JUPYTER_RUNTIME_DIR = the run directory)."""
    found = []
    for pid in minihpc.run("pgrep", "-u", user, check=False).stdout.split():
        try:
            if minihpc.environ(pid).get("JUPYTER_RUNTIME_DIR") == run_dir:
                found.append(pid)
        except OSError:
            continue
    return found


def watchdog_of(user: str, pid: str, run_dir: str) -> int | None:
    """The lifetime watchdog of this run: ``sh -c <loop> hpchub-lifetime <pid> <s> <dir> <save>``."""
    rel = os.path.relpath(run_dir, f"/home/{user}")
    for w in minihpc.run("pgrep", "-u", user, "-f", "hpchub-lifetime", check=False).stdout.split():
        try:
            args = Path(f"/proc/{w}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if "hpchub-lifetime" in args and args[-5:-2] == [pid, "30", rel]:
            return int(w)
    return None


def start(hub: minihpc.Hub, user: str, server: str) -> tuple[str, str]:
    """Start ``server`` and return its notebook's PID and run directory."""
    r = hub.start_server(user, server)
    assert r.status_code in (201, 202), r.text
    pid = minihpc.wait_for(
        lambda: minihpc.notebook_process(hub, user, server), 120, f"{user}/{server} on the login node"
    )
    return pid, minihpc.environ(pid)["JUPYTER_RUNTIME_DIR"]


def console_detail(hub: minihpc.Hub, user: str, server: str) -> str:
    """The text of ``server``'s cell on the user's console (/hub/home), signed in."""
    r = hub.sign_in(user)
    assert r.status_code == 200 and r.url.endswith("/hub/home"), r.url
    # The page says <meta charset="utf-8">, which requests does not read.
    page = r.content.decode("utf-8")
    cell = re.search(rf'id="cell-{server}".*?</td>', page, re.S)
    assert cell, f"no cell {server} on the console"
    detail = re.search(r'class="hpc-detail[^"]*"[^>]*>(.*?)</p>', cell.group(0), re.S)
    assert detail, cell.group(0)
    return " ".join(detail.group(1).split())


def test_watchdog_ends_a_login_node_notebook_at_its_lifetime(lifetime_hub: minihpc.Hub) -> None:
    hub, user = lifetime_hub, "hpcalice"
    long_pid, _ = start(hub, user, LONG)
    hub.wait_ready(user, LONG)
    pid, run_dir = start(hub, user, BRIEF)
    hub.wait_ready(user, BRIEF)
    assert watchdog_of(user, pid, run_dir), "no lifetime watchdog for the brief server"
    # The watchdog checks every 10 s: the server ends 30-40 s after its start.
    minihpc.wait_for(lambda: not run_processes(user, run_dir), 150, "the brief server to end", interval=1)
    minihpc.wait_for(lambda: hub.server_model(user, BRIEF) is None, 60, "the hub to report it stopped")
    # The login node ended it, not the hub's backstop (which acts 60 s past the lifetime).
    stopped_by_hub = backstop_log(user) in hub.log_text()
    assert not stopped_by_hub, "the hub's backstop stopped the server, not the watchdog"
    # The watchdog ends too (it waits 30 s to KILL what ignored TERM).
    minihpc.wait_for(lambda: not watchdog_of(user, pid, run_dir), 90, "the watchdog to end", interval=1)
    # The server with the longer lifetime is untouched: same process, still answering.
    assert minihpc.notebook_process(hub, user, LONG) == long_pid
    assert (hub.server_model(user, LONG) or {}).get("ready")
    hub.wait_answering(user, LONG)
    hub.stop_server(user, LONG)


def test_hub_poll_stops_a_notebook_whose_watchdog_is_gone(lifetime_hub: minihpc.Hub) -> None:
    hub, user = lifetime_hub, "hpcbob"
    pid, run_dir = start(hub, user, BRIEF)
    # The watchdog is started with the server: kill it (its own session, as root, by pid)
    # before its first check, 10 s in, as a login node's OOM killer or a user's pkill might.
    watchdog = minihpc.wait_for(lambda: watchdog_of(user, pid, run_dir), 20, "the lifetime watchdog")
    os.killpg(watchdog, signal.SIGKILL)
    minihpc.wait_for(lambda: not watchdog_of(user, pid, run_dir), 10, "the watchdog to be gone")
    hub.wait_ready(user, BRIEF)
    # Lifetime 30 s + the backstop's 60 s grace + a poll, on a loaded machine.
    minihpc.wait_for(lambda: hub.server_model(user, BRIEF) is None, 240, "the hub to stop it", interval=1)
    minihpc.wait_for(lambda: not run_processes(user, run_dir), 30, "the server's processes to end")
    stopped_by_hub = backstop_log(user) in hub.log_text()
    assert stopped_by_hub, "the server ended, but not by the hub's backstop"


def test_console_shows_the_time_left_of_a_login_node_notebook(lifetime_hub: minihpc.Hub) -> None:
    hub, user = lifetime_hub, "hpccarol"
    start(hub, user, LONG)
    hub.wait_ready(user, LONG)
    # The default lifetime (12 h) counts down from the start; a Slurm job's is its --time.
    detail = console_detail(hub, user, LONG)
    assert re.search(r"^on 127\.0\.0\.1:\d+ · 1[12] h \d\d min left$", detail), detail
    hub.stop_server(user, LONG)
