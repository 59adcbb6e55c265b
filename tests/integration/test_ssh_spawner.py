"""SSH spawner against the real sshd: start through REST, answer through the proxy, stop."""

from __future__ import annotations

import secrets

import pytest

from tests.harness import minihpc

pytestmark = pytest.mark.integration


user_processes = minihpc.user_processes


def test_ssh_server_answers_through_proxy_and_stop_leaves_no_process(
    hub: minihpc.Hub,
) -> None:
    user = "hpcalice"
    r = hub.start_server(user, "mini-shared")
    assert r.status_code in (201, 202), r.text
    model = hub.wait_ready(user, "mini-shared")
    assert model["ready"]
    hub.wait_answering(user, "mini-shared")
    pids = user_processes(user, hub)
    assert pids, "no jupyterhub-singleuser runs as the user"
    assert minihpc.token_on_any_command_line(pids[0]) is None
    # The environment reached the server (values' singleuser.environment included).
    environ = minihpc.Path(f"/proc/{pids[0]}/environ").read_bytes()
    assert b"HPCHUB_SITE=mini" in environ and b"JUPYTERHUB_API_URL=" in environ
    hub.stop_server(user, "mini-shared")
    minihpc.wait_for(lambda: not user_processes(user, hub), 15, "the notebook process to exit")


def test_failing_pre_spawn_check_stops_the_spawn_with_its_message(hub: minihpc.Hub) -> None:
    user = "hpcbob"
    # values-test.yaml's quota check fails while this marker exists in the user's home.
    marker = minihpc.Path(f"/home/{user}/.hpchub-over-quota")
    marker.write_text("over quota\n")
    try:
        r = hub.start_server(user, "mini-shared")
    finally:
        marker.unlink()
    assert r.status_code == 403, r.text
    assert "over quota" in r.json()["message"].lower()
    assert not user_processes(user, hub)


def test_first_spawn_fails_over_from_a_hung_login_host(
    hub: minihpc.Hub, sshd: minihpc.SSHD, failover_login_host: minihpc.HungLoginHost
) -> None:
    # System "failover" lists a host that accepts TCP and never answers SSH first; no other
    # test uses it, so this first spawn must meet it, give up on it and use the next host.
    good = f"127.0.0.1:{sshd.port}"
    assert failover_login_host.accepted == 0
    r = hub.start_server("hpccarol", "failover-shared")
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("hpccarol", "failover-shared")
    hub.wait_answering("hpccarol", "failover-shared")
    tried = failover_login_host.accepted
    assert tried >= 1, "the hung host listed first was not tried"
    # Parallel first connections (e.g. concurrent pre-spawn checks) may each try it, but
    # all before any gave up: one connect timeout paid, not one per connection.
    assert failover_login_host.abandoned == tried
    assert failover_login_host.tried_in_one_round(), failover_login_host.events
    assert server_state(hub, "hpccarol", "failover-shared")["remote_host"] == good
    # That the host is then skipped (marked dead) is the pool's test: test_ssh_layer.py.
    hub.stop_server("hpccarol", "failover-shared")
    minihpc.wait_for(lambda: not user_processes("hpccarol", hub), 15, "the notebook process to exit")


def server_state(hub: minihpc.Hub, user: str, server: str) -> dict:
    r = hub.request("GET", f"/users/{user}")
    r.raise_for_status()
    return r.json()["servers"][server]["state"]


def test_server_dying_at_start_reports_its_log_tail(hub: minihpc.Hub) -> None:
    user = "hpcbob"
    script = minihpc.Path(f"/home/{user}/break-server.sh")
    # Valid for the shell, fatal for jupyterhub-singleuser.
    script.write_text("unset JUPYTERHUB_SERVICE_URL\n")
    try:
        outcome, message = hub.start_outcome(user, "mini-shared", {"startup_script": "~/break-server.sh"})
    finally:
        script.unlink()
    assert outcome == "failed", message
    assert "Mini HPC: the server exited on 127.0.0.1" in message
    assert "JUPYTERHUB_SERVICE_URL" in message  # from the server's own log
    assert not user_processes(user, hub)


# `exit` ends the launcher's shell; a failing last command makes the script "return" non-zero.
@pytest.mark.parametrize(("body", "code"), minihpc.FAILING_STARTUP_SCRIPTS)
def test_failing_startup_script_is_reported_with_its_exit_code_and_output(
    hub: minihpc.Hub, body: str, code: int
) -> None:
    user = "hpcbob"
    with minihpc.script_in_home(user, body, "failing-start") as script:
        outcome, message = hub.start_outcome(user, "mini-shared", {"startup_script": script})
    assert outcome == "failed", message
    assert f"the start-up script {script} failed with exit code {code}" in message, message
    assert "did not start in time" not in message
    # The last lines of its output, stdout and stderr both.
    assert "loading my environment" in message and "environment myenv not found" in message
    assert not user_processes(user, hub)
    assert hub.server_model(user, "mini-shared") is None


def test_startup_script_reading_stdin_cannot_eat_the_launcher(hub: minihpc.Hub) -> None:
    # The launcher reaches the login node's shell on stdin (bash, the login shell, reads it
    # line by line); a start-up script that reads stdin (a prompt, `cat`) must get nothing
    # instead of the launcher's next lines.
    user = "hpcbob"
    server = "loginsh-shared"
    name = f"reads-stdin-{secrets.token_hex(4)}.sh"
    script = minihpc.Path(f"/home/{user}/{name}")
    script.write_text("cat >/dev/null\nexport HPCHUB_TEST_STARTUP=sourced\n")
    try:
        outcome, message = hub.start_outcome(user, server, {"startup_script": f"~/{name}"})
        assert outcome == "ready", message
    finally:
        script.unlink()
    (pid,) = user_processes(user, hub)
    # Sourced, not run in a subshell: what it exports reaches the server.
    assert b"HPCHUB_TEST_STARTUP=sourced" in minihpc.Path(f"/proc/{pid}/environ").read_bytes()
    hub.stop_server(user, server)
    minihpc.wait_for(lambda: not user_processes(user, hub), 15, "the notebook process to exit")
