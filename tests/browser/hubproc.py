"""A real JupyterHub process behind a real configurable-http-proxy, configured by the
hpchub loader from a values file -- for the console's browser tests and the bench.

(The SSH/Slurm harness in tests/harness/ starts the HPC side; this only starts the hub.)
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(
    url: str,
    timeout: float = 30,
    proc: subprocess.Popen | None = None,
    log: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-4000:] if log and log.exists() else ""
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered:\n{tail}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
    tail = log.read_text()[-4000:] if log and log.exists() else ""
    raise TimeoutError(f"{url} did not answer within {timeout}s\n{tail}")


CONFIG = textwrap.dedent(
    """
    import json, os
    from hpchub.config import configure, load_values

    t = json.loads(os.environ["HPCHUB_TEST_HUB"])
    values = load_values(t["values"])
    configure(c, values)
    c.JupyterHub.db_url = "sqlite:///" + t["dir"] + "/jupyterhub.sqlite"
    c.JupyterHub.cookie_secret_file = t["dir"] + "/cookie_secret"
    c.JupyterHub.pid_file = t["dir"] + "/jupyterhub.pid"
    c.JupyterHub.bind_url = "http://127.0.0.1:%d" % t["proxy_port"]
    c.JupyterHub.hub_bind_url = "http://127.0.0.1:%d" % t["hub_port"]
    c.JupyterHub.hub_connect_url = "http://127.0.0.1:%d" % t["hub_port"]
    c.ConfigurableHTTPProxy.should_start = False
    c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:%d" % t["api_port"]
    c.JupyterHub.cleanup_servers = True
    if t.get("spawner"):
        c.JupyterHub.spawner_class = t["spawner"]
    for k, v in (t.get("traits") or {}).items():
        cls, _, name = k.partition(".")
        setattr(getattr(c, cls), name, v)
    """
)


@dataclass
class Hub:
    workdir: Path
    values: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    spawner: str = ""
    traits: dict[str, Any] = field(default_factory=dict)
    procs: list[subprocess.Popen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.proxy_port, self.api_port, self.hub_port = (
            free_port(),
            free_port(),
            free_port(),
        )
        self.url = f"http://127.0.0.1:{self.proxy_port}"
        self.token = secrets.token_hex(16)
        self.api_token = secrets.token_hex(16)
        # auth_state's key, kept so tests can check what the database holds is encrypted
        self.crypt_key = secrets.token_hex(32)

    def start(self) -> Hub:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "values.yaml").write_text(yaml.safe_dump(self.values))
        (self.workdir / "jupyterhub_config.py").write_text(CONFIG)
        chp = shutil.which("configurable-http-proxy")
        if not chp:
            raise RuntimeError("configurable-http-proxy not found (npm install -g configurable-http-proxy@4)")
        env = {
            **os.environ,
            "CONFIGPROXY_AUTH_TOKEN": self.token,
            "JUPYTERHUB_CRYPT_KEY": self.crypt_key,
            "HPCHUB_TEST_HUB": json.dumps(
                {
                    "values": str(self.workdir / "values.yaml"),
                    "dir": str(self.workdir),
                    "proxy_port": self.proxy_port,
                    "api_port": self.api_port,
                    "hub_port": self.hub_port,
                    "spawner": self.spawner,
                    "traits": {
                        **self.traits,
                        # a service token so tests can read the hub's state through the REST API
                        "JupyterHub.services": [{"name": "test", "api_token": self.api_token}],
                        "JupyterHub.load_roles": [
                            {
                                "name": "test",
                                "scopes": ["admin:users", "admin:servers"],
                                "services": ["test"],
                            }
                        ],
                    },
                }
            ),
            **self.env,
        }
        proxy_log = open(self.workdir / "proxy.log", "w")  # noqa: SIM115 - closed with the process
        self.procs.append(
            subprocess.Popen(
                [
                    chp,
                    "--ip=127.0.0.1",
                    f"--port={self.proxy_port}",
                    "--api-ip=127.0.0.1",
                    f"--api-port={self.api_port}",
                    f"--default-target=http://127.0.0.1:{self.hub_port}",
                    f"--error-target=http://127.0.0.1:{self.hub_port}/hub/error",
                ],
                env=env,
                stdout=proxy_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        hub_log_path = self.workdir / "hub.log"
        hub_log = open(hub_log_path, "w")  # noqa: SIM115
        self.procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "jupyterhub",
                    "-f",
                    str(self.workdir / "jupyterhub_config.py"),
                ],
                cwd=self.workdir,
                env=env,
                stdout=hub_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        wait_http(
            f"http://127.0.0.1:{self.hub_port}/hub/health",
            60,
            self.procs[-1],
            hub_log_path,
        )
        wait_http(self.url + "/hub/login", 30, self.procs[-1], hub_log_path)
        return self

    def api(self, method: str, path: str, body: Any = None) -> Any:
        req = urllib.request.Request(
            self.url + "/hub/api" + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"token {self.api_token}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            data = r.read()
        return json.loads(data) if data else None

    def log(self) -> str:
        return (self.workdir / "hub.log").read_text()

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        self.procs.clear()
