"""A server's activity is what its notebook server reports, not every request the proxy
carried (hpchub.proxy): against a real configurable-http-proxy."""

from __future__ import annotations

import secrets
import subprocess

import requests
from jupyterhub.proxy import ConfigurableHTTPProxy

from hpchub.proxy import NotebookActivityProxy
from tests.harness.minihpc import find_chp, free_port, port_open, wait_for


async def test_routes_are_read_without_the_proxys_request_times() -> None:
    token, port, api_port, target = secrets.token_hex(16), free_port(), free_port(), free_port()
    chp = subprocess.Popen(
        [find_chp(), "--ip=127.0.0.1", f"--port={port}", "--api-ip=127.0.0.1", f"--api-port={api_port}"],
        env={"CONFIGPROXY_AUTH_TOKEN": token, "PATH": "/usr/bin:/bin:/usr/local/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: port_open(api_port), 20, "configurable-http-proxy")
        api = f"http://127.0.0.1:{api_port}/api/routes"
        route = {
            "target": f"http://127.0.0.1:{target}",
            "user": "alice",
            "server_name": "perl-cpu",
            "jupyterhub": True,
        }
        r = requests.post(
            f"{api}/user/alice/perl-cpu", json=route, headers={"Authorization": f"token {token}"}
        )
        assert r.status_code == 201, r.text
        # A background tab's poll: the proxy carries it (the target is down: 503) and records it.
        requests.get(f"http://127.0.0.1:{port}/user/alice/perl-cpu/hpchub/status", timeout=10)
        plain = await ConfigurableHTTPProxy(
            api_url=f"http://127.0.0.1:{api_port}", auth_token=token
        ).get_all_routes()
        assert "last_activity" in plain["/user/alice/perl-cpu/"]["data"]  # what JupyterHub would take
        routes = await NotebookActivityProxy(
            api_url=f"http://127.0.0.1:{api_port}", auth_token=token
        ).get_all_routes()
        assert routes["/user/alice/perl-cpu/"]["data"] == {"user": "alice", "server_name": "perl-cpu"}
        assert routes["/user/alice/perl-cpu/"]["target"] == route["target"]
    finally:
        chp.terminate()
        chp.wait(10)
