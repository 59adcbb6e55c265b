"""Spawn latency: REST start -> the server answering through the proxy, for the SSH and
Slurm levels, beside a bare SSH start of the same kind of server (OpenSSH client, same
launcher, no hub, no proxy) measured in the same run on the same mini HPC center.

    python tests/bench/bench_spawn.py [--n 10] [--json tests/artifacts/bench_spawn.json]

Prints a table (p50, p95, mean, min, max in seconds) and the SSH/bare p50 ratio.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

# `make bench` runs this file as a script: make the repository importable as `tests`.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hpchub.launcher import launcher_script, stop_script  # noqa: E402
from hpchub.remoteops import export_lines, parse_marks  # noqa: E402
from tests.harness import minihpc  # noqa: E402

USER = "hpcalice"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def hub_spawn(hub: minihpc.Hub, server: str) -> float:
    t0 = time.monotonic()
    r = hub.start_server(USER, server)
    if r.status_code not in (201, 202):
        raise RuntimeError(f"start of {server} failed: {r.status_code} {r.text}")
    hub.wait_answering(USER, server, timeout=120)
    elapsed = time.monotonic() - t0
    hub.stop_server(USER, server)
    return elapsed


def concurrent_round(hub: minihpc.Hub, servers: list[tuple[str, str]]) -> tuple[list[float], float]:
    """Start every (user, server) at once; per-server latency and the round's wall time."""
    from concurrent.futures import ThreadPoolExecutor

    def one(user: str, server: str) -> float:
        t = time.monotonic()
        r = hub.start_server(user, server)
        if r.status_code not in (201, 202):
            raise RuntimeError(f"start of {user}/{server} failed: {r.status_code} {r.text}")
        hub.wait_answering(user, server, timeout=180)
        return time.monotonic() - t

    t0 = time.monotonic()
    with ThreadPoolExecutor(len(servers)) as pool:
        latencies = list(pool.map(lambda us: one(*us), servers))
    wall = time.monotonic() - t0
    for user, server in servers:
        hub.stop_server(user, server)
    return latencies, wall


