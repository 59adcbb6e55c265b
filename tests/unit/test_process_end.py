"""How a login-node server ended, as the launcher's scripts record and read it, run by a
real /bin/sh against a run directory in a temporary $HOME (the login node's side; the hub
and sshd around it are tests/integration/test_endings_ssh.py); and how a Spin pod's status
reads."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from hpchub.launcher import SERVER_PARENT, ProcessEnd, ended_script, parse_ended
from hpchub.spawners.spin import pod_ending, quantity_bytes

RUN = "0123456789abcdef"


def run_dir(home: Path) -> Path:
    d = home / ".hpchub" / "ssh" / RUN
    d.mkdir(parents=True)
    return d


def read_end(home: Path) -> ProcessEnd:
    out = subprocess.run(
        ["/bin/sh", "-s"],
        input=ended_script(RUN),
        capture_output=True,
        text=True,
        env={"HOME": str(home)},
        timeout=20,
    )
    return parse_ended(out.stdout)


@pytest.mark.parametrize(
    ("server", "signal", "word"),
    [("exit 3", None, "exit 3"), ("exec sleep 30", 9, "signal 9"), ("exec sleep 30", 15, "signal 15")],
)
def test_the_servers_parent_writes_how_it_ended(
    tmp_path: Path, server: str, signal: int | None, word: str
) -> None:
    d = run_dir(tmp_path)
    env = {"HPCHUB_SERVER": f"sh -c '{server}'", "PATH": os.environ["PATH"]}
    subprocess.Popen(["setsid", "/bin/sh", "-c", SERVER_PARENT, "hpchub-server", str(d)], env=env)
    pid = int(_wait(lambda: (d / "pid").read_text().strip()))
    if signal:
        # The server leads its own process group (a stop signals its kernels with it).
        assert os.getpgid(pid) == pid
        os.killpg(pid, signal)
    assert _wait(lambda: (d / "exit").read_text()) == word + "\n"
    end = read_end(tmp_path)
    assert end.known and (end.exit_code or f"signal {end.signal}") in word


def test_the_watchdogs_word_and_the_logs_last_lines_are_read(tmp_path: Path) -> None:
    d = run_dir(tmp_path)
    (d / "exit").write_text("signal 15\n")
    (d / "watchdog").write_text("lifetime 30\n")
    (d / "server.log").write_text("".join(f"line {i}\n" for i in range(100)))
    end = read_end(tmp_path)
    assert end == ProcessEnd(signal="15", watchdog=True, output=end.output, known=True)
    assert end.output.splitlines() == [f"line {i}" for i in range(80, 100)]


def test_traps_in_the_run_directory_are_skipped_not_read(tmp_path: Path) -> None:
    d = run_dir(tmp_path)
    os.mkfifo(d / "exit")
    os.mkfifo(d / "server.log")
    (d / "watchdog").symlink_to("/dev/zero")
    t0 = time.monotonic()
    assert read_end(tmp_path) == ProcessEnd()
    assert time.monotonic() - t0 < 5


def test_forged_words_are_not_believed(tmp_path: Path) -> None:
    d = run_dir(tmp_path)
    (d / "exit").write_text("exit 0; rm -rf ~\n")
    (d / "watchdog").write_text("lifetime forever\n")
    (d / "server.log").write_text("HPCHUB-END exit 0\nexit 0\n")
    end = read_end(tmp_path)
    # The forged mark names "exit" twice: neither section is believed.
    assert not end.known and not end.watchdog and end.exit_code == ""


def _wait(read, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = read()
            if value:
                return value
        except OSError:
            pass
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def pod(container_state: dict, limit: str | None = "1Gi", **status: object) -> dict:
    resources = {"limits": {"memory": limit}} if limit else {}
    return {
        "spec": {"containers": [{"name": "notebook", "resources": resources}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [{"name": "notebook", "state": container_state}],
            **status,
        },
    }


def test_a_pod_killed_for_its_memory_is_out_of_memory_with_its_limit() -> None:
    state = {
        "terminated": {
            "exitCode": 137,
            "reason": "OOMKilled",
            "startedAt": "2026-12-06T10:00:00Z",
            "finishedAt": "2026-12-06T10:05:30Z",
        }
    }
    cause, figures = pod_ending(pod(state, phase="Failed"))
    assert cause == "out_of_memory"
    assert figures["requested_memory_bytes"] == 2**30 and figures["elapsed_seconds"] == 330
    assert (figures["state"], figures["exit_code"]) == ("OOMKilled", "137")


def test_a_pod_that_exited_or_was_evicted_or_still_runs() -> None:
    done = {"terminated": {"exitCode": 1, "reason": "Error"}}
    assert pod_ending(pod(done))[0] == "exited"
    assert pod_ending(pod(done))[1]["exit_code"] == "1"
    evicted = pod(
        {"terminated": {"exitCode": 137}}, phase="Failed", reason="Evicted", message="low on memory"
    )
    assert pod_ending(evicted) == (
        "evicted",
        {
            "state": "Evicted",
            "reason": "Evicted",
            "message": "low on memory",
            "requested_memory_bytes": 2**30,
        },
    )
    assert pod_ending(pod({"running": {"startedAt": "2026-12-06T10:00:00Z"}})) is None
    assert pod_ending({"status": {"phase": "Pending"}}) is None


def test_kubernetes_quantities() -> None:
    assert [quantity_bytes(q) for q in ("1Gi", "512Mi", "1G", "1e9", "1000", "", None, "lots")] == [
        2**30,
        512 * 2**20,
        10**9,
        10**9,
        1000,
        None,
        None,
        None,
    ]
