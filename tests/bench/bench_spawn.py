"""Spawn time against the physical limit (issue 19, item 17), on the mini HPC center.

For each level, the hub's spawn (REST start -> the server's API answers through the
proxy) beside the same real ``jupyterhub-singleuser`` started by hand, in the same run:

- SSH level: by hand = the server started over an already-open SSH connection (OpenSSH
  ControlMaster) on the same login node, as the same user, with the same environment and
  command line the hub gives it (read from the hub-started server's /proc), on a port
  chosen beforehand, so its proxy route is in place before it starts.
- Slurm level: by hand = ``sbatch`` over that open connection of a job that runs the same
  server (same directives, environment and command line), on the same idle cluster with
  the same slurm.conf: Slurm's scheduling plus the server's own start inside the job.

Readiness is the same for both: ``GET /user/<name>/<server>/api`` through the proxy
answers jupyter_server's JSON (asked once the hub's REST request returns; for a start by
hand, every 10 ms once the server's runtime file exists). Hub and hand runs alternate
(ABBA, each after a random pause of up to 1 s), n of each. Prints p50/p95 of each, the ratios, and where the hub's time went (from its
log, the run directory's files, slurmctld's and slurmd's logs).

    python tests/bench/bench_spawn.py [--n 20] [--write docs/performance.md] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

# `make bench` runs this file as a script: make the repository importable as `tests`.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hpchub.launcher import stop_script  # noqa: E402
from hpchub.remoteops import export_lines  # noqa: E402
from tests.harness import minihpc  # noqa: E402

USER = "hpcalice"
LEVELS = {"ssh": "mini-shared", "slurm": "mini-exclusive"}
TARGETS = {"ssh": 1.05, "slurm": 1.10}
POLL = 0.05  # the readiness poll after a hub start that answered 202 (still pending)
LOAD_BEFORE = os.getloadavg()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# --- readiness: the same check for both ------------------------------------------------
class Reader:
    """Polls ``/user/<name>/<server>/api`` through the proxy until jupyter_server answers."""

    def __init__(self, public: str) -> None:
        self.public = public
        self.session = requests.Session()

    def answers(self, server: str) -> bool:
        try:
            r = self.session.get(f"{self.public}/user/{USER}/{server}/api", timeout=5, allow_redirects=False)
        except requests.RequestException:
            return False
        if r.status_code != 200 or not r.headers.get("Content-Type", "").startswith("application/json"):
            return False
        try:
            return isinstance(r.json().get("version"), str)
        except ValueError:
            return False

    def wait(self, server: str, timeout: float = 180, runtime_dir: Path | None = None) -> float:
        """When it answers (epoch seconds). ``runtime_dir`` (a start by hand): first watch for
        the server's runtime file there (a stat every 10 ms), then ask every 10 ms. Asking
        through the proxy all along would load the machine the server is starting on: each
        failed request is also a hub error page (the proxy's error target)."""
        deadline = time.monotonic() + timeout
        while runtime_dir is not None and runtime_file_time(runtime_dir) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{USER}/{server} wrote no runtime file in {timeout} s")
            time.sleep(0.01)
        while time.monotonic() < deadline:
            if self.answers(server):
                return time.time()
            time.sleep(0.01 if runtime_dir is not None else POLL)
        raise TimeoutError(f"{USER}/{server} did not answer through the proxy in {timeout} s")


# --- by hand: an open SSH connection --------------------------------------------------
class Hand:
    """The user's own OpenSSH connection (ControlMaster), opened once and kept open."""

    def __init__(self, workdir: Path, sshd: minihpc.SSHD) -> None:
        self.dir = workdir / "hand"
        self.dir.mkdir(exist_ok=True)
        key = sshd.user_key(self.dir / "id", USER)
        (self.dir / "known_hosts").write_text(sshd.known_hosts([("127.0.0.1", sshd.port)]))
        self.control = self.dir / "ctl"
        self.base = [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            str(key),
            "-o",
            f"CertificateFile={key}-cert.pub",
            "-o",
            f"UserKnownHostsFile={self.dir / 'known_hosts'}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-S",
            str(self.control),
            "-p",
            str(sshd.port),
            f"{USER}@127.0.0.1",
        ]
        self.master: subprocess.Popen[bytes] | None = None

    def open(self) -> None:
        self.master = subprocess.Popen(
            [*self.base[:-1], "-M", "-N", "-o", "ServerAliveInterval=15", self.base[-1]],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.dir / "master.log").open("wb"),
        )
        minihpc.wait_for(
            lambda: (
                subprocess.run(
                    [*self.base[:-1], "-O", "check", self.base[-1]], capture_output=True
                ).returncode
                == 0
            ),
            30,
            "the ControlMaster connection",
            interval=0.1,
        )

    def run(self, script: str, timeout: float = 120) -> str:
        """A script on the open connection's new session (``/bin/sh -s``, as the hub runs it)."""
        r = subprocess.run(
            [*self.base[:-1], "-o", "ControlMaster=no", self.base[-1], "/bin/sh", "-s"],
            input=script,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if r.returncode != 0:
            raise RuntimeError(f"ssh by hand failed ({r.returncode}): {r.stderr.strip()[-500:]}")
        return r.stdout

    def close(self) -> None:
        if self.master and self.master.poll() is None:
            self.master.terminate()
            self.master.wait(10)


# --- what the hub gave its server ---------------------------------------------------------
def server_process(sshd: minihpc.SSHD, server: str) -> str:
    pids = minihpc.session_notebooks(USER, sshd, server)
    # The server itself, not the launcher's shell or the job script around it.
    pids = [p for p in pids if "jupyterhub-singleuser" in Path(f"/proc/{p}/cmdline").read_bytes().decode()]
    if len(pids) != 1:
        raise RuntimeError(f"expected one server process of {USER}/{server}, found {pids}")
    return pids[0]


def hub_given(sshd: minihpc.SSHD, server: str, site_env: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The environment the hub passed (JupyterHub's variables + values' singleuser.environment)
    and the command line, read from the running hub-started server (as root)."""
    pid = server_process(sshd, server)
    env = minihpc.environ(pid)
    given = {k: v for k, v in env.items() if k.startswith(("JUPYTERHUB_", "JPY_")) or k in site_env}
    argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    if "python" in Path(argv[0]).name:  # the venv's python running the entry point script
        argv = argv[1:]
    argv = [a for a in argv if not a.startswith(("--ServerApp.port=", "--ServerApp.ip="))]
    return given, argv


def fresh_token(hub: minihpc.Hub, server: str) -> str:
    """A token of the user with a server token's scopes (the hub revokes its own at stop)."""
    r = hub.request(
        "POST",
        f"/users/{USER}/tokens",
        json={
            "note": "bench: by-hand server",
            "expires_in": 3600,
            "scopes": [f"access:servers!server={USER}/{server}", f"users:activity!user={USER}"],
        },
    )
    assert r.status_code in (200, 201), r.text
    return r.json()["token"]


class Routes:
    """configurable-http-proxy's API: the by-hand server's route, added before it starts."""

    def __init__(self, hub: minihpc.Hub) -> None:
        self.url = f"http://127.0.0.1:{hub.proxy_api_port}/api/routes"
        self.headers = {"Authorization": f"token {hub.proxy_token}"}

    def add(self, server: str, target: str) -> None:
        r = requests.post(
            f"{self.url}/user/{USER}/{server}", json={"target": target}, headers=self.headers, timeout=10
        )
        r.raise_for_status()

    def delete(self, server: str) -> None:
        requests.delete(f"{self.url}/user/{USER}/{server}", headers=self.headers, timeout=10)


# --- timestamps from logs and files -----------------------------------------------------
def log_time(stamp: str) -> float:
    """JupyterHub's '2026-11-26 23:27:18.123' / Slurm's '2026-11-26T23:27:18.123' (local)."""
    return datetime.fromisoformat(stamp.replace("T", " ")).timestamp()


HUB_LINE = re.compile(r"^\[\w (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) [^\]]*\] (.*)$")


def hub_lines(hub: minihpc.Hub, since: int) -> list[tuple[float, str]]:
    out = []
    for line in hub.log_text().splitlines()[since:]:
        m = HUB_LINE.match(line)
        if m:
            out.append((log_time(m.group(1)), m.group(2)))
    return out


SLURM_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})\] (.*)$")