class BareSSH:
    """OpenSSH client + the same launcher script: what a user starting it by hand pays."""

    def __init__(self, workdir: Path, sshd: minihpc.SSHD, hub_url: str) -> None:
        self.hub_url = hub_url
        self.dir = workdir / "bare"
        self.dir.mkdir(exist_ok=True)
        self.sshd = sshd
        key = sshd.user_key(self.dir / "id", USER)
        (self.dir / "known_hosts").write_text(sshd.known_hosts([("127.0.0.1", sshd.port)]))
        self.argv = [
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
            "-p",
            str(sshd.port),
            f"{USER}@127.0.0.1",
        ]

    def ssh(self, script: str) -> str:
        return subprocess.run(
            [*self.argv, "/bin/sh", "-s"],
            input=script,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        ).stdout

    def spawn(self) -> float:
        import secrets

        # The same jupyterhub-singleuser the hub starts, with the environment a spawn gives
        # it (a made-up token: /api answers without asking the hub).
        env = {
            "JUPYTERHUB_API_TOKEN": secrets.token_hex(16),
            "JUPYTERHUB_CLIENT_ID": f"jupyterhub-user-{USER}-bench",
            "JUPYTERHUB_API_URL": f"{self.hub_url}/hub/api",
            "JUPYTERHUB_BASE_URL": "/",
            "JUPYTERHUB_USER": USER,
            "JUPYTERHUB_SERVER_NAME": "bench",
            "JUPYTERHUB_SERVICE_PREFIX": f"/user/{USER}/bench/",
            "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:0/user/{USER}/bench/",
            "JUPYTERHUB_OAUTH_CALLBACK_URL": f"/user/{USER}/bench/oauth_callback",
        }
        server = str(minihpc.VENV / "bin" / "jupyterhub-singleuser")
        script = launcher_script(
            env_exports=export_lines(env),
            run_dir=f'"$HOME"/.hpchub/bench-{secrets.token_hex(4)}',
            modules="",
            startup_script=None,
            cmd=[server],
            bind_ip="127.0.0.1",
            wait_seconds=60,
        )
        t0 = time.monotonic()
        marks = parse_marks(self.ssh(script))
        port = int(marks["PORT"])
        minihpc.wait_for(
            lambda: (
                requests.get(f"http://127.0.0.1:{port}/user/{USER}/bench/api", timeout=2).status_code == 200
            ),
            60,
            "bare server",
        )
        elapsed = time.monotonic() - t0
        self.ssh(stop_script(int(marks["PID"]), 5))
        return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10, help="spawns per kind (default 10)")
    ap.add_argument("--json", type=Path, help="also write the raw timings here")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of concurrent spawns (default 3)")
    args = ap.parse_args()

    workdir = minihpc.make_workdir()
    minihpc.ensure_users()
    minihpc.ensure_venv()
    slurm = minihpc.Slurm(workdir)
    sshd = minihpc.SSHD(workdir)
    hub = None
    try:
        slurm.prepare()
        slurm.start()
        sshd.prepare(slurm.conf)
        sshd.start()
        values = minihpc.test_values(sshd, [("127.0.0.1", sshd.port)])
        # Pre-spawn checks are a site's choice and the bare start has none: compare like
        # with like (the checks run concurrently over the pooled connection anyway).
        values["systems"]["mini"]["preSpawnChecks"] = {}
        hub = minihpc.Hub(workdir, values, sshd.ca_key)
        hub.start()
        for user in minihpc.USERS:
            hub.ensure_user(user)
        bare = BareSSH(workdir, sshd, f"http://127.0.0.1:{hub.hub_port}")
        results: dict[str, list[float]] = {"bare ssh": [], "hub ssh": [], "hub slurm": []}
        # Warm-up (first imports, page cache), not counted.
        bare.spawn()
        hub_spawn(hub, "mini-shared")
        for _ in range(args.n):
            results["bare ssh"].append(bare.spawn())
            results["hub ssh"].append(hub_spawn(hub, "mini-shared"))
            results["hub slurm"].append(hub_spawn(hub, "mini-exclusive"))
        # Concurrent spawns: every test user starts an SSH and a Slurm server at once.
        burst = [(u, srv) for u in minihpc.USERS for srv in ("mini-shared", "mini-exclusive")]
        concurrent: list[float] = []
        walls: list[float] = []
        for _ in range(args.rounds):
            lat, wall = concurrent_round(hub, burst)
            concurrent += lat
            walls.append(wall)
    finally:
        if hub:
            hub.stop()
        sshd.stop()
        slurm.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"spawn latency, REST start -> answering through the proxy (n={args.n} each, seconds)")
    print(f"{'kind':<10} {'p50':>6} {'p95':>6} {'mean':>6} {'min':>6} {'max':>6}")
    for kind, values in results.items():
        print(
            f"{kind:<10} {pct(values, 0.5):6.2f} {pct(values, 0.95):6.2f} {statistics.mean(values):6.2f} "
            f"{min(values):6.2f} {max(values):6.2f}"
        )
    print(
        f"{len(burst)} concurrent spawns ({len(minihpc.USERS)} users x SSH+Slurm), {args.rounds} rounds: "
        f"per-server p50 {pct(concurrent, 0.5):.2f} s, p95 {pct(concurrent, 0.95):.2f} s; "
        f"all {len(burst)} answering after p50 {pct(walls, 0.5):.2f} s, max {max(walls):.2f} s"
    )
    ratio = pct(results["hub ssh"], 0.5) / pct(results["bare ssh"], 0.5)
    print(f"hub ssh p50 / bare ssh p50 = {ratio:.2f} (target <= 1.3)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "n": args.n,
                    "seconds": results,
                    "ssh_ratio_p50": ratio,
                    "concurrent": {"latencies": concurrent, "walls": walls},
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
