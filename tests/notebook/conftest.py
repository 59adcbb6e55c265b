"""Fixtures for hpchub-notebook's tests: a small real HTTP server that plays the hub's status
endpoint, a real JupyterLab server (from the harness's notebook venv, with hpchub-notebook
installed from its wheel) and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

# Debian's Chromium under Playwright, as the console's browser tests start it.
from ..browser.conftest import browser  # noqa: F401 - a fixture
from ..harness import minihpc

USER, SERVER = "alice", "perl-cpu"
API_PATH = f"/hub/api/hpchub/servers/{USER}/{SERVER}"


@dataclass
class StandinHub:
    """Answers GET {API_PATH} with ``status`` and POST {API_PATH}/extend (adds the seconds
    to ends_at, or refuses with JupyterHub's error JSON when ``refuse`` is set). Checks the
    token like the hub does; records every request."""

    token: str
    status: dict[str, Any] = field(default_factory=dict)
    refuse: str | None = None
    down: bool = False  # answer 503, as a hub being restarted does
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hub/api"

    def set(self, **status: Any) -> None:
        with self.lock:
            self.status = {"phase": "running", "message": "", **status}

    def handler(hub) -> type[BaseHTTPRequestHandler]:  # noqa: N805 - the closure reads better
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def _reply(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self, body: bytes = b"") -> bool:
                path, _, query = self.path.partition("?")
                with hub.lock:
                    hub.requests.append(
                        {
                            "method": self.command,
                            "path": path,
                            "query": query,
                            "auth": self.headers.get("Authorization"),
                            "agent": self.headers.get("User-Agent"),
                            "body": body,
                        }
                    )
                if self.headers.get("Authorization") != f"token {hub.token}":
                    self._reply(403, {"status": 403, "message": "bad token"})
                    return False
                return True

            def do_GET(self) -> None:  # noqa: N802
                if not self._record():
                    return
                if self.path.partition("?")[0] != API_PATH:
                    self._reply(404, {"status": 404, "message": "Not Found"})
                    return
                if hub.down:
                    self._reply(503, {"status": 503, "message": "hub restarting"})
                    return
                with hub.lock:
                    self._reply(200, hub.status)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not self._record(body):
                    return
                if self.path.partition("?")[0] != API_PATH + "/extend":
                    self._reply(404, {"status": 404, "message": "Not Found"})
                    return
                with hub.lock:
                    if hub.refuse:
                        self._reply(403, {"status": 403, "message": hub.refuse})
                        return
                    hub.status["ends_at"] += json.loads(body)["seconds"]
                    self._reply(200, hub.status)

        return Handler


@pytest.fixture(scope="module")
def standin_hub() -> Iterator[StandinHub]:
    hub = StandinHub(token=secrets.token_hex(16))
    hub.set(ends_at=None)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), hub.handler())
    hub.port = httpd.server_address[1]
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield hub
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def notebook_venv() -> Path:
    """The harness's notebook venv: JupyterLab, ipykernel and hpchub-notebook's wheel."""
    return minihpc.ensure_venv().parent


@dataclass
class LabServer:
    url: str  # ends with the base URL's slash
    token: str
    root: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def api(self, method: str, path: str, **kw: Any) -> requests.Response:
        return requests.request(
            method, self.url + path, headers={"Authorization": f"token {self.token}"}, timeout=30, **kw
        )

    def lab_url(self, path: str = "lab") -> str:
        return f"{self.url}{path}?token={self.token}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_lab(
    venv: Path, tmp: Path, hub: StandinHub, cgroup: Path | None = None, wait_for_hub: bool = True
) -> LabServer:
    """jupyter-lab as jupyterhub-singleuser would run it for alice's server perl-cpu (base
    URL, JUPYTERHUB_* variables), hpchub-notebook polling the stand-in hub every second."""
    port, token = minihpc.free_port(), secrets.token_hex(16)
    root, conf = tmp / "home", tmp / "jupyter-config"
    root.mkdir()
    (conf / "labconfig").mkdir(parents=True)
    # No "official Jupyter news?" question among the notifications the tests read.
    (conf / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    base = f"/user/{USER}/{SERVER}/"
    env = {
        "PATH": f"{venv}:/usr/bin:/bin",
        "HOME": str(root),
        "JUPYTER_CONFIG_DIR": str(conf),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "JUPYTERHUB_API_URL": hub.api_url,
        "JUPYTERHUB_API_TOKEN": hub.token,
        "JUPYTERHUB_USER": USER,
        "JUPYTERHUB_SERVER_NAME": SERVER,
    }
    log = tmp / "lab.log"
    argv = [
        str(venv / "jupyter-lab"),
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--ServerApp.base_url={base}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--HpchubNotebook.poll_interval=1",
        "--HpchubNotebook.activity_interval=1",
        "--HpchubNotebook.kernel_watch_interval=0.5",
    ]

    def into_cgroup() -> None:
        if cgroup is not None:  # before exec: the server and its kernels live in it
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=into_cgroup)
    server = LabServer(f"http://127.0.0.1:{port}{base}", token, root, proc, log)
    try:
        minihpc.wait_for(
            lambda: (
                proc.poll() is None
                and server.api("GET", "api/status").ok
                or (proc.poll() is not None and _exited(log))
            ),
            90,
            "jupyter-lab to answer",
            0.5,
        )
        if wait_for_hub:
            minihpc.wait_for(
                lambda: server.api("GET", "hpchub/status").json()["connected"], 30, "hub status", 0.5
            )
    except BaseException:
        server.stop()
        raise
    return server


def _exited(log: Path) -> bool:
    raise minihpc.ProcessExited("jupyter-lab exited:\n" + log.read_text()[-3000:])


@pytest.fixture(scope="module")
def lab(notebook_venv: Path, tmp_path_factory, standin_hub: StandinHub) -> Iterator[LabServer]:
    server = start_lab(notebook_venv, tmp_path_factory.mktemp("lab"), standin_hub)
    yield server
    server.stop()


@pytest.fixture
def page(browser):  # noqa: F811 - the fixture imported above
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    p = context.new_page()
    p.set_default_timeout(30_000)
    yield p
    context.close()


def write_notebook(server: LabServer, name: str, source: str = "") -> None:
    nb = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    r = server.api("PUT", f"api/contents/{name}", json={"type": "notebook", "format": "json", "content": nb})
    assert r.status_code in (200, 201), r.text


def memory_cgroup_v1(limit_bytes: int) -> Iterator[Path | None]:
    """A fresh cgroup v1 memory cgroup under this process's own (None where none can be made)."""
    mine = next(
        (
            line.split(":", 2)[2]
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if ":memory:" in line
        ),
        None,
    )
    base = Path("/sys/fs/cgroup/memory") / (mine or "/").lstrip("/")
    if not (base / "memory.limit_in_bytes").exists():
        base = Path("/sys/fs/cgroup/memory")
    path = base / f"hpchub-nbtest-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        path.mkdir()
        (path / "memory.limit_in_bytes").write_text(str(limit_bytes))
        if (path / "memory.memsw.limit_in_bytes").exists():
            (path / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))
    except OSError:
        shutil.rmtree(path, ignore_errors=True)
        yield None
        return
    try:
        yield path
    finally:
        for _ in range(50):
            try:
                path.rmdir()
                break
            except OSError:
                time.sleep(0.2)
