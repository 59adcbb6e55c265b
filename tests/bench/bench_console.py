"""Server-side render time of the console (/hub/home) for a user with 12 named servers.

Starts a real hub + configurable-http-proxy (tests/browser/hubproc.py) with a 3 x 4 grid,
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
import copy
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

from tests.browser.hubproc import Hub  # noqa: E402

PASSWORD = "browser-test"
LEVELS = ("shared", "exclusive", "gpu", "configurable")
LOG_LINE = re.compile(r"200 GET /hub/home \((?P<user>[^@]+)@[^)]*\) (?P<ms>[\d.]+)ms")


def bench_values() -> dict:
    values = yaml.safe_load((REPO / "tests" / "browser" / "values-browser.yaml").read_text())
    values = copy.deepcopy(values)
    old = values["systems"]["old"]
    old["maintenance"] = {"enabled": False, "message": ""}
    old["levels"] = {lv: {"backend": "ssh"} for lv in LEVELS}
    values["systems"]["spin"]["levels"] = {lv: {"backend": "kubernetes"} for lv in LEVELS}
    return values


def login(hub: Hub, user: str) -> requests.Session:
    s = requests.Session()
    s.get(hub.url + "/hub/login", timeout=30)
    xsrf = s.cookies.get("_xsrf")
    r = s.post(
        hub.url + "/hub/login",
        data={"username": user, "password": PASSWORD, "_xsrf": xsrf},
        timeout=60,
    )
    r.raise_for_status()
    assert r.url.endswith("/hub/home"), r.url
    return s


def wait_ready(hub: Hub, user: str, names: list[str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        servers = hub.api("GET", f"/users/{user}")["servers"]
        if all(servers.get(n, {}).get("ready") for n in names):
            return
        time.sleep(0.5)
    raise TimeoutError(f"{user}'s servers did not all become ready")


def measure(hub: Hub, session: requests.Session, user: str, n: int) -> list[float]:
    log_start = len(hub.log())
    for _ in range(5):  # warm-up (template compilation, caches)
        session.get(hub.url + "/hub/home", timeout=60).raise_for_status()
    warm = len(hub.log())
    for _ in range(n):
        r = session.get(hub.url + "/hub/home", timeout=60)
        r.raise_for_status()
        assert "hpc-grid" in r.text
    time.sleep(0.5)  # let the log flush
    del log_start
    times = [float(m["ms"]) for m in LOG_LINE.finditer(hub.log()[warm:]) if m["user"] == user]
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

    from tests.harness import minihpc

    singleuser = minihpc.ensure_venv()  # jupyterhub-singleuser with jupyter_server
    workdir = Path(tempfile.mkdtemp(prefix="hpchub-bench-console-"))
    hub = Hub(
        workdir,
        bench_values(),
        spawner="jupyterhub.spawner.SimpleLocalProcessSpawner",
        traits={
            "Spawner.cmd": [str(singleuser)],
            "Spawner.args": ["--allow-root"],
            "Spawner.start_timeout": 120,
            "Spawner.http_timeout": 120,
        },
    )
    rows = []
    try:
        hub.start()
        names = [f"{system}-{lv}" for system in ("mini", "old", "spin") for lv in LEVELS]
        busy = login(hub, "bench12")
        for name in names:
            hub.api("POST", f"/users/bench12/servers/{name}", {"user_options": {}})
        wait_ready(hub, "bench12", names)
        assert len(hub.api("GET", "/users/bench12")["servers"]) == 12
        idle = login(hub, "bench0")
        for label, session, user in (
            ("12 named servers (all running)", busy, "bench12"),
            ("no server", idle, "bench0"),
        ):
            t = measure(hub, session, user, args.requests)
            rows.append((label, len(t), statistics.median(t), pct(t, 95), max(t)))
        for name in names:
            hub.api("DELETE", f"/users/bench12/servers/{name}")
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