def slurm_events(slurm: minihpc.Slurm, job_id: str) -> dict[str, float]:
    """When slurmctld took the submission, allocated the node, and slurmd launched the job."""
    found: dict[str, float] = {}
    patterns = {
        "submitted": (slurm.dir / "slurmctld.log", rf"_slurm_rpc_submit_batch_job: JobId={job_id}\b"),
        "allocated": (slurm.dir / "slurmctld.log", rf"(sched|backfill).*(Allocate|Started) JobId={job_id}\b"),
        "launched": (slurm.dir / "slurmd-mini01.log", rf"Launching batch job {job_id}\b"),
    }
    for name, (path, pattern) in patterns.items():
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            m = SLURM_LINE.match(line)
            if m and re.search(pattern, m.group(2)):
                found[name] = log_time(m.group(1))
                if name == "allocated":  # which pass started it: the main scheduler or backfill
                    found["allocated_by"] = m.group(2).split(":", 1)[0]
                break
    return found


def mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def runtime_file_time(run_dir: Path) -> float | None:
    times = [t for f in run_dir.glob("jpserver-*.json") if (t := mtime(f)) is not None]
    return min(times) if times else None


# --- one spawn of each kind ---------------------------------------------------------------
class Bench:
    def __init__(self, workdir: Path, slurm: minihpc.Slurm, sshd: minihpc.SSHD, hub: minihpc.Hub) -> None:
        self.slurm, self.sshd, self.hub = slurm, sshd, hub
        self.reader = Reader(hub.public)
        self.routes = Routes(hub)
        self.hand = Hand(workdir, sshd)
        self.home = Path(os.path.expanduser(f"~{USER}"))
        self.given: dict[str, tuple[dict[str, str], list[str]]] = {}
        self.directives: list[str] = []
        self.profile: Path | None = None  # py-spy's samples of the hub's spawns are added here
        self.hand_runs: list[str] = []  # by-hand run directories (and job outputs) to remove

    # hub ------------------------------------------------------------------------------
    def hub_spawn(self, level: str, while_up: Callable[[str], None] | None = None) -> dict[str, Any]:
        server = LEVELS[level]
        since = len(self.hub.log_text().splitlines())
        spy = start_profile(self.hub, self.profile) if self.profile else None
        t0 = time.time()
        r = self.hub.start_server(USER, server)
        if r.status_code not in (201, 202):
            raise RuntimeError(f"start of {server} failed: {r.status_code} {r.text}")
        t_rest = time.time()
        t_ready = self.reader.wait(server)
        if spy is not None:
            stop_profile(spy, self.profile)
        state = (self.hub.server_model(USER, server) or {}).get("state") or {}
        run: dict[str, Any] = {"total": t_ready - t0, "t0": t0, "rest_returned": t_rest, "ready": t_ready}
        run.update(self.hub_marks(level, state, since))
        if while_up is not None:
            while_up(level)
        self.hub.stop_server(USER, server)
        if level == "slurm":
            self.wait_idle()
        return run

    def hub_marks(self, level: str, state: dict[str, Any], since: int) -> dict[str, Any]:
        marks: dict[str, Any] = {"run_id": state.get("run_id")}
        for t, msg in hub_lines(self.hub, since):
            m = re.search(r"spawn steps of \S+: (.*); ([0-9.]+) s in all", msg)
            if m:
                marks["steps"] = {
                    k: float(v) for k, v in re.findall(r"([a-zA-Z ]+?) ([0-9.]+) s(?:, |$)", m.group(1))
                }
                marks["steps_total"] = float(m.group(2))
                marks["steps_logged"] = t
            m = re.search(r"took ([0-9.]+) seconds to start", msg)
            if m:
                marks["hub_took"] = float(m.group(1))
                marks["hub_done"] = t
        if state.get("run_id"):
            sub = "ssh" if level == "ssh" else "jobs"
            d = self.home / ".hpchub" / sub / state["run_id"]
            marks["launcher_started"] = mtime(d / "launcher")
            marks["server_forked"] = mtime(d / "pid")
            marks["runtime_file"] = runtime_file_time(d)
            marks["address_file"] = mtime(d / "address")
        if state.get("job_id"):
            marks["job_id"] = state["job_id"]
            marks.update(slurm_events(self.slurm, state["job_id"]))
        return marks

    # by hand ----------------------------------------------------------------------------
    def hand_spawn(self, level: str) -> dict[str, Any]:
        server = LEVELS[level]
        env, argv = self.given[level]
        env = {**env, "JUPYTERHUB_API_TOKEN": fresh_token(self.hub, server)}
        if "JPY_API_TOKEN" in env:
            env["JPY_API_TOKEN"] = env["JUPYTERHUB_API_TOKEN"]
        port = minihpc.free_port()
        name = f"hand-{secrets.token_hex(4)}"
        self.hand_runs.append(name)
        run_dir = f'"$HOME"/.hpchub/hand/{name}'
        cmd = " ".join(
            shlex.quote(a) for a in [*argv, f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1"]
        )
        self.routes.add(server, f"http://127.0.0.1:{port}")
        try:
            if level == "ssh":
                # As the hub's launcher does: a run directory, the shell's PID in a file there
                # (its time: when the shell ran), the server in its own session.
                script = (
                    f'{export_lines(env)}\nd={run_dir}\nmkdir -p "$d"\necho $$ > "$d/shell"\n'
                    f'export JUPYTER_RUNTIME_DIR="$d"\ncd "$HOME"\nsetsid {cmd} </dev/null >"$d/server.log" 2>&1 &\n'
                    'echo $! > "$d/pid"\necho $!\n'
                )
                t0 = time.time()
                pid = int(self.hand.run(script).split()[-1])
                d = self.home / ".hpchub" / "hand" / name
                try:
                    t_ready = self.reader.wait(server, runtime_dir=d)
                    run = {"name": name, "total": t_ready - t0, "t0": t0, "ready": t_ready, "pid": pid}
                    # Before the stop: the server removes its runtime file when it ends.
                    run["runtime_file"] = runtime_file_time(d)
                    run["launcher_started"] = mtime(d / "shell")
                    run["server_forked"] = mtime(d / "pid")
                finally:
                    self.hand.run(stop_script(pid, 5))
            else:
                job = "\n".join(
                    [
                        "#!/bin/bash",
                        f"#SBATCH --job-name={name}",
                        f"#SBATCH --output=.hpchub/hand/{name}.out",
                        *[f"#SBATCH {d}" for d in self.directives],
                        export_lines(env),
                        f'd={run_dir}; mkdir -p "$d"; export JUPYTER_RUNTIME_DIR="$d"',
                        'cd "$HOME"',
                        f"exec {cmd}",
                    ]
                )
                eof = f"HAND_{secrets.token_hex(6)}"
                script = f"mkdir -p .hpchub/hand\nsbatch --parsable --export=ALL <<'{eof}'\n{job}\n{eof}\n"
                t0 = time.time()
                job_id = self.hand.run(script).strip().splitlines()[-1].split(";")[0]
                d = self.home / ".hpchub" / "hand" / name
                try:
                    t_ready = self.reader.wait(server, runtime_dir=d)
                    run = {"name": name, "total": t_ready - t0, "t0": t0, "ready": t_ready, "job_id": job_id}
                    run["runtime_file"] = runtime_file_time(d)
                finally:
                    minihpc.run("scancel", job_id, env=self.slurm.env, check=False)
                run.update(slurm_events(self.slurm, job_id))
                self.wait_idle()
        finally:
            self.routes.delete(server)
        return run

    def close(self) -> None:
        self.hand.close()
        hand = self.home / ".hpchub" / "hand"
        for name in self.hand_runs:
            shutil.rmtree(hand / name, ignore_errors=True)
            (hand / f"{name}.out").unlink(missing_ok=True)

    def wait_idle(self) -> None:
        """Every job ended (an idle cluster for the next run)."""
        minihpc.wait_for(
            lambda: (
                not minihpc.run("squeue", "-h", "-o", "%i", env=self.slurm.env, check=False).stdout.strip()
            ),
            60,
            "an idle cluster",
            interval=0.2,
        )

    # set-up -----------------------------------------------------------------------------
    def learn(self, level: str) -> dict[str, Any]:
        """The first spawn of the run (not counted): what a cold start costs (a new SSH
        connection, the identity lookup and certificate), and what the hub gives its server."""
        return self.hub_spawn(level, while_up=self.read_given)

    def read_given(self, level: str) -> None:
        server = LEVELS[level]
        site = self.hub.values["systems"]["mini"]["singleuser"].get("environment") or {}
        self.given[level] = hub_given(self.sshd, server, site)
        if level == "slurm":
            job_id = (self.hub.server_model(USER, server) or {})["state"]["job_id"]
            script = minihpc.run("scontrol", "write", "batch_script", job_id, "-", env=self.slurm.env).stdout
            self.directives = [
                line.split(None, 1)[1]
                for line in script.splitlines()
                if line.startswith("#SBATCH ") and not line.split()[1].startswith(("--job-name", "--output"))
            ]


def scheduling_settings(slurm: minihpc.Slurm) -> str:
    out = minihpc.run("scontrol", "show", "config", env=slurm.env).stdout
    keep = ("SchedulerType", "SchedulerParameters", "SchedulerTimeSlice", "SelectType")
    return "; ".join(" ".join(line.split()) for line in out.splitlines() if line.split(" ", 1)[0] in keep)


def bench_values(sshd: minihpc.SSHD) -> dict[str, Any]:
    """The test values with the product's pacing (status interval, Slurm poll, timeouts)."""
    values = minihpc.test_values(sshd, [("127.0.0.1", sshd.port)])
    mini = values["systems"]["mini"]
    # Pre-spawn checks are a site's choice and a hand start has none: like with like.
    mini["preSpawnChecks"] = {}
    mini["ssh"].pop("connectTimeoutSeconds", None)
    mini["ssh"].pop("keepaliveSeconds", None)
    mini["status"] = {"intervalSeconds": 30}
    mini["slurm"].pop("pollSeconds", None)
    return values


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    minihpc.ensure_users()
    minihpc.ensure_venv()
    workdir = minihpc.make_workdir()
    slurm = minihpc.Slurm(workdir)
    sshd = minihpc.SSHD(workdir)
    hub = None
    bench = None
    results: dict[str, Any] = {"n": args.n, "load_before": LOAD_BEFORE}
    try:
        slurm.prepare()
        slurm.start()
        sshd.prepare(slurm.conf)
        sshd.start()
        values = bench_values(sshd)
        hub = minihpc.Hub(workdir, values, sshd.ca_key)
        hub.start()
        hub.ensure_user(USER)
        bench = Bench(workdir, slurm, sshd, hub)
        bench.hand.open()
        results["slurm_settings"] = scheduling_settings(slurm)
        for level in args.levels:
            log(f"warm-up: {level}")
            results.setdefault("first", {})[level] = bench.learn(level)
            # The by-hand start too, once (page cache, first imports), not counted.
            bench.hand_spawn(level)
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {lv: {"hub": [], "hand": []} for lv in args.levels}
        bench.profile = args.profile
        rng = random.Random(args.seed)
        for i in range(args.n):
            for level in args.levels:
                order: list[tuple[str, Callable[[str], dict[str, Any]]]] = [
                    ("hub", bench.hub_spawn),
                    ("hand", bench.hand_spawn),
                ]
                if i % 2:
                    order.reverse()  # ABBA: neither kind always goes first
                for kind, fn in order:
                    # slurmctld starts a new job on its next scheduling pass (once a second
                    # here: bf_interval=1); after a wait that ends on its cycle (the cluster
                    # idle again), a fixed delay would put one kind always early in that
                    # second and the other late. A random pause gives both the same odds.
                    time.sleep(rng.uniform(0, 1))
                    runs[level][kind].append(fn(level))
                log(
                    f"{i + 1}/{args.n} {level}: hub {runs[level]['hub'][-1]['total']:.2f} s, "
                    f"by hand {runs[level]['hand'][-1]['total']:.2f} s"
                )
        results["runs"] = runs
        if args.profile:
            spawns = sum(len(runs[lv]["hub"]) for lv in runs)
            results["profile"] = profile_summary(args.profile, spawns)
    finally:
        if bench:
            bench.close()
        if hub:
            for server in LEVELS.values():  # a run that failed half-way: nothing outlives it
                if hub.hub and hub.hub.running() and hub.server_model(USER, server) is not None:
                    hub.stop_server(USER, server)
            hub.stop()
        sshd.stop()
        slurm.stop()
        if args.keep_logs:  # the hub's, sshd's, slurmctld's and slurmd's logs, for study
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            for log_file in [*workdir.glob("*.log"), *workdir.glob("*/*.log"), *workdir.glob("slurm/*.log")]:
                shutil.copy(log_file, args.keep_logs / f"{log_file.parent.name}-{log_file.name}")
        shutil.rmtree(workdir, ignore_errors=True)
    results["load_after"] = os.getloadavg()
    return results


# --- py-spy of the hub ------------------------------------------------------------------
PROFILE_RATE = 100  # samples per second


def start_profile(hub: minihpc.Hub, out: Path) -> subprocess.Popen[bytes]:
    """py-spy samples the hub (never pausing it: --nonblocking) during one spawn."""
    assert hub.hub and hub.hub.popen
    spy = subprocess.Popen(
        ["py-spy", "record", "-p", str(hub.hub.popen.pid), "-r", str(PROFILE_RATE), "-f", "raw"]
        + ["-o", f"{out}.part", "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.5)  # attached and sampling before the spawn begins
    return spy


def stop_profile(spy: subprocess.Popen[bytes], out: Path) -> None:
    """End one spawn's sampling and add its samples to ``out``."""
    spy.send_signal(signal.SIGINT)
    spy.wait(60)
    part = Path(f"{out}.part")
    if part.exists():
        with out.open("a") as f:
            f.write(part.read_text(errors="replace"))
        part.unlink()


def profile_kind(frames: list[str]) -> str:
    """What a busy sample of the hub was doing, from its stack (innermost match first)."""
    if any("Session.commit" in f for f in frames):
        # Whose commit: the innermost JupyterHub or hpchub frame above SQLAlchemy's.
        owner = next((f for f in reversed(frames) if "hpchub/" in f or "jupyterhub/" in f), "")
        return (
            "sqlite commits (synced), hpchub's"
            if "hpchub/" in owner
            else "sqlite commits (synced), JupyterHub's"
        )
    for kind, words in (
        ("other database work", ("sqlalchemy",)),
        ("SSH (asyncssh)", ("asyncssh",)),
        ("HTTP (tornado, aiohttp: REST, readiness checks, proxy API)", ("tornado", "aiohttp")),
    ):
        if any(w in f for f in frames for w in words):
            return kind
    return "other"


def profile_summary(raw: Path, spawns: int, top: int = 8) -> list[str]:
    """The hub's busy samples (not waiting in select/poll) as milliseconds of the hub's time
    per hub spawn: by kind of work, then the busiest functions (inclusive, once per stack)."""
    busy: list[tuple[list[str], int]] = []
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if count.isdigit() and frames and not any(w in frames[-1] for w in ("select (", "poll (", "epoll")):
            busy.append((frames, int(count)))
    total = sum(n for _, n in busy)
    ms = 1000 / PROFILE_RATE / max(spawns, 1)
    kinds: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    for frames, n in busy:
        kinds[profile_kind(frames)] = kinds.get(profile_kind(frames), 0) + n
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
    ranked = sorted(
        ((f, n) for f, n in inclusive.items() if n < 0.95 * total and "_run_once" not in f),
        key=lambda kv: -kv[1],
    )
    by_kind = sorted(kinds.items(), key=lambda kv: -kv[1])
    return (
        [f"{total * ms:.0f} ms busy per hub spawn in all ({total} samples at {PROFILE_RATE} Hz)"]
        + [f"{n * ms:.1f} ms {kind}" for kind, n in by_kind]
        + [f"{n * ms:.1f} ms in {frame}" for frame, n in ranked[:top]]
    )


# --- the report ---------------------------------------------------------------------------
def med(runs: list[dict[str, Any]], a: str, b: str) -> float | None:
    """Median of (b - a) over runs that have both timestamps."""
    d = [r[b] - r[a] for r in runs if r.get(a) is not None and r.get(b) is not None]
    return statistics.median(d) if d else None


def table(results: dict[str, Any]) -> str:
    runs = results["runs"]
    lines = [
        f"n = {results['n']} of each, alternating; seconds from the request to the server's API "
        "answering through the proxy.",
        "",
        "| level | hub p50 | hub p95 | by hand p50 | by hand p95 | p50 ratio | p95 ratio | target (p50) | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for level, kinds in runs.items():
        hub = [r["total"] for r in kinds["hub"]]
        hand = [r["total"] for r in kinds["hand"]]
        ratio = pct(hub, 0.5) / pct(hand, 0.5)
        ratio95 = pct(hub, 0.95) / pct(hand, 0.95)
        target = TARGETS[level]
        verdict = "met" if ratio <= target else f"MISSED by {pct(hub, 0.5) - target * pct(hand, 0.5):.2f} s"
        lines.append(
            f"| {'SSH' if level == 'ssh' else 'Slurm'} | {pct(hub, 0.5):.2f} | {pct(hub, 0.95):.2f} | "
            f"{pct(hand, 0.5):.2f} | {pct(hand, 0.95):.2f} | {ratio:.3f} | {ratio95:.3f} | <= {target:.2f} | {verdict} |"
        )
    lines.append("")
    lines += first_spawns(results.get("first") or {})
    lines += own_part(runs)
    lines += breakdown(runs)
    if results.get("profile"):
        lines += ["The hub's busy time (py-spy, all runs; inclusive, per hub spawn):", ""]
        lines += [f"- `{p}`" for p in results["profile"]] + [""]
    return "\n".join(lines)


def first_spawns(first: dict[str, dict[str, Any]]) -> list[str]:
    """The run's first hub spawn, not counted in the table: the user's SSH connection is new
    (a handshake) and so is the certificate (the identity lookup, as the service account)."""
    if not first:
        return []
    level, run = next(iter(first.items()))
    steps = run.get("steps") or {}
    return [
        f"The run's first hub spawn ({'SSH' if level == 'ssh' else 'Slurm'} level, not counted: a new SSH "
        f"connection and certificate) took {run['total']:.2f} s; of it the identity lookup and certificate "
        f"{steps.get('credentials', float('nan')):.3f} s, the SSH handshake (login host) "
        f"{steps.get('login host', float('nan')):.3f} s.",
        "",
    ]


def shared_part(level: str, run: dict[str, Any]) -> float | None:
    """What a run shares with every other start of the same server: the server's own start
    (SSH: process started -> runtime file; Slurm: job launched -> runtime file) and, for
    Slurm, the scheduler's (submitted -> allocated). The machine's load moves these by
    seconds from one run to the next, the same for both kinds."""
    keys = ("server_forked", "runtime_file") if level == "ssh" else ("launched", "runtime_file")
    if any(run.get(k) is None for k in keys):
        return None
    part = run[keys[1]] - run[keys[0]]
    if level == "slurm":
        if run.get("submitted") is None or run.get("allocated") is None:
            return None
        part += run["allocated"] - run["submitted"]
    return part


def own_part(runs: dict[str, Any]) -> list[str]:
    """The spawn time without the shared part: the hub's work against what a start by hand
    needs besides (the SSH command, sbatch, the first answer through the proxy), and what
    the p50 ratio would be with the shared part equal: a figure the machine's load hardly
    moves, unlike the ratio of the totals."""
    lines = [
        "Each spawn without the part both kinds share (the server's own start, and Slurm's "
        "scheduling), medians:",
        "",
        "| level | hub | by hand | hub - by hand | p50 ratio with the shared part equal |",
        "|---|---|---|---|---|",
    ]
    for level, kinds in runs.items():
        own: dict[str, list[float]] = {}
        for kind in ("hub", "hand"):
            own[kind] = [
                r["total"] - shared for r in kinds[kind] if (shared := shared_part(level, r)) is not None
            ]
        if not own["hub"] or not own["hand"]:
            continue
        extra = statistics.median(own["hub"]) - statistics.median(own["hand"])
        hand_p50 = pct([r["total"] for r in kinds["hand"]], 0.5)
        lines.append(
            f"| {'SSH' if level == 'ssh' else 'Slurm'} | {statistics.median(own['hub']):.3f} | "
            f"{statistics.median(own['hand']):.3f} | {extra:+.3f} | {(hand_p50 + extra) / hand_p50:.3f} |"
        )
    return lines + [""]


STEP_ORDER = (
    "options",
    "credentials",
    "hub",
    "prechecks",
    "login host",
    "tunnel",
    "launch",
    "submit",
    "queue",
    "address",
    "server",
    "route",
)


def hub_detail(hub: list[dict[str, Any]]) -> list[tuple[str, float | None]]:
    """The hub's own split of its spawns (medians): JupyterHub around hpchub's start(),
    each of hpchub's steps (its "spawn steps" log line), the proxy route and the answer."""
    for r in hub:
        if r.get("hub_took") is not None and r.get("hub_done") is not None:
            r["hub_began"] = r["hub_done"] - r["hub_took"]
    rows: list[tuple[str, float | None]] = [
        ("REST request -> JupyterHub's spawn begins", med(hub, "t0", "hub_began")),
    ]
    seen = {name for r in hub for name in r.get("steps") or {}}
    steps = [n for n in STEP_ORDER if n in seen] + sorted(seen - set(STEP_ORDER))
    for name in steps:
        values = [r["steps"][name] for r in hub if name in (r.get("steps") or {})]
        label = {
            "hub": "JupyterHub between the option check and start()",
            "options": "options checked (cell rules, validator)",
            "credentials": "credentials (certificate; identity lookup when not cached)",
            "prechecks": "pre-spawn checks",
            "login host": "login host chosen, run id committed to the DB",
            "launch": "launcher: server started, runtime file seen, port read",
            "submit": "env file + sbatch",
            "queue": "job seen RUNNING on the status board (its node)",
            "address": "server up: its address file seen on the login node",
            "server": "address file read (login node)",
            "route": "route confirmed (GET <prefix>api)",
        }.get(name, name)
        rows.append((f"hpchub: {label}", statistics.median(values) if values else None))
    for r in hub:
        if r.get("steps_logged") is not None and r.get("steps_total") is not None:
            r["steps_began"] = r["steps_logged"] - r["steps_total"]
    rows.insert(
        1,
        ("JupyterHub before hpchub's steps (token, OAuth client, DB)", med(hub, "hub_began", "steps_began")),
    )
    rows.append(
        ("JupyterHub after start() returned (its own readiness check)", med(hub, "steps_logged", "hub_done"))
    )
    rows.append(("spawn done -> REST answer (proxy route added)", med(hub, "hub_done", "rest_returned")))
    rows.append(("REST answer -> API answers through the proxy", med(hub, "rest_returned", "ready")))
    return rows


def breakdown(runs: dict[str, Any]) -> list[str]:
    def fmt(v: float | None) -> str:
        return "" if v is None else f"{v:.3f}"

    def diff(a: float | None, b: float | None) -> str:
        return "" if a is None or b is None else f"{a - b:+.3f}"

    out = ["Where the time goes (medians, seconds; timestamps from the hub's log, the run", ""]
    out[0] += " directory's files, slurmctld's and slurmd's logs):"
    for level, kinds in runs.items():
        hub, hand = kinds["hub"], kinds["hand"]
        title = "SSH level" if level == "ssh" else "Slurm level"
        out += [f"| {title} | hub | by hand | hub - by hand |", "|---|---|---|---|"]
        if level == "ssh":
            phases = [
                ("request -> a shell runs on the login node", "t0", "launcher_started"),
                ("shell -> server process started", "launcher_started", "server_forked"),
                ("server started -> its runtime file written", "server_forked", "runtime_file"),
                ("runtime file -> API answers through the proxy", "runtime_file", "ready"),
            ]
        else:
            phases = [
                ("request -> slurmctld has the job", "t0", "submitted"),
                ("submitted -> allocated (Slurm's scheduling)", "submitted", "allocated"),
                ("allocated -> slurmd launches the job", "allocated", "launched"),
                ("launched -> server's runtime file written", "launched", "runtime_file"),
                ("runtime file -> job script's address file", "runtime_file", "address_file"),
                ("runtime file -> API answers through the proxy", "runtime_file", "ready"),
            ]
        for label, a, b in phases:
            h, m = med(hub, a, b), med(hand, a, b)
            out.append(f"| {label} | {fmt(h)} | {fmt(m)} | {diff(h, m)} |")
        total_h = statistics.median([r["total"] for r in hub])
        total_m = statistics.median([r["total"] for r in hand])
        out.append(f"| **total** | {fmt(total_h)} | {fmt(total_m)} | {diff(total_h, total_m)} |")
        out += ["", f"| {title}: the hub's spawn, step by step | median |", "|---|---|"]
        out += [f"| {label} | {fmt(v)} |" for label, v in hub_detail(hub)]
        out.append("")
    return out


def write_doc(path: Path, text: str, results: dict[str, Any]) -> None:
    command = "python tests/bench/bench_spawn.py " + " ".join(sys.argv[1:])
    start, end = "<!-- bench-spawn:start -->", "<!-- bench-spawn:end -->"
    lb, la = results["load_before"], results["load_after"]
    block = (
        f"{start}\n_Made by `{command}` on {time.strftime('%Y-%m-%d %H:%M')} ({os.cpu_count()} cores; "
        f"load average {lb[0]:.2f} / {lb[1]:.2f} / {lb[2]:.2f} before the run, "
        f"{la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f} after). Slurm: {results['slurm_settings']}._\n\n"
        f"{text}\n{end}"
    )
    old = path.read_text() if path.exists() else ""
    if start in old:
        head, _, rest = old.partition(start)
        _, _, tail = rest.partition(end)
        path.write_text(head + block + tail)
    else:
        path.write_text(old.rstrip() + "\n\n## Spawn time against the physical limit\n\n" + block + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20, help="spawns of each kind per level (default 20)")
    ap.add_argument("--levels", nargs="+", default=["ssh", "slurm"], choices=list(LEVELS))
    ap.add_argument("--json", type=Path, help="also write the raw timings here")
    ap.add_argument("--keep-logs", type=Path, help="copy the hub's, sshd's and Slurm's logs here at the end")
    ap.add_argument("--seed", type=int, default=1, help="of the random pause before each run (default 1)")
    ap.add_argument(
        "--profile",
        type=Path,
        help="sample the hub with py-spy during its spawns; raw samples here (appended)",
    )
    ap.add_argument("--write", type=Path, help="write the table (and the command) into this Markdown file")
    args = ap.parse_args()
    t = time.monotonic()
    results = run_bench(args)
    text = table(results)
    lb, la = results["load_before"], results["load_after"]
    print(
        f"spawn time against the physical limit ({os.cpu_count()} cores; load average {lb[0]:.2f} before, "
        f"{la[0]:.2f} after; {time.monotonic() - t:.0f} s)\nSlurm: {results['slurm_settings']}\n"
    )
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))
    if args.write:
        write_doc(args.write, text, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
