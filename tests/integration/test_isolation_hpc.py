"""Users cannot reach each other (issue 8), HPC side: a hostile user with an ordinary
account on the login node plays against the real sshd, Slurm, hub and proxy.

Boundaries (docs/security.md): what a user's shell prints is capped; the notebook reaches
the hub API only through a socket its owner alone can open; the proxy's route to a Slurm
notebook takes its host from Slurm and its port only after a check; the API token never
enters a Slurm job's record.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

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


# --- The hub-API tunnel cannot be taken over ------------------------------------------

# A fake hub API, run as the hostile user: it binds the port the victim's notebook sends
# its hub requests to, records every request, and vouches for any token as the victim.
FAKE_HUB = r"""
import http.server, json, socket, sys
port, record, victim, server = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]

class Fake(http.server.BaseHTTPRequestHandler):
    def answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with open(record, "a") as f:
            f.write(f"{self.command} {self.path} {self.headers.get('Authorization')} {body!r}\n")
        model = {"kind": "user", "name": victim, "admin": False, "groups": [], "session_id": None,
                 "scopes": [f"access:servers!server={victim}/{server}"]}
        data = json.dumps(model if self.path.endswith("/user") else {}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    do_GET = do_POST = answer
    def log_message(self, *args):
        pass

httpd = http.server.HTTPServer(("127.0.0.1", port), Fake, bind_and_activate=False)
# Every option that lets a second socket onto a port.
httpd.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
httpd.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
try:
    httpd.server_bind()
    httpd.server_activate()
except OSError as e:
    print("BIND-FAILED", e.strerror, flush=True)
    sys.exit(0)
print("BOUND", flush=True)
httpd.serve_forever()
"""


class FakeHub:
    """The hostile user's fake hub API on ``port`` (run with runuser as that user)."""

    def __init__(self, port: int, victim: str, server: str) -> None:
        home = Path(f"/home/{HOSTILE}")
        self.record = home / f"fake-hub-{port}.log"
        self.record.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            ["runuser", "-u", HOSTILE, "--", "/usr/bin/python3", "-c", FAKE_HUB]
            + [str(port), str(self.record), victim, server],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.outcome = self.proc.stdout.readline().strip()
        self.bound = self.outcome == "BOUND"

    def received(self) -> str:
        return self.record.read_text() if self.record.exists() else ""

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self.record.unlink(missing_ok=True)


def hostile_connect_unix(path: str) -> str:
    """What the hostile user gets trying to open a Unix socket path."""
    code = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ntry:\n s.connect(sys.argv[1]); print('CONNECTED')\nexcept OSError as e:\n print(e.strerror)"
    return minihpc.run("runuser", "-u", HOSTILE, "--", "/usr/bin/python3", "-c", code, path).stdout.strip()


def user_token(hub: minihpc.Hub, user: str) -> str:
    r = hub.request("POST", f"/users/{user}/tokens", json={"note": "isolation test", "expires_in": 600})
    assert r.status_code in (200, 201), r.text
    return r.json()["token"]


def notebook_api(pid: str, user: str, server: str, path: str, token: str) -> requests.Response:
    """A request straight to the notebook on the login/compute node, as any local user can."""
    (port,) = minihpc.listening_ports(pid)
    return requests.get(
        f"http://127.0.0.1:{port}/user/{user}/{server}/api/{path}",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )


@contextmanager
def victim_server(hub: minihpc.Hub, sshd: minihpc.SSHD, victim: str, server: str) -> Iterator[str]:
    """The victim's running notebook ``server`` (its PID); stopped afterwards whatever
    happened, so a failure leaves nothing for the next test."""
    r = hub.start_server(victim, server)
    assert r.status_code in (201, 202), r.text
    try:
        hub.wait_ready(victim, server)
        hub.wait_answering(victim, server)
        (pid,) = minihpc.session_notebooks(victim, sshd, server)
        yield pid
    finally:
        if not hub.hub or not hub.hub.running():
            hub.start_hub()
        if hub.server_model(victim, server) is not None:
            hub.stop_server(victim, server)
        minihpc.wait_for(
            lambda: not minihpc.session_notebooks(victim, sshd, server), 30, "the victim's notebook to exit"
        )


@pytest.mark.parametrize("server", ["tunnel-shared", "tunnel-exclusive"])
def test_hub_api_port_cannot_be_taken_over_while_the_forward_is_down(
    hub: minihpc.Hub, sshd: minihpc.SSHD, slurm: minihpc.Slurm, server: str
) -> None:
    """Tunnel mode, the hub restarting (its forwards drop): the hostile user binds the
    port the victim's notebook sends hub requests to, and asks the notebook to check a
    forged token. The notebook must not reach the attacker: no login into the victim's
    notebook, no API token received. After the restart the real hub is reachable again."""
    victim = "hpcalice"
    with victim_server(hub, sshd, victim, server) as pid:
        env = minihpc.environ(pid)
        api_port = urlparse(env["JUPYTERHUB_API_URL"]).port
        api_token = env["JUPYTERHUB_API_TOKEN"]
        assert api_port and api_port != hub.hub_port
        hub.stop_hub()  # every SSH forward of the hub drops with it
        take_over_and_check(hub, victim, server, pid, env, api_port, api_token)
        # The forward is back (same socket, same relay port): the real hub checks tokens again.
        hub.wait_answering(victim, server)
        minihpc.wait_for(
            lambda: notebook_api(pid, victim, server, "contents", user_token(hub, victim)).ok,
            60,
            "the victim's own token accepted through the re-opened forward",
        )
        assert notebook_api(pid, victim, server, "contents", "forged-by-hpcmallory").status_code == 403
    assert slurm.squeue(victim) == []


def take_over_and_check(
    hub: minihpc.Hub, victim: str, server: str, pid: str, env: dict[str, str], api_port: int, api_token: str
) -> None:
    """With the hub down: the attacker binds the notebook's hub-API port and asks the
    notebook to check a forged token. Then the hub is started again."""
    attacker = FakeHub(api_port, victim, server)
    try:
        forged = notebook_api(pid, victim, server, "contents", "forged-by-hpcmallory")
        if attacker.bound and forged.ok:
            # Old design: show the API token arriving with the next activity report.
            try:
                minihpc.wait_for(lambda: api_token in attacker.received(), 30, "the victim's API token")
            except TimeoutError:
                pass
        received = attacker.received()
        leaks = []
        if attacker.bound:
            leaks.append(f"{HOSTILE} bound the notebook's hub-API port {api_port}")
        if forged.ok:
            leaks.append(
                f"a forged token opened {victim}'s notebook ({forged.status_code}: {forged.text[:80]})"
            )
        if api_token in received:
            leaks.append(f"{HOSTILE} received {victim}'s API token")
        assert not leaks, "; ".join(leaks) + f"\nthe fake hub recorded:\n{received}"
        assert received == ""
        assert "Address already in use" in attacker.outcome, attacker.outcome
        # Nor can the attacker reach the hub's socket in the victim's run directory.
        sock = Path(env["JUPYTER_RUNTIME_DIR"]) / "api.sock"
        assert hostile_connect_unix(str(sock)) == "Permission denied"
    finally:
        attacker.stop()
        if not hub.hub or not hub.hub.running():
            hub.start_hub()


def wait_showing_hub_log(hub: minihpc.Hub, predicate: Callable[[], object], what: str) -> None:
    try:
        minihpc.wait_for(predicate, 90, what)
    except TimeoutError as e:
        log = [line for line in hub.log_text().splitlines() if "200 GET" not in line]
        raise AssertionError(f"{e}; the hub's log:\n" + "\n".join(log[-60:])) from e


def relay_pids(user: str, run_dir: str) -> list[str]:
    """The user's hub-API relay processes serving ``run_dir``."""
    out = minihpc.run("pgrep", "-u", user, "-f", "relay.py", check=False).stdout.split()
    return [p for p in out if f"{run_dir}/api.sock".encode() in Path(f"/proc/{p}/cmdline").read_bytes()]


@pytest.mark.parametrize("server", ["tunnel-shared", "tunnel-exclusive"])
def test_hub_api_path_that_cannot_be_restored_stops_the_server(
    hub: minihpc.Hub, sshd: minihpc.SSHD, slurm: minihpc.Slurm, server: str
) -> None:
    """While the hub is down the notebook's hub-API path is lost for good (the relay
    died and something else took its port; with the old design: something took the
    forwarded port). After the restart poll must report the server dead and stop it,
    not keep it "running" forever with its tokens going to whoever holds the port."""
    victim = "hpcalice"
    with victim_server(hub, sshd, victim, server) as pid:
        env = minihpc.environ(pid)
        api_port = urlparse(env["JUPYTERHUB_API_URL"]).port
        assert api_port
        hub.stop_hub()
        squatter = socket.socket()
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as any squatter would
        try:
            relays = relay_pids(victim, env["JUPYTER_RUNTIME_DIR"])
            for relay in relays:
                os.kill(int(relay), signal.SIGKILL)  # the OOM killer, say
            minihpc.wait_for(
                lambda: squatter.bind(("127.0.0.1", api_port)) or True,
                30,
                f"the port to be free (relays killed: {relays})",
            )
            squatter.listen(1)
            hub.start_hub()
            wait_showing_hub_log(
                hub, lambda: hub.server_model(victim, server) is None, "the server reported gone"
            )
            wait_showing_hub_log(
                hub, lambda: not minihpc.session_notebooks(victim, sshd, server), "the notebook ended"
            )
        finally:
            squatter.close()
    assert slurm.squeue(victim) == []
    assert "is gone; its port may have been taken" in hub.log_text()


# --- A job cannot choose where the proxy sends its URL --------------------------------


class Canary:
    """An internal service on another host of the HPC network (127.0.0.2): answers any GET
    with JSON, as a service the proxy must never be turned into a door to would."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.paths: list[str] = []
        paths = self.paths

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                paths.append(self.path)
                body = b'{"version": "canary"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# What the hostile start-up script writes where the hub reads the server's address.
FORGE = {
    # Slurm: the job's address file, "<host> <port> <job id>"; then no server at all.
    "slurm": 'printf \'%s %s %s\\n\' {host} {port} "$SLURM_JOB_ID" > "$d/address"\nsleep 600\n',
    # SSH: a runtime file the launcher reads before the real server's (only the port counts).
    "ssh": 'printf \'{{"port": %s}}\\n\' {port} > "$d/jpserver-0.json"\n',
}


@pytest.mark.parametrize(
    ("server", "target"),
    [
        ("mini-exclusive", "a service on another host"),
        ("mini-exclusive", "the hub API"),
        ("mini-exclusive", "another user's notebook"),
        ("mini-shared", "the hub API"),
        ("mini-shared", "another user's notebook"),
    ],
)
def test_a_job_cannot_choose_where_the_proxy_sends_its_url(
    hub: minihpc.Hub, sshd: minihpc.SSHD, slurm: minihpc.Slurm, server: str, target: str
) -> None:
    """The hostile user's start-up script writes another host:port where the hub reads its
    server's address: the hub takes the host from Slurm (or values) and only the port
    from the job, and adds no route before a Jupyter server for the user's URL prefix
    answers there. The start fails with a clear error and nothing is left running."""
    backend = "slurm" if server == "mini-exclusive" else "ssh"
    canary = Canary()
    other = "hpcbob"
    try:
        if target == "a service on another host":
            host, port = "127.0.0.2", canary.port
        elif target == "the hub API":
            host, port = "127.0.0.1", hub.hub_port
        else:
            r = hub.start_server(other, "mini-shared")
            assert r.status_code in (201, 202), r.text
            hub.wait_ready(other, "mini-shared")
            host, port = "127.0.0.1", urlparse(hub.routes()[f"/user/{other}/mini-shared"]["target"]).port
        script = Path(f"/home/{HOSTILE}/forge-address.sh")
        script.write_text(FORGE[backend].format(host=host, port=port))
        try:
            outcome, message = hub.start_outcome(HOSTILE, server, {"startup_script": "~/forge-address.sh"})
        finally:
            script.unlink()
        route = hub.routes().get(f"/user/{HOSTILE}/{server}")
        assert route is None, f"the proxy routes {HOSTILE}'s {server} to {route['target']} ({target})"
        assert outcome == "failed", message
        assert "refusing to route there" in message and f"/user/{HOSTILE}/{server}/" in message, message
        assert canary.paths == []
        wait_showing_hub_log(hub, lambda: hub.server_model(HOSTILE, server) is None, "the failed server gone")
        wait_showing_hub_log(
            hub, lambda: not [j for j in slurm.squeue(HOSTILE) if j["state"] != "COMPLETED"], "no job left"
        )
        assert not minihpc.session_notebooks(HOSTILE, sshd, server)
    finally:
        canary.stop()
        for user, name in ((HOSTILE, server), (other, "mini-shared")):
            if hub.server_model(user, name) is not None:
                hub.stop_server(user, name)


# --- The API token never enters a Slurm job's record ----------------------------------


def as_user(user: str, *argv: str, env: dict[str, str] | None = None) -> str:
    """What ``user`` (an ordinary account) sees running argv: stdout and stderr."""
    r = subprocess.run(
        ["runuser", "-u", user, "--", *argv], capture_output=True, text=True, env=env, check=False
    )
    return r.stdout + r.stderr


def test_the_api_token_never_enters_the_slurm_job_record(
    hub: minihpc.Hub, sshd: minihpc.SSHD, slurm: minihpc.Slurm
) -> None:
    """A victim's Slurm notebook runs; the hostile user reads what Slurm shows every account
    (``scontrol show job -dd``, every process's command line); the test reads, as root, what
    slurmctld keeps of the job (its batch script, its saved environment in StateSaveLocation,
    which slurmdbd would store too). The notebook's API token is in none of them: it reaches
    the job through a 0600 file in the victim's 0700 run directory, which the hostile user
    cannot read."""
    victim, server = "hpcbob", "mini-exclusive"
    r = hub.start_server(victim, server)
    assert r.status_code in (201, 202), r.text
    try:
        hub.wait_ready(victim, server)
        pids = minihpc.session_notebooks(victim, sshd, server)
        assert len(pids) == 1, pids
        env = minihpc.environ(pids[0])
        token = env["JUPYTERHUB_API_TOKEN"]
        assert len(token) >= 32  # the notebook has its token (positive control)
        run_dir = Path(env["JUPYTER_RUNTIME_DIR"])
        # Jobs are named for their run (hpchub-<run id>), the name of the run directory.
        jobs = [j for j in slurm.squeue(victim) if j["name"] == f"hpchub-{run_dir.name}"]
        assert len(jobs) == 1, jobs
        job_id = jobs[0]["id"]

        seen = {
            f"{HOSTILE}: scontrol show job -dd": as_user(
                HOSTILE, "scontrol", "show", "job", "-dd", job_id, env=slurm.env
            ),
            f"{HOSTILE}: ps -eww -o args": as_user(HOSTILE, "ps", "-eww", "-o", "args"),
            "root: scontrol write batch_script": minihpc.run(
                "scontrol", "write", "batch_script", job_id, "-", env=slurm.env
            ).stdout,
        }
        assert f"JobId={job_id}" in seen[f"{HOSTILE}: scontrol show job -dd"]  # it did see the job
        assert "jupyterhub-singleuser" in seen["root: scontrol write batch_script"]
        saved = [p for p in (slurm.dir / "state").rglob("*") if p.is_file() and f"job.{job_id}" in str(p)]
        assert saved, "slurmctld saved nothing of the job"
        for p in saved:
            seen[f"slurmctld state {p.relative_to(slurm.dir)}"] = p.read_bytes().decode(errors="replace")
        leaks = [where for where, text in seen.items() if token in text]
        assert not leaks, f"the API token of {victim}'s notebook is in: {leaks}"

        # Where it is instead: a 0600 file of the victim's in a 0700 directory.
        env_file = run_dir / "env"
        st = env_file.stat()
        assert (st.st_mode & 0o777, run_dir.stat().st_mode & 0o777) == (0o600, 0o700)
        assert st.st_uid == run_dir.stat().st_uid == int(minihpc.run("id", "-u", victim).stdout)
        assert token in env_file.read_text()
        denied = as_user(HOSTILE, "cat", str(env_file))
        assert "Permission denied" in denied and token not in denied, denied
    finally:
        hub.stop_server(victim, server)
