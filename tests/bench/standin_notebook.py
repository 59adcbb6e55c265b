#!/usr/bin/python3 -S
"""A stand-in notebook server for the scale benchmark, modelled on JupyterHub's own
``mocksu`` (jupyterhub/tests/mocksu.py): it answers every GET with a small JSON body, so
what the benchmark measures is the hub, the proxy, sshd and Slurm, not 1,000 Jupyter
servers on a 2-core machine.

It behaves like ``jupyterhub-singleuser`` where the hub and the launchers can tell:

- binds the port it is given (``--port=N``, batchspawner and sshspawner), or port 0 with
  ``--ServerApp.port=0`` (hpchub) and then writes ``$JUPYTER_RUNTIME_DIR/jpserver-<pid>.json``
  with the port, as jupyter_server does (hpchub's launchers wait for that file);
  without a port argument, the port of ``$JUPYTERHUB_SERVICE_URL`` (batchspawner-singleuser);
- answers ``GET <prefix>api`` with ``{"version": ...}`` as application/json;
- reports activity to ``$JUPYTERHUB_ACTIVITY_URL`` every ``$JUPYTERHUB_ACTIVITY_INTERVAL``
  seconds (default 300, first report at a random point in the interval), with its token,
  like jupyterhub-singleuser: that load on the hub is real.

Only the standard library's socket and selectors (no asyncio, no http.server): about 6 MB
per process, so a thousand of them fit beside everything else.
"""

import json
import os
import random
import selectors
import signal
import socket
import sys
import time

RESPONSE = b'{"version": "2.14.2", "hpchub_standin": true}'
HEADERS = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-JupyterHub-Version: 6.1.1\r\n"
    b"Connection: close\r\nContent-Length: " + str(len(RESPONSE)).encode() + b"\r\n\r\n"
)


def argument(name: str) -> str | None:
    for a in sys.argv[1:]:
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def split_url(url: str) -> tuple[str, int, str]:
    rest = url.split("://", 1)[-1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "80")
    return host, int(port), "/" + path


def report_activity() -> None:
    url = os.environ.get("JUPYTERHUB_ACTIVITY_URL")
    token = os.environ.get("JUPYTERHUB_API_TOKEN")
    if not url or not token:
        return
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    name = os.environ.get("JUPYTERHUB_SERVER_NAME", "")
    body = json.dumps({"servers": {name: {"last_activity": now}}, "last_activity": now}).encode()
    host, port, path = split_url(url)
    try:
        with socket.create_connection((host, port), timeout=10) as s:
            s.sendall(
                f"POST {path} HTTP/1.0\r\nHost: {host}:{port}\r\nAuthorization: token {token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            s.recv(256)
    except OSError:
        pass  # the hub may be restarting: report next time


def main() -> None:
    ip = argument("--ServerApp.ip") or argument("--ip") or "127.0.0.1"
    port_arg = argument("--ServerApp.port") or argument("--port")
    if port_arg is None and os.environ.get("JUPYTERHUB_SERVICE_URL"):
        port_arg = str(split_url(os.environ["JUPYTERHUB_SERVICE_URL"])[1])
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((ip, int(port_arg or 0)))
    srv.listen(64)
    srv.setblocking(False)
    port = srv.getsockname()[1]
    runtime = os.environ.get("JUPYTER_RUNTIME_DIR")
    if runtime:
        path = os.path.join(runtime, f"jpserver-{os.getpid()}.json")
        with open(path + ".tmp", "w") as f:
            json.dump({"port": port, "pid": os.getpid(), "standin": True}, f)
        os.rename(path + ".tmp", path)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    interval = float(os.environ.get("JUPYTERHUB_ACTIVITY_INTERVAL") or 300)
    next_report = time.monotonic() + random.uniform(0, interval)
    sel = selectors.DefaultSelector()
    sel.register(srv, selectors.EVENT_READ)
    while True:
        for _key, _ in sel.select(timeout=max(0.0, next_report - time.monotonic())):
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            try:
                conn.settimeout(5)
                conn.recv(65536)  # the request; every path gets the same answer
                conn.sendall(HEADERS + RESPONSE)
            except OSError:
                pass
            finally:
                conn.close()
        if time.monotonic() >= next_report:
            report_activity()
            next_report = time.monotonic() + interval


if __name__ == "__main__":
    main()
