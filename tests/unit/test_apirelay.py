"""The hub-API relay of tunnel mode (hpchub/apirelay.py), run as the real script."""

from __future__ import annotations

import errno
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hpchub import apirelay
from tests.harness.minihpc import wait_for

RELAY = Path(apirelay.__file__)


@contextmanager
def relay(tmp_path: Path, *extra: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port_file = tmp_path / "relay.port"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(RELAY),
            "--socket",
            str(tmp_path / "api.sock"),
            "--port-file",
            str(port_file),
            *extra,
        ]
    )
    try:
        port = wait_for(lambda: port_file.exists() and int(port_file.read_text()), 20, "the relay's port")
        assert port_file.stat().st_mode & 0o777 == 0o600
        yield proc, port
    finally:
        proc.kill()
        proc.wait(10)


@contextmanager
def echo_socket(path: Path) -> Iterator[None]:
    """A Unix-socket server standing in for sshd's end of the hub-API forward."""
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"hub:" + conn.recv(1024))

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield
    finally:
        srv.close()
        path.unlink(missing_ok=True)


def ask(port: int, data: bytes) -> bytes:
    """What comes back through the relay (nothing when it closed or reset the connection)."""
    chunks = []
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            while chunk := s.recv(1024):
                chunks.append(chunk)
    except OSError as e:
        # The relay closed at once (it refuses while the forward is down): depending on
        # when the close lands, send, shutdown or recv sees a reset, a broken pipe or a
        # socket no longer connected (ENOTCONN, seen under load).
        if e.errno not in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN):
            raise
    return b"".join(chunks)


def test_relay_passes_connections_to_the_socket_and_refuses_while_it_is_down(tmp_path: Path) -> None:
    with relay(tmp_path) as (_, port):
        # Forward down (no socket): the connection is closed at once, nothing answers.
        assert ask(port, b"GET /hub/api/user token secret") == b""
        with echo_socket(tmp_path / "api.sock"):
            assert ask(port, b"ping") == b"hub:ping"
        assert ask(port, b"GET /hub/api/user token secret") == b""


@pytest.mark.parametrize("option", [socket.SO_REUSEADDR, socket.SO_REUSEPORT])
def test_nobody_can_bind_the_relay_port_while_it_runs(tmp_path: Path, option: int) -> None:
    with relay(tmp_path) as (_, port):
        squatter = socket.socket()
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.setsockopt(socket.SOL_SOCKET, option, 1)
        with squatter, pytest.raises(OSError, match="in use"):
            squatter.bind(("127.0.0.1", port))


def test_relay_ends_with_the_server_it_serves(tmp_path: Path) -> None:
    server = subprocess.Popen(["sleep", "600"])
    (tmp_path / "pid").write_text(f"{server.pid}\n")
    with relay(tmp_path, "--pid-file", str(tmp_path / "pid")) as (proc, _):
        time.sleep(1.5)  # a watch cycle passes: the server still runs, so does the relay
        assert proc.poll() is None
        server.kill()
        server.wait()
        wait_for(lambda: proc.poll() is not None, 20, "the relay to end")


def test_relay_ends_when_the_job_says_so(tmp_path: Path) -> None:
    with relay(tmp_path, "--end-file", str(tmp_path / "ended")) as (proc, _):
        assert proc.poll() is None
        (tmp_path / "ended").touch()
        wait_for(lambda: proc.poll() is not None, 20, "the relay to end")
