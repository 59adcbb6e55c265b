"""The idle culler service keeps its API token out of the log (hpchub.culler)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time

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
