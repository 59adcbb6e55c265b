"""A user's shell can only ever speak for that user (issue 16): a hostile user with an
ordinary account on the real login node fakes ``squeue``, ``sbatch``, ``ps`` and a server's
replies, while another user's SSH and Slurm servers run, against the real sshd, Slurm, hub
and proxy — in both status modes (per-user queries, and the status account the operator
guide recommends, set up as it says: tests/harness/minihpc.py).

Every test checks the victim afterwards: both servers ready and answering through the
proxy, the same notebook process and the same Slurm job running; and during the attack
the hub itself: resident memory within 64 MiB of where it started, ``/hub/home`` answered
in under a second.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.harness import minihpc

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOSTILE = minihpc.HOSTILE_USER
VICTIM = "hpcalice"
OBSERVER = "hpccarol"  # signs in and loads the console throughout
RSS_BUDGET = 64 * 1024 * 1024
HOME_BUDGET = 1.0  # seconds for /hub/home while under attack
INTERVAL = 2  # status.intervalSeconds of these hubs
BOMB = "n[0-99998]m[0-99998]"  # 10^10 nodes in 20 characters (hole 1)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


@dataclass
class Victim:
    ssh_pid: str
    ssh_port: int
    job_id: str


@dataclass
class Health:
    """Samples the hub's memory and console latency in a thread while an attack runs."""

    hub: minihpc.Hub
    session: requests.Session
    rss0: int = 0
    rss_max: int = 0
    slowest: float = 0.0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _sample(self) -> None:
        assert self.hub.hub is not None and self.hub.hub.popen is not None
        pid = self.hub.hub.popen.pid
        while not self._stop.is_set():
            self.rss_max = max(self.rss_max, rss_bytes(pid))
            t0 = time.monotonic()
            try:
                r = self.session.get(f"{self.hub.public}/hub/home", timeout=10)
                if r.status_code != 200:
                    self.failures.append(f"/hub/home answered {r.status_code}")
            except requests.RequestException as e:
                self.failures.append(f"/hub/home: {e}")
            self.slowest = max(self.slowest, time.monotonic() - t0)
            self._stop.wait(0.5)

    @contextmanager
    def watching(self) -> Iterator[Health]:
        assert self.hub.hub is not None and self.hub.hub.popen is not None
        self.rss0 = self.rss_max = rss_bytes(self.hub.hub.popen.pid)
        thread = threading.Thread(target=self._sample, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(15)
        assert not self.failures, self.failures[:5]
        growth = self.rss_max - self.rss0
        assert growth <= RSS_BUDGET, f"the hub grew by {growth >> 20} MiB under the attack"
        assert self.slowest < HOME_BUDGET, f"/hub/home took {self.slowest:.2f} s under the attack"


@pytest.fixture(scope="module", params=["per-user", "status-account"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def claims_hub(mode: str, workdir: Path, sshd: minihpc.SSHD, slurm: minihpc.Slurm) -> Iterator[minihpc.Hub]:
    values = minihpc.test_values(sshd, [("127.0.0.1", sshd.port)])
    mini = values["systems"]["mini"]
    mini["status"] = {"intervalSeconds": INTERVAL}
    if mode == "status-account":
        mini["status"].update(user=minihpc.STATUS_USER, forceCommand=str(sshd.status_command))
    hub = minihpc.Hub(workdir, values, sshd.ca_key, name=f"claims-{mode}")
    hub.start()
    for user in (VICTIM, HOSTILE, OBSERVER):
        hub.ensure_user(user)
    yield hub
    hub.stop_all_servers((VICTIM, HOSTILE))
    hub.stop()


def notebook_pids(hub: minihpc.Hub, user: str, server: str) -> list[str]:
    return [
        pid
        for pid in minihpc.user_processes(user, hub)
        if minihpc.environ(pid).get("JUPYTERHUB_SERVER_NAME") == server
    ]


@pytest.fixture(scope="module")
def victim(claims_hub: minihpc.Hub, slurm: minihpc.Slurm) -> Victim:
    """The victim's login-node and compute-node servers, up for the whole module."""
    hub = claims_hub
    for server in ("mini-shared", "mini-exclusive"):
        assert hub.start_outcome(VICTIM, server) == ("ready", ""), server
        hub.wait_answering(VICTIM, server)
    (ssh_pid,) = notebook_pids(hub, VICTIM, "mini-shared")
    routes = {k.rstrip("/"): v for k, v in hub.routes().items()}
    target = routes[f"/user/{VICTIM}/mini-shared"]["target"]
    (slurm_pid,) = notebook_pids(hub, VICTIM, "mini-exclusive")
    job_id = minihpc.environ(slurm_pid)["SLURM_JOB_ID"]
    return Victim(ssh_pid, int(target.rsplit(":", 1)[1].rstrip("/")), job_id)


def assert_victim_untouched(hub: minihpc.Hub, slurm: minihpc.Slurm, victim: Victim) -> None:
    """Over three status intervals (each a refresh the attack could have poisoned): both
    servers ready and answering through the proxy, the same process, the same job."""
    for _ in range(3):
        time.sleep(INTERVAL + 0.5)
        for server in ("mini-shared", "mini-exclusive"):
            model = hub.server_model(VICTIM, server)
            assert model and model.get("ready"), (
                f"{VICTIM}/{server}: {model}\n{hub.hub.tail(30) if hub.hub else ''}"
            )
            hub.wait_answering(VICTIM, server, timeout=10)
    assert Path(f"/proc/{victim.ssh_pid}").exists(), "the victim's notebook process is gone"
    jobs = {j["id"]: j for j in slurm.squeue(VICTIM)}
    assert jobs.get(victim.job_id, {}).get("state") == "RUNNING", jobs


@contextmanager
def hostile_shell(sshd: minihpc.SSHD, commands: dict[str, str] | None = None, rc: str = "") -> Iterator[None]:
    """The hostile user's own fakes: scripts named like Slurm's commands first on her PATH
    (as a ~/bin in ~/.bashrc would put them), and more lines of ~/.bashrc (``rc``). Both act
    on every command the hub runs as her through this session's sshd."""
    pw_home = Path(f"/home/{HOSTILE}")
    bindir = pw_home / ".hpchub-test-bin" / sshd.session
    bindir.mkdir(parents=True, exist_ok=True)
    for name, body in (commands or {}).items():
        path = bindir / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
    subprocess.run(["chown", "-R", f"{HOSTILE}:", str(pw_home / ".hpchub-test-bin")], check=True)
    with sshd.shell_startup(HOSTILE, f'export PATH="{bindir}:$PATH"\n{rc}'):
        yield
    for path in bindir.iterdir():
        path.unlink()


def hostile_start(hub: minihpc.Hub, server: str) -> tuple[str, str]:
    outcome = hub.start_outcome(HOSTILE, server, timeout=240)
    if hub.server_model(HOSTILE, server) is not None:
        hub.stop_server(HOSTILE, server)
    return outcome


# What a fake squeue prints for each id it is asked about (-j): "<id>|<fields>".
FAKE_SQUEUE = r"""
case " $* " in *" -j "*) ;; *) exec /usr/bin/squeue "$@";; esac
ids=$(printf '%s\n' "$@" | sed -n '/^-j$/{n;p;q}')
for id in $(echo "$ids" | tr , ' '); do echo "$id|{fields}"; done
"""


def test_a_node_list_bomb_in_a_users_squeue_harms_nobody(
    mode: str, claims_hub: minihpc.Hub, sshd: minihpc.SSHD, slurm: minihpc.Slurm, victim: Victim
) -> None:
    """Hole 1: her squeue says her job runs on 10^10 nodes. The hub crash-looped on this
    (the cross product of the ranges); now the first node is read without building any."""
    hub = claims_hub
    squeue = FAKE_SQUEUE.replace("{fields}", f"RUNNING|None|2026-01-01T00:00:00|{BOMB}|{HOSTILE}")
    with hostile_shell(sshd, {"squeue": squeue}), Health(hub, hub.session_of(OBSERVER)).watching():
        state, message = hostile_start(hub, "mini-exclusive")
    if mode == "per-user":
        # Her own query's row is read for her: n0m0 is no compute node of this site.
        assert state == "failed" and "Mini HPC" in message and "n0m0" in message, message
    else:
        # The status account's squeue is not hers to fake: her job ran where Slurm put it.
        assert state == "ready", message
    assert_victim_untouched(hub, slurm, victim)


def test_a_job_id_her_sbatch_claims_is_never_served_as_hers(
    mode: str, claims_hub: minihpc.Hub, sshd: minihpc.SSHD, slurm: minihpc.Slurm, victim: Victim
) -> None:
    """Hole 2: her sbatch prints the victim's job id and her squeue forges rows for it
    (cancelled, pending elsewhere). Her start fails saying the job is not hers, without
    naming whose it is; the victim's row, server and job stay as they were."""
    hub = claims_hub
    forged = FAKE_SQUEUE.replace("{fields}", f"CANCELLED|None|N/A|mini01|{VICTIM}")
    with (
        hostile_shell(sshd, {"sbatch": f"echo {victim.job_id}\n", "squeue": forged}),
        Health(hub, hub.session_of(OBSERVER)).watching(),
    ):
        state, message = hostile_start(hub, "mini-exclusive")
    assert state == "failed" and f"Slurm job {victim.job_id} is not yours" in message, message
    assert VICTIM not in message
    assert_victim_untouched(hub, slurm, victim)


def launcher_rc(marks: str) -> str:
    """~/.bashrc lines that answer every script the hub sends her shell (``sh -s``: the
    launcher, the stop) with ``marks``, and every ``ps`` with "none of them"."""
    return (
        'case "$BASH_EXECUTION_STRING" in\n'
        f"  *'sh -s'*) printf '{marks}'; exit 0;;\n"
        "  *' ps '*) exit 1;;\n"
        "esac\n"
    )


def lstart(pid: str) -> str:
    return minihpc.run("env", "LC_ALL=C", "ps", "-o", "lstart=", "-p", pid).stdout.strip()


def test_a_pid_her_launcher_claims_is_never_served_as_hers(
    mode: str, claims_hub: minihpc.Hub, sshd: minihpc.SSHD, slurm: minihpc.Slurm, victim: Victim
) -> None:
    """Hole 2, login nodes: her launcher reports the victim's notebook PID, start time and
    port, and her ps says no process is alive. The victim's process is never polled
    through her shell; her start fails (the port answers for another user's URL)."""
    hub = claims_hub
    marks = f"HPCHUB-PID {victim.ssh_pid}\\nHPCHUB-PSTART {lstart(victim.ssh_pid)}\\nHPCHUB-PORT {victim.ssh_port}\\n"
    with hostile_shell(sshd, rc=launcher_rc(marks)), Health(hub, hub.session_of(OBSERVER)).watching():
        state, message = hostile_start(hub, "mini-shared")
    assert state == "failed", message
    if mode == "status-account":
        assert f"process {victim.ssh_pid} on" in message and "is not yours" in message, message
    else:
        assert "refusing to route there" in message, message
    assert VICTIM not in message
    assert_victim_untouched(hub, slurm, victim)


@pytest.mark.parametrize("pid", ["2147483648", "0", "٣"])
def test_a_pid_ps_cannot_take_fails_only_her_start(
    mode: str, claims_hub: minihpc.Hub, sshd: minihpc.SSHD, slurm: minihpc.Slurm, victim: Victim, pid: str
) -> None:
    """Hole 3: with a status account one ps lists every notebook of a login node, and ps
    exits 1 for "process ID out of range" as for "none found": one such PID read every
    notebook on the host as dead. It is refused where her launcher reported it."""
    hub = claims_hub
    marks = f"HPCHUB-PID {pid}\\nHPCHUB-PORT {victim.ssh_port}\\n"
    with hostile_shell(sshd, rc=launcher_rc(marks)), Health(hub, hub.session_of(OBSERVER)).watching():
        state, message = hostile_start(hub, "mini-shared")
    assert state == "failed" and "Mini HPC: process id" in message and "is not valid" in message, message
    assert_victim_untouched(hub, slurm, victim)


ODD_JOB_IDS = ["²", "١٢٣", "2147483648", "0"]


def test_an_odd_job_id_fails_only_her_start(
    mode: str, claims_hub: minihpc.Hub, sshd: minihpc.SSHD, slurm: minihpc.Slurm, victim: Victim
) -> None:
    """Hole 4: "²".isdigit() is true and int("²") fails (every shared refresh failed); an id
    squeue refuses ("Invalid job id: 2147483648") failed the whole list. Each is refused
    where her sbatch printed it, one start after the other, while the console stays
    quick; then the victim's servers are still polled on. (One test for the four ids: the
    victim's check takes three status intervals.)"""
    hub = claims_hub
    with Health(hub, hub.session_of(OBSERVER)).watching():
        for printed in ODD_JOB_IDS:
            with hostile_shell(sshd, {"sbatch": f"printf '%s\\n' '{printed}'\n"}):
                state, message = hostile_start(hub, "mini-exclusive")
            assert state == "failed" and "which is not a Slurm job id" in message, (printed, message)
    assert_victim_untouched(hub, slurm, victim)


# Her squeue as a hostile user writes it: a list of ids is refused at once ("Invalid job
# id": the hub asks the halves), a single id sleeps two minutes, as does her sacct.
BISECTED_SQUEUE = r"""
case " $* " in *" -j "*) ;; *) exec /usr/bin/squeue "$@";; esac
ids=$(printf '%s\n' "$@" | sed -n '/^-j$/{n;p;q}')
case "$ids" in *,*) echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1;; esac
exec bash -c 'exec -a {name} sleep 120'
"""


def test_a_slow_shell_delays_only_its_owner(
    mode: str, claims_hub: minihpc.Hub, sshd: minihpc.SSHD, slurm: minihpc.Slurm, victim: Victim
) -> None:
    """Hole 5: while her login-node server and two batch servers are watched, her
    ~/.bashrc sleeps two minutes whenever the hub asks ps through her shell, and her
    squeue refuses every list of ids at once and sleeps for a single id (each split the
    hub makes becomes a slow query), as does her sacct. The victim's new Slurm start and
    the polls of the victim's servers are not delayed by her, and at no time does more
    than one of her slow commands run (PER_USER_SLOTS: her queries hold at most one of
    the board's slots; before, each leaf of the split held one)."""
    hub = claims_hub
    servers = ("mini-shared", "mini-exclusive", "mini-configurable")
    for server in servers:
        assert hub.start_outcome(HOSTILE, server) == ("ready", ""), server
    slow = f"hpchub-slow-{sshd.session}"  # her sleeps, told apart from any other process
    rc = f'case "$BASH_EXECUTION_STRING" in *" ps "*) exec -a {slow} sleep 120;; esac\n'
    fakes = {
        "squeue": BISECTED_SQUEUE.replace("{name}", slow),
        "sacct": f"exec bash -c 'exec -a {slow} sleep 120'\n",
    }
    most, done = 0, threading.Event()

    def count() -> None:
        nonlocal most
        # The hub gives up on a query after 60 s (its sleep may linger): 50 s of samples.
        end = time.monotonic() + 50
        while not done.is_set() and time.monotonic() < end:
            found = minihpc.run("pgrep", "-u", HOSTILE, "-f", f"^{slow} ", check=False).stdout.split()
            most = max(most, len(found))
            done.wait(0.2)

    sampler = threading.Thread(target=count, daemon=True)
    try:
        with hostile_shell(sshd, fakes, rc=rc), Health(hub, hub.session_of(OBSERVER)).watching():
            sampler.start()
            time.sleep(INTERVAL * 2)  # her polls are now stuck in her shell
            t0 = time.monotonic()
            assert hub.start_outcome(VICTIM, "mini-configurable", {"partition": "long"}) == ("ready", "")
            took = time.monotonic() - t0
            hub.stop_server(VICTIM, "mini-configurable")
            done.set()
            sampler.join(10)
        assert took < 60, f"the victim's start took {took:.0f} s behind her 120 s shell"
        assert most <= 1, f"{most} of her slow status commands ran at once"
        assert_victim_untouched(hub, slurm, victim)
    finally:
        done.set()
        for server in servers:
            hub.stop_server(HOSTILE, server, timeout=180)
        minihpc.run("pkill", "-u", HOSTILE, "-f", f"^{slow} ", check=False)


BIG_REPLY = r"""
import http.server, sys
class Big(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(95 << 20))
        self.end_headers()
        chunk = b"x" * (1 << 20)
        try:
            for _ in range(95):
                self.wfile.write(chunk)
        except OSError:
            pass
    def log_message(self, *args):
        pass
httpd = http.server.HTTPServer(("127.0.0.1", 0), Big)
print(httpd.server_address[1], flush=True)
httpd.serve_forever()
"""


def test_a_95_mib_reply_to_is_it_jupyter_costs_the_hub_nothing(
    mode: str, claims_hub: minihpc.Hub, sshd: minihpc.SSHD, slurm: minihpc.Slurm, victim: Victim
) -> None:
    """Hole 6: her launcher reports the port of her own server, which answers the hub's
    "is it Jupyter?" with 95 MiB (tornado's default limit is 100 MiB). The hub reads 64 KiB."""
    hub = claims_hub
    big = subprocess.Popen(
        ["runuser", "-u", HOSTILE, "--", "/usr/bin/python3", "-c", BIG_REPLY],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert big.stdout is not None
        port = int(big.stdout.readline())
        sleeper = subprocess.Popen(["runuser", "-u", HOSTILE, "--", "sleep", "300"])
        child = minihpc.wait_for(
            lambda: minihpc.run("pgrep", "-P", str(sleeper.pid), check=False).stdout.split(), 10, "sleep"
        )[0]
        marks = f"HPCHUB-PID {child}\\nHPCHUB-PSTART {lstart(child)}\\nHPCHUB-PORT {port}\\n"
        with hostile_shell(sshd, rc=launcher_rc(marks)), Health(hub, hub.session_of(OBSERVER)).watching():
            state, message = hostile_start(hub, "mini-shared")
        assert state == "failed" and "a reply of more than 65536 bytes" in message, message
        sleeper.kill()
        minihpc.run("kill", child, check=False)
    finally:
        big.kill()
    assert_victim_untouched(hub, slurm, victim)


def test_a_link_cannot_start_a_job_with_options(
    mode: str, claims_hub: minihpc.Hub, slurm: minihpc.Slurm, victim: Victim
) -> None:
    """Hole 7: GET /hub/spawn/<user>/<cell>?nodes=..&time=.. started a job from a link in a
    mail (no XSRF check on a top-level GET). It now shows the cell's form; nothing starts."""
    hub = claims_hub
    session = hub.session_of(HOSTILE)  # the victim of the link is whoever clicks it
    before = {j["id"] for j in slurm.squeue(HOSTILE)}
    r = session.get(
        f"{hub.public}/hub/spawn/{HOSTILE}/mini-configurable",
        params={"partition": "long", "time": "04:00:00", "nodes": "1"},
        allow_redirects=False,
        timeout=30,
    )
    assert r.status_code == 302 and r.headers["Location"].startswith("/hub/console/options/mini-configurable")
    form = session.get(f"{hub.public}{r.headers['Location']}", timeout=30)
    assert form.status_code == 200 and re.search(r"<form[^>]+method=\"post\"", form.text, re.I)
    time.sleep(INTERVAL)
    assert hub.server_model(HOSTILE, "mini-configurable") is None
    assert {j["id"] for j in slurm.squeue(HOSTILE)} == before
    # A link without options still starts the cell as it is (the console's Start without
    # JavaScript), as JupyterHub's own does.
    r = session.get(f"{hub.public}/hub/spawn/{HOSTILE}/mini-shared", allow_redirects=False, timeout=60)
    assert r.status_code == 302, r.status_code
    assert "/spawn-pending/" in r.headers["Location"] or "/user/" in r.headers["Location"], r.headers
    hub.wait_ready(HOSTILE, "mini-shared")
    hub.stop_server(HOSTILE, "mini-shared")
