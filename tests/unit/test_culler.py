"""The idle culler service keeps its API token out of the log (hpchub.culler)."""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler

from hpchub.culler import CullArbiter, culler_config
from hpchub.culling import ENV, CullPolicy, CullRule
from tests.harness.minihpc import free_port


def culler_log(module: str, token: str) -> str:
    """The log of a real culler process whose hub does not answer (port closed), after its
    first failed runs: the failure tornado logs with the scheduled callback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module, f"--url=http://127.0.0.1:{free_port()}/hub/api", "--cull-every=1"],
        env={**os.environ, "JUPYTERHUB_API_TOKEN": token},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = ""
    try:
        deadline = time.monotonic() + 60
        while out.count("Exception in callback") < 2 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            out += line
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out += proc.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            out += proc.communicate()[0]
    assert "Exception in callback" in out, out[-2000:]  # the run failed and was logged
    return out


def test_culler_failures_are_logged_without_its_api_token() -> None:
    token = secrets.token_hex(16)
    out = culler_log("hpchub.culler", token)
    assert token not in out
    assert "api_token='[redacted]'" in out


def test_upstream_culler_alone_would_log_the_token() -> None:
    # Why hpchub.culler exists: if this starts failing, upstream stopped leaking it.
    token = secrets.token_hex(16)
    assert token in culler_log("jupyterhub_idle_culler", token)


def stand_in_hub(servers: dict[str, timedelta], deleted: list[str]) -> Application:
    """The two hub API calls jupyterhub-idle-culler makes, for one user with ``servers``
    (name -> idle for), recording the servers it stops."""
    now = datetime.now(UTC)

    class Root(RequestHandler):
        def get(self) -> None:
            self.write({"version": "6.1.1"})

    class Users(RequestHandler):
        def get(self) -> None:
            models = {
                name: {
                    "name": name,
                    "ready": True,
                    "pending": None,
                    "url": f"/user/alice/{name}/",
                    "started": (now - timedelta(hours=5)).isoformat(),
                    "last_activity": (now - idle).isoformat(),
                }
                for name, idle in servers.items()
            }
            self.write(json.dumps([{"name": "alice", "admin": False, "servers": models}]))

    class Server(RequestHandler):
        def delete(self, user: str, name: str) -> None:
            deleted.append(name)
            self.set_status(204)

    return Application(
        [(r"/hub/api/", Root), (r"/hub/api/users", Users), (r"/hub/api/users/(\w+)/servers/([\w-]+)", Server)]
    )


async def test_the_upstream_culler_stops_each_server_after_its_own_timeout() -> None:
    """jupyterhub-idle-culler's own cull_idle, with hpchub's hook and the shortest timeout
    as its inactive_limit: each server is judged by its cell's timeout."""
    from jupyterhub_idle_culler import cull_idle

    policy = CullPolicy(
        default=CullRule(3600, 600),
        servers={"perl-gpu": CullRule(900, 300), "cori-gpu": CullRule(600, 300)},
    )
    config = culler_config({ENV: policy.to_json()})
    hook = config.IdleCuller.cull_arbiter_hook
    idle = {
        "perl-shared": timedelta(seconds=1000),  # global 3600: kept
        "perl-gpu": timedelta(seconds=1000),  # 900: culled
        "cori-gpu": timedelta(seconds=500),  # 600: kept
    }
    deleted: list[str] = []
    server = HTTPServer(stand_in_hub(idle, deleted))
    port = free_port()
    server.listen(port, "127.0.0.1")
    try:
        await cull_idle(
            url=f"http://127.0.0.1:{port}/hub/api",
            api_token="t",
            inactive_limit=policy.shortest_timeout,
            logger=logging.getLogger("test"),
            cull_arbiter=hook,
        )
    finally:
        server.stop()
    assert deleted == ["perl-gpu"]


def test_the_culler_process_reads_the_loaders_command_and_policy() -> None:
    """What the hub starts: its argv parsed by IdleCuller, the hook from $HPCHUB_CULLING."""
    from jupyterhub_idle_culler import IdleCuller

    policy = CullPolicy(default=CullRule(3600, 600), servers={"perl-gpu": CullRule(900, 300)})
    culler = IdleCuller(config=culler_config({ENV: policy.to_json()}))
    culler.parse_command_line(["--timeout=900", "--cull-every=60"])
    assert culler.timeout == 900 and culler.cull_every == 60
    hook = culler.cull_arbiter_hook
    assert isinstance(hook, CullArbiter)
    kw = {"inactive_limit": 900}
    assert hook(inactive=timedelta(seconds=901), server={"name": "perl-gpu"}, **kw)
    assert not hook(inactive=timedelta(seconds=901), server={"name": "perl-shared"}, **kw)
    # Without a policy (a hub of an older chart): upstream's own check against --timeout.
    assert "cull_arbiter_hook" not in culler_config({}).IdleCuller
