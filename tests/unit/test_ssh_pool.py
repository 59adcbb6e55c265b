"""Pure logic of the SSH layer and the launchers: host order, markers, tunnel URLs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

from hpchub.launcher import launcher_script, stop_script
from hpchub.remoteops import parse_marks
from hpchub.sshpool import SSHPool, SSHTarget
from tests.harness.values import dispatcher

from .test_options import VALUES


def test_dead_hosts_go_last_and_the_preferred_host_first() -> None:
    pool = SSHPool()
    t = SSHTarget.from_values("X", {"hosts": ["a", "b", "c"]})
    assert pool._ordered(t, None) == [("a", 22), ("b", 22), ("c", 22)]
    assert pool._ordered(t, "c:22")[0] == ("c", 22)
    pool._dead_until[("a", 22)] = time.monotonic() + 60
    assert pool._ordered(t, None) == [("b", 22), ("c", 22), ("a", 22)]
    pool._dead_until[("a", 22)] = time.monotonic() - 1  # back-off over: tried in order again
    assert pool._ordered(t, None)[0] == ("a", 22)


def test_launcher_keeps_secrets_in_the_script_and_quotes_the_command() -> None:
    script = launcher_script(
        env_exports="export JUPYTERHUB_API_TOKEN='s3cret'",
        run_dir='"$HOME"/.hpchub/ssh/abc',
        modules="",
        startup_script=None,
        cmd=["/opt/my env/bin/jupyterhub-singleuser", "--debug"],
        bind_ip="127.0.0.1",
        wait_seconds=10,
    )
    assert "export JUPYTERHUB_API_TOKEN='s3cret'" in script
    # The server's command reaches its waiting parent (which records how it ends) as quoted
    # words, which the parent's shell turns back into exactly this argv.
    words = re.search(r"^HPCHUB_SERVER=(.*) setsid /bin/sh -c ", script, re.M)
    assert words, script
    argv = subprocess.run(
        ["sh", "-c", f'HPCHUB_SERVER={words.group(1)}; eval "set -- $HPCHUB_SERVER"; printf "%s\\n" "$@"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert argv == [
        "/opt/my env/bin/jupyterhub-singleuser",
        "--debug",
        "--ServerApp.port=0",
        "--ServerApp.ip=127.0.0.1",
    ]
    assert script.startswith("umask 077\n")


def test_launcher_run_by_a_real_shell_reports_the_new_servers_port_not_a_stale_one(tmp_path: Path) -> None:
    """The launcher as the login node's shell runs it: a runtime file left in the run
    directory is removed first, and the port printed is the one the new server wrote."""
    run = tmp_path / ".hpchub/ssh/r1"
    run.mkdir(parents=True)
    (run / "jpserver-1.json").write_text('{"port": 1111}')
    (run / "jpserver-1-open.html").write_text("stale")
    # A stand-in server: writes its runtime file as jupyter_server does, then waits.
    server = 'sleep 0.3; echo \'{"port": 4242}\' > "$JUPYTER_RUNTIME_DIR/jpserver-$$.json"; exec sleep 30'
    script = launcher_script(
        env_exports="",
        run_dir='"$HOME"/.hpchub/ssh/r1',
        modules="",
        startup_script=None,
        cmd=["/bin/sh", "-c", server, "stand-in"],
        bind_ip="127.0.0.1",
        wait_seconds=10,
    )
    r = subprocess.run(
        ["sh", "-s"],
        input=script,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    marks = parse_marks(r.stdout)
    try:
        assert marks.get("PORT") == "4242", r.stdout + r.stderr
        assert not (run / "jpserver-1-open.html").exists()
    finally:
        if "PID" in marks:
            os.killpg(int(marks["PID"]), signal.SIGKILL)


def test_startup_script_is_sourced_quoted_without_stdin_and_its_failure_reported() -> None:
    script = launcher_script(
        env_exports="",
        run_dir='"$HOME"/.hpchub/ssh/abc',
        modules="",
        startup_script="~/my start.sh",
        cmd=["jupyterhub-singleuser"],
        bind_ip="127.0.0.1",
        wait_seconds=10,
    )
    assert """. "$HOME"/'my start.sh' </dev/null >"$d/startup.log" 2>&1""" in script
    assert 'trap \'rc=$?; exec >&3; echo "HPCHUB-STARTUP $rc"' in script and "trap - EXIT" in script
    # The script runs before the server starts.
    assert script.index("startup.log") < script.index("setsid")


def test_markers_and_stop_script() -> None:
    assert parse_marks("motd\nHPCHUB-PID 42\nHPCHUB-PORT 5000\n") == {"PID": "42", "PORT": "5000"}
    stop = stop_script(42, 1)
    assert "kill -TERM -$pid" in stop and "kill -KILL -$pid" in stop


def test_tunnel_env_points_hub_urls_at_the_login_node_port() -> None:
    systems = {k: dict(v) for k, v in VALUES["systems"].items()}
    systems["pm"] = {**systems["pm"], "ssh": {"hosts": ["login"], "tunnel": True}}
    s = dispatcher({**VALUES, "systems": systems}, "pm-shared")
    s.hub = SimpleNamespace(api_url="http://hub.example:8081/hub/api", port=8081)
    env = {
        "JUPYTERHUB_API_URL": "http://hub.example:8081/hub/api",
        "JUPYTERHUB_ACTIVITY_URL": "http://hub.example:8081/hub/api/users/a/activity",
        "OTHER": "x",
    }
    out = s.tunnel_env(env, 40001)
    assert out["JUPYTERHUB_API_URL"] == "http://127.0.0.1:40001/hub/api"
    assert out["JUPYTERHUB_ACTIVITY_URL"] == "http://127.0.0.1:40001/hub/api/users/a/activity"
    assert out["OTHER"] == "x" and s.tunnel
    s.load_state({"pid": 1, "remote_host": "login:22", "tunnel": {"api": 40001, "server": 50001}})
    assert s.get_state()["tunnel"] == {"api": 40001, "server": 50001}
