"""SSH spawner against the real sshd: start through REST, answer through the proxy, stop."""

from __future__ import annotations

import subprocess

import pytest

from tests.harness import minihpc

pytestmark = pytest.mark.integration


def user_processes(user: str, pattern: str = "jupyterhub-singleuser") -> list[str]:
    out = subprocess.run(
        ["pgrep", "-u", user, "-f", pattern],
        check=False,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()


def test_ssh_server_answers_through_proxy_and_stop_leaves_no_process(
    hub: minihpc.Hub,
) -> None:
    user = "hpcalice"
    r = hub.start_server(user, "mini-shared")
    assert r.status_code in (201, 202), r.text
    model = hub.wait_ready(user, "mini-shared")
    assert model["ready"]
    hub.wait_answering(user, "mini-shared")
    assert user_processes(user), "no jupyterhub-singleuser runs as the user"
    hub.stop_server(user, "mini-shared")
    minihpc.wait_for(lambda: not user_processes(user), 15, "the notebook process to exit")
