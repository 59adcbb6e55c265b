"""SSH tunnel mode: notebooks the proxy cannot route to are reached through the hub's SSH
connection, and reach the hub API through a port forwarded on the login node."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
import requests

from tests.harness import minihpc

pytestmark = pytest.mark.integration


def environ(pid: str) -> dict[str, str]:
    raw = minihpc.Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(v.decode().split("=", 1) for v in raw if b"=" in v)


def server_pids(user: str, server: str) -> list[str]:
    """This session's notebook of ``server`` (tunnel servers only exist in this session's
    values; their API URL points at the tunnel, not the hub port)."""
    return [p for p in minihpc.user_processes(user) if environ(p).get("JUPYTERHUB_SERVER_NAME") == server]


def listening_ports(pid: str) -> set[int]:
    """TCP ports process ``pid`` listens on (from /proc: no iproute2 needed)."""
    inodes = set()
    for fd in minihpc.Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = fd.readlink().as_posix()
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in minihpc.Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # 0A = LISTEN
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.parametrize("server", ["tunnel-shared", "tunnel-exclusive"])
def test_tunnelled_server_answers_and_survives_hub_restart(
    hub: minihpc.Hub, slurm: minihpc.Slurm, server: str
) -> None:
    user = "hpcbob"
    r = hub.start_server(user, server)
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(user, server)
    hub.wait_answering(user, server)

    (pid,) = server_pids(user, server)
    env = environ(pid)
    # The notebook talks to the hub through the login node's forwarded port...
    api = urlparse(env["JUPYTERHUB_API_URL"])
    assert api.port != hub.hub_port
    assert requests.get(f"http://127.0.0.1:{api.port}/hub/api/", timeout=5).json()["version"]
    # ...and the proxy reaches the notebook through the hub's forwarded port.
    target = urlparse(hub.routes()[f"/user/{user}/{server}"]["target"])
    ports = listening_ports(pid)
    assert ports and target.port not in ports

    hub.stop_hub()
    hub.start_hub()
    # Tunnels re-opened on the same ports: the route and the notebook's API URL still hold.
    hub.wait_answering(user, server)
    assert requests.get(f"http://127.0.0.1:{api.port}/hub/api/", timeout=5).ok
    assert urlparse(hub.routes()[f"/user/{user}/{server}"]["target"]).port == target.port

    hub.stop_server(user, server)
    minihpc.wait_for(lambda: not server_pids(user, server), 15, "the notebook process to exit")
    assert slurm.squeue(user) == []
