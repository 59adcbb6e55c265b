"""Server-side render time of the console (/hub/home) for a user with 12 named servers.

Starts a real hub + configurable-http-proxy (tests/harness/minihpc.py Hub) with a 3 x 4 grid,
starts all 12 of one user's named servers (real local jupyterhub-singleuser processes),
then requests /hub/home repeatedly with that user's login cookie and reads the hub's own
request log for the time each response took inside the hub (JupyterHub logs it in ms), so
neither the proxy nor the client is counted. The same is measured for a user with no
server, for comparison.

Usage (from the repository root): python tests/bench/bench_console.py [--requests 50]
Prints a table; exits non-zero if anything fails.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.browser.helpers import local_hub  # noqa: E402
from tests.harness import minihpc  # noqa: E402
from tests.harness.minihpc import Hub  # noqa: E402

LEVELS = ("shared", "exclusive", "gpu", "configurable")
LOG_LINE = re.compile(r"200 GET /hub/home \((?P<user>[^@]+)@[^)]*\) (?P<ms>[\d.]+)ms")


def bench_values() -> dict:
    values = yaml.safe_load((REPO / "tests" / "browser" / "values-browser.yaml").read_text())
    old = values["systems"]["old"]
    old["maintenance"] = {"enabled": False, "message": ""}
    old["levels"] = {lv: {"backend": "ssh"} for lv in LEVELS}
    values["systems"]["spin"]["levels"] = {lv: {"backend": "kubernetes"} for lv in LEVELS}
    return values


def all_ready(hub: Hub, user: str, names: list[str]) -> bool:
    servers = hub.rest("GET", f"/users/{user}")["servers"]
    return all(servers.get(n, {}).get("ready") for n in names)


def measure(hub: Hub, session: requests.Session, user: str, n: int) -> list[float]:
    for _ in range(5):  # warm-up (template compilation, caches)
        session.get(hub.public + "/hub/home", timeout=60).raise_for_status()
    warm = len(hub.log_text())
    for _ in range(n):
        r = session.get(hub.public + "/hub/home", timeout=60)
        r.raise_for_status()
        assert "hpc-grid" in r.text
    time.sleep(0.5)  # let the log flush
    times = [float(m["ms"]) for m in LOG_LINE.finditer(hub.log_text()[warm:]) if m["user"] == user]
    if len(times) < n:
        raise RuntimeError(f"found {len(times)} of {n} timed requests in the hub log")
    return times[-n:]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=50)
    args = ap.parse_args()

    singleuser = minihpc.ensure_venv()  # jupyterhub-singleuser with jupyter_server
    workdir = Path(tempfile.mkdtemp(prefix="hpchub-bench-console-"))
    spawner = {"cmd": [str(singleuser)], "args": ["--allow-root"], "start_timeout": 120, "http_timeout": 120}
    hub = local_hub(workdir, bench_values(), {"Spawner": spawner})
    rows = []
    try:
        hub.start()
        names = [f"{system}-{lv}" for system in ("mini", "old", "spin") for lv in LEVELS]
        busy = hub.session_of("bench12")
        for name in names:
            hub.rest("POST", f"/users/bench12/servers/{name}", {"user_options": {}})
        minihpc.wait_for(lambda: all_ready(hub, "bench12", names), 300, "bench12's servers all ready", 0.5)
        assert len(hub.rest("GET", "/users/bench12")["servers"]) == 12
        idle = hub.session_of("bench0")
        for label, session, user in (
            ("12 named servers (all running)", busy, "bench12"),
            ("no server", idle, "bench0"),
        ):
            t = measure(hub, session, user, args.requests)
            rows.append((label, len(t), statistics.median(t), pct(t, 95), max(t)))
        for name in names:
            hub.rest("DELETE", f"/users/bench12/servers/{name}")
    finally:
        hub.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print("\nConsole render time, server side (JupyterHub request log), /hub/home")
    print(f"{'user':34} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for label, n, p50, p95, mx in rows:
        print(f"{label:34} {n:>4} {p50:>8.1f} {p95:>8.1f} {mx:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
