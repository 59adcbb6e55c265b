"""SSH tunnel mode: notebooks the proxy cannot route to are reached through the hub's SSH
connection, and reach the hub API through a relay on the login node and a Unix socket the
hub forwards into the user's run directory."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
import requests

from tests.harness import minihpc

pytestmark = pytest.mark.integration


environ = minihpc.environ
listening_ports = minihpc.listening_ports


@pytest.mark.parametrize("server", ["tunnel-shared", "tunnel-exclusive"])
def test_tunnelled_server_answers_and_survives_hub_restart(
    hub: minihpc.Hub, sshd: minihpc.SSHD, slurm: minihpc.Slurm, server: str
) -> None:
    user = "hpcbob"
    r = hub.start_server(user, server)
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(user, server)
    hub.wait_answering(user, server)

    (pid,) = minihpc.session_notebooks(user, sshd, server)
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
    minihpc.wait_for(
        lambda: not minihpc.session_notebooks(user, sshd, server), 15, "the notebook process to exit"
    )
    assert slurm.squeue(user) == []
