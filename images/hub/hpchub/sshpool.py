"""The SSH layer both HPC spawners share: one asyncssh connection per (user, host),
host keys checked against the known_hosts text from values, failover across login hosts.

It knows nothing about Slurm or Jupyter: callers hand it argv lists (quoted here with
``shlex.quote``) and stdin text, and get stdout/stderr/exit status back.

Economy at a center's scale (docs/design/state-and-status.md, section 5): connections are
closed after ``ssh.idleSeconds`` without use (a tunnel pins them); handshakes per login
host are limited to ``ssh.maxConcurrentHandshakes`` (below sshd's ``MaxStartups``, so a hub
restart with 1,000 servers is no stampede); a renewed certificate opens a new connection,
tunnels move to it and the old one closes; the per-key connect locks exist only while a
connect is in flight.
"""

from __future__ import annotations

import asyncio
import logging
import random
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import asyncssh

from . import metrics
from .sshca import UserCredentials

log = logging.getLogger("hpchub.sshpool")


class SSHError(RuntimeError):
    """An SSH problem phrased for the user: it names the system and the reason."""


class HostKeyError(SSHError):
    """A login node presented a host key that values' knownHosts does not list."""


class ForwardRefused(SSHError):
    """The login node (or this pod) answered that it will not open the forward."""


class OutputTooLarge(SSHError):
    """A command printed more than ``ssh.maxOutputBytes``; its channel was closed."""


# What one command may print (stdout + stderr) before the hub stops reading: a user's
# shell start-up file that prints without end must not grow the hub until it is killed.
DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class SSHTarget:
    """Where and how to reach one system's login nodes (from ``systems.<name>.ssh``)."""

    system: str  # display name, for messages
    hosts: tuple[tuple[str, int], ...]
    known_hosts: str
    connect_timeout: float = 10.0
    keepalive: float = 30.0
    login_shell: bool = False
    idle_seconds: float = 300.0
    max_handshakes: int = 8
    # Commands in flight on one connection: sshd refuses sessions past its MaxSessions
    # (default 10) with "open failed"; the service accounts multiplex every user on one.
    max_sessions: int = 8
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES

    @classmethod
    def from_values(cls, display_name: str, ssh: Mapping[str, Any]) -> SSHTarget:
        port = int(ssh.get("port", 22))
        hosts: list[tuple[str, int]] = []
        for entry in ssh.get("hosts") or []:
            # "host" or "host:port" (a login node on its own port, e.g. in tests)
            host, _, p = str(entry).rpartition(":") if ":" in str(entry) else (str(entry), "", "")
            hosts.append((host, int(p)) if p else (str(entry), port))
        if not hosts:
            raise SSHError(f"{display_name}: no login hosts are configured (ssh.hosts)")
        return cls(
            system=display_name,
            hosts=tuple(hosts),
            known_hosts=str(ssh.get("knownHosts") or ""),
            connect_timeout=float(ssh.get("connectTimeoutSeconds", 10)),
            keepalive=float(ssh.get("keepaliveSeconds", 30)),
            login_shell=bool(ssh.get("loginShell", False)),
            idle_seconds=float(ssh.get("idleSeconds", 300)),
            max_handshakes=int(ssh.get("maxConcurrentHandshakes", 8)),
            max_sessions=int(ssh.get("maxSessionsPerConnection", 8)),
            max_output_bytes=int(ssh.get("maxOutputBytes", DEFAULT_MAX_OUTPUT_BYTES)),
        )


def host_label(host: str, port: int) -> str:
    """How a login host is named in state and logs: ``host:port`` (unique per target)."""
    return f"{host}:{port}"


@dataclass(frozen=True)
class Result:
    host: str  # the host name, as configured (what the proxy connects to)
    label: str  # host:port, what spawner state pins later calls to
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


def quote_argv(argv: Sequence[str]) -> str:
    """The one place argv becomes a remote command line: every word quoted."""
    return " ".join(shlex.quote(str(a)) for a in argv)


@lru_cache(maxsize=64)
def parsed_known_hosts(text: str) -> asyncssh.SSHKnownHosts:
    """known_hosts text from values, parsed once (not on every connect)."""
    return asyncssh.import_known_hosts(text)


class Tunnel:
    """A forward over a user's pooled connection to one login host.

    ``listen`` (address, port): a local TCP forward, listening here and connecting from
    the login node to ``dest`` (proxy -> notebook). ``listen`` a path: a remote Unix-socket
    forward, sshd listening at that path on the login node as the user and connecting
    from here to ``dest`` (notebook's relay -> hub API). There is no remote TCP
    forwarding: a port on a shared login node can be bound by any other user once the
    forward drops, and would then receive the notebook's tokens.

    It keeps its port (or path) when it moves: after a certificate renewal the pool
    re-opens it on the new connection (so the proxy's route and the notebook's API URL
    stay valid) and closes the old connection.
    """

    def __init__(
        self, *, local: bool, listen: tuple[str, int] | str, dest: tuple[str, int], where: str
    ) -> None:
        if local == isinstance(listen, str):
            raise ValueError("a local forward listens on (address, port), a remote one on a socket path")
        self.local = local
        self.listen = listen
        self.dest = dest
        self.where = where  # for messages
        self.conn: asyncssh.SSHClientConnection | None = None
        self.listener: asyncssh.SSHListener | None = None
        self._closed = False

    @property
    def port(self) -> int:
        if isinstance(self.listen, str):
            return 0
        return self.listener.get_port() if self.listener else self.listen[1]

    @property
    def closed(self) -> bool:
        return self._closed or self.conn is None or self.conn.is_closed()

    async def open_on(self, conn: asyncssh.SSHClientConnection, system: str) -> None:
        where = f"{self.where} at {self.listen}" if isinstance(self.listen, str) else f"port {self.port} here"
        try:
            if isinstance(self.listen, str):
                # sshd will not bind over the socket file a dropped forward left behind.
                await _unlink_remote(conn, self.listen)
                listener = await conn.forward_remote_path_to_port(self.listen, self.dest[0], self.dest[1])
            else:
                listener = await conn.forward_local_port(
                    self.listen[0], self.port, self.dest[0], self.dest[1]
                )
        except (OSError, asyncssh.ChannelListenError) as e:
            # Answered: the login node (or this pod) will not listen there.
            raise ForwardRefused(f"{system}: cannot open an SSH tunnel on {where}: {e}") from e
        except asyncssh.Error as e:
            raise SSHError(f"{system}: cannot open an SSH tunnel on {where}: {e}") from e
        self.conn, self.listener = conn, listener
        self._closed = False

    async def move_to(self, conn: asyncssh.SSHClientConnection, system: str) -> None:
        """Re-open on ``conn``: close the old listener first (the port must be free)."""
        if self.listener is not None:
            self.listener.close()
            await self.listener.wait_closed()
        await self.open_on(conn, system)

    def close(self) -> None:
        self._closed = True
        if self.listener is not None:
            self.listener.close()


class SSHPool:
    """Connections reused per (user, host, credential), closed when idle.

    A host that failed recently is tried last, so a dead login node costs one connect
    timeout once, not on every poll.
    """

    DEAD_HOST_BACKOFF = 60.0
    RETIRE_GRACE = 120.0
    BUSY_TRIES = 3  # handshakes to a host that answered others recently
    BUSY_WINDOW = 60.0
    SESSION_TRIES = 4  # session opens refused by sshd, retried over ~0.7 s

    def __init__(self) -> None:
        self._conns: dict[tuple[str, str, int, str], asyncssh.SSHClientConnection] = {}
        # Futures of connects in flight only: removed when the connect ends (bounded).
        self._connecting: dict[tuple[str, str, int, str], asyncio.Future[asyncssh.SSHClientConnection]] = {}
        self._handshakes: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._dead_until: dict[tuple[str, int], float] = {}
        self._last_ok: dict[tuple[str, int], float] = {}
        self._last_used: dict[asyncssh.SSHClientConnection, float] = {}
        self._busy: dict[asyncssh.SSHClientConnection, int] = {}
        self._sessions: dict[asyncssh.SSHClientConnection, asyncio.Semaphore] = {}
        self._idle: dict[asyncssh.SSHClientConnection, float] = {}
        self._tunnels: dict[asyncssh.SSHClientConnection, set[Tunnel]] = {}
        self._retiring: set[asyncssh.SSHClientConnection] = set()
        self._idle_timer: asyncio.TimerHandle | None = None
        self.connects = 0  # counted for tests and benchmarks
        self.handshakes_in_flight = 0
        self.max_handshakes_seen = 0

    def _ordered(self, target: SSHTarget, prefer: str | None) -> list[tuple[str, int]]:
        now = time.monotonic()
        hosts = list(target.hosts)
        hosts.sort(key=lambda hp: (self._dead_until.get(hp, 0) > now, host_label(*hp) != prefer))
        return hosts

    def _busy_host(self, host: str, port: int) -> bool:
        return time.monotonic() - self._last_ok.get((host, port), -1e9) < self.BUSY_WINDOW

    def open_connections(self, username: str | None = None) -> int:
        """Open connections (of one user, or all): what sshd holds for this hub."""
        return sum(
            1 for k, c in self._conns.items() if not c.is_closed() and (username is None or k[0] == username)
        )

    def _open_for(self, username: str, host: str, port: int) -> asyncssh.SSHClientConnection | None:
        """Any open connection of the user to that host, whatever its credential (for
        polls and stops when the user's credentials have expired)."""
        for (u, h, p, _), conn in self._conns.items():
            if (u, h, p) == (username, host, port) and not conn.is_closed():
                return conn
        return None

    async def connection(
        self,
        target: SSHTarget,
        username: str,
        creds: UserCredentials | None,
        prefer: str | None = None,
        only: str | None = None,
    ) -> tuple[tuple[str, int], asyncssh.SSHClientConnection]:
        """An open connection to one of the target's hosts: ((host, port), connection).

        ``only`` (a ``host:port`` label) pins the host: a notebook started there can only
        be polled and stopped there. ``prefer`` tries that host first. ``creds`` None:
        only an already open connection of the user is used (expired credentials).
        """
        hosts = (
            [hp for hp in target.hosts if host_label(*hp) == only] if only else self._ordered(target, prefer)
        )
        if only and not hosts:
            raise SSHError(f"{target.system}: login host {only} is no longer configured")
        errors: list[str] = []
        for host, port in hosts:
            if creds is None:
                conn = self._open_for(username, host, port)
                if conn is not None:
                    return (host, port), conn
                errors.append(f"{host}:{port}: no open connection and no valid credentials")
                continue
            key = (username, host, port, creds.fingerprint)
            conn = self._conns.get(key)
            if conn is not None and not conn.is_closed():
                return (host, port), conn
            pending = self._connecting.get(key)
            if pending is None:
                pending = asyncio.ensure_future(self._connect_once(target, key, creds))
                self._connecting[key] = pending
                pending.add_done_callback(lambda _f, k=key: self._connecting.pop(k, None))
            try:
                conn = await asyncio.shield(pending)
            except HostKeyError as e:
                metrics.ssh_error(target.system, "host_key")
                errors.append(str(e))
                continue
            except asyncssh.PermissionDenied as e:
                metrics.ssh_error(target.system, "auth")
                # The same credentials fail on every login node: stop here.
                raise SSHError(
                    f"{target.system} refused the SSH login of {username} on {host}: {e.reason}"
                ) from e
            except (TimeoutError, OSError, asyncssh.Error) as e:
                reason = getattr(e, "reason", None) or str(e) or type(e).__name__
                metrics.ssh_error(target.system, "unreachable")
                errors.append(f"{host}:{port}: {reason}")
                continue
            return (host, port), conn
        if creds is None:
            raise SSHError(f"{target.system}: the SSH credentials of {username} have expired; sign in again")
        raise SSHError(f"{target.system} is not reachable over SSH: " + "; ".join(errors))

    async def _connect_once(
        self, target: SSHTarget, key: tuple[str, str, int, str], creds: UserCredentials
    ) -> asyncssh.SSHClientConnection:
        username, host, port, _ = key
        for attempt in range(1, self.BUSY_TRIES + 1):
            try:
                conn = await self._connect(target, host, port, username, creds)
                break
            except asyncssh.PermissionDenied:
                raise
            except (HostKeyError, TimeoutError, OSError, asyncssh.Error) as e:
                reason = getattr(e, "reason", None) or str(e) or type(e).__name__
                if (
                    not isinstance(e, HostKeyError)
                    and attempt < self.BUSY_TRIES
                    and self._busy_host(host, port)
                ):
                    # The host answered others a moment ago: sshd is busy (MaxStartups drops
                    # or slow handshakes under load), not dead. Try again after a jittered pause.
                    log.info("%s: login host %s:%s busy (%s); retrying", target.system, host, port, reason)
                    await asyncio.sleep(random.uniform(0.5, 2.0) * attempt)
                    continue
                self._dead_until[(host, port)] = time.monotonic() + self.DEAD_HOST_BACKOFF
                if not isinstance(e, HostKeyError):
                    log.warning("%s: login host %s:%s unreachable: %s", target.system, host, port, reason)
                raise
        self._last_ok[(host, port)] = time.monotonic()
        self._dead_until.pop((host, port), None)
        metrics.ssh_connected(target.system, conn)
        self._conns[key] = conn
        self._last_used[conn] = time.monotonic()
        self._idle[conn] = target.idle_seconds
        await self._retire_older(target, key, conn)
        self._schedule_idle_close(target.idle_seconds)
        return conn

    async def _connect(
        self, target: SSHTarget, host: str, port: int, username: str, creds: UserCredentials
    ) -> asyncssh.SSHClientConnection:
        try:
            known = parsed_known_hosts(target.known_hosts)
        except (ValueError, asyncssh.Error) as e:
            raise HostKeyError(f"{target.system}: ssh.knownHosts cannot be read: {e}") from e
        client_key = (creds.private_key, creds.certificate) if creds.certificate else creds.private_key
        # At most max_handshakes at once per login host: sshd's MaxStartups (10:30:100 by
        # default) starts dropping unauthenticated connections beyond 10.
        limit = self._handshakes.get((host, port))
        if limit is None:
            limit = self._handshakes[(host, port)] = asyncio.Semaphore(max(1, target.max_handshakes))
        async with limit:
            self.connects += 1
            self.handshakes_in_flight += 1
            self.max_handshakes_seen = max(self.max_handshakes_seen, self.handshakes_in_flight)
            try:
                # connect_timeout covers TCP and the SSH handshake: a black-holed host costs
                # at most this long before the next host is tried.
                return await asyncssh.connect(
                    host,
                    port,
                    username=username,
                    client_keys=[client_key],
                    known_hosts=known,
                    connect_timeout=target.connect_timeout,
                    keepalive_interval=target.keepalive,
                    keepalive_count_max=3,
                    agent_path=None,
                    config=None,
                    preferred_auth="publickey",
                    login_timeout=target.connect_timeout,
                )
            except asyncssh.HostKeyNotVerifiable as e:
                raise HostKeyError(
                    f"{target.system} is refusing SSH connections: the host key of {host} is unknown "
                    f"or changed (not in ssh.knownHosts): {e.reason}"
                ) from e
            finally:
                self.handshakes_in_flight -= 1

    async def run(
        self,
        target: SSHTarget,
        username: str,
        creds: UserCredentials | None,
        argv: Sequence[str],
        stdin: str | None = None,
        timeout: float = 60.0,
        host: str | None = None,
        prefer: str | None = None,
    ) -> Result:
        """Run argv (quoted) on a login host; ``host`` pins it, else failover applies.

        At most ``target.max_output_bytes`` of output are read: past that the channel is
        closed and OutputTooLarge names the system, the command and the host.
        """
        (name, port), conn = await self.connection(target, username, creds, prefer=prefer, only=host)
        chosen = host_label(name, port)
        command = quote_argv(argv)
        proc: asyncssh.SSHClientProcess[bytes] | None = None

        sessions = self._sessions.get(conn)
        if sessions is None:
            sessions = self._sessions[conn] = asyncio.Semaphore(max(1, target.max_sessions))

        async def execute() -> tuple[bytes, bytes]:
            nonlocal proc
            async with sessions:
                for attempt in range(1, self.SESSION_TRIES + 1):
                    try:
                        proc = await conn.create_process(command, encoding=None)
                        break
                    except asyncssh.ChannelOpenError:
                        # sshd frees a session slot only once it has our reply to its
                        # close, a moment after the previous command ended here; nothing
                        # ran, so opening again is safe.
                        if attempt == self.SESSION_TRIES or conn.is_closed():
                            raise
                        await asyncio.sleep(0.05 * 2**attempt)
                if stdin is not None:
                    proc.stdin.write(stdin.encode())
                proc.stdin.write_eof()
                output = await _read_capped(proc, target.max_output_bytes)
                await proc.wait_closed()
                return output

        self._busy[conn] = self._busy.get(conn, 0) + 1
        try:
            out, err = await asyncio.wait_for(execute(), timeout)
        except TimeoutError as e:
            metrics.ssh_error(target.system, "timeout")
            raise SSHError(f"{target.system}: {argv[0]} on {chosen} did not finish in {timeout:.0f}s") from e
        except _Overflow as e:
            metrics.ssh_error(target.system, "output_too_large")
            log.warning(
                "%s: %s on %s for %s printed more than %d bytes; channel closed",
                target.system,
                argv[0],
                chosen,
                username,
                target.max_output_bytes,
            )
            shown = command if len(command) <= 60 else command[:57] + "..."
            raise OutputTooLarge(
                f"{target.system}: `{shown}` on {chosen} printed more than "
                f"{target.max_output_bytes} bytes (ssh.maxOutputBytes) and was stopped; "
                f"a shell start-up file of {username} (~/.bashrc, ~/.profile) that prints may be the cause"
            ) from e
        except asyncssh.ChannelOpenError as e:
            # sshd refused this one session (MaxSessions, MaxStartups-like limits): the
            # connection and the other commands on it are fine, unless it is closing.
            if conn.is_closed():
                self.discard(conn)
            metrics.ssh_error(target.system, "session_refused")
            raise SSHError(
                f"{target.system}: {chosen} refused a new session for {username} ({e.reason}); "
                "if this repeats, sshd's MaxSessions is below ssh.maxSessionsPerConnection"
            ) from e
        except (OSError, asyncssh.Error) as e:
            # The pooled connection died (host rebooted, network blip): drop it so the
            # next call reconnects, and report this call as failed.
            self.discard(conn)
            metrics.ssh_error(target.system, "broken")
            raise SSHError(f"{target.system}: the SSH connection to {chosen} broke: {e}") from e
        finally:
            # Closing the channel on every way out (timeout, overflow, cancellation)
            # stops the remote command's output from queueing up on the connection.
            if proc is not None and proc.exit_status is None:
                proc.close()
            self._busy[conn] = self._busy.get(conn, 1) - 1
            self._last_used[conn] = time.monotonic()
        assert proc is not None
        status = proc.exit_status if proc.exit_status is not None else 255
        return Result(name, chosen, status, out.decode(errors="replace"), err.decode(errors="replace"))

    async def forward(
        self,
        target: SSHTarget,
        username: str,
        creds: UserCredentials | None,
        host: str,
        *,
        local: bool,
        listen: tuple[str, int] | str,
        dest: tuple[str, int],
    ) -> Tunnel:
        """A forward over the user's pooled connection to ``host`` (a label): see Tunnel.

        The forward pins its connection (never closed as idle) and follows the user to a
        renewed connection; callers re-open it when it closed (host reboot, hub restart).
        ForwardRefused: the far end refused it (not a connection problem).
        """
        _, conn = await self.connection(target, username, creds, only=host)
        tunnel = Tunnel(local=local, listen=listen, dest=dest, where=host)
        await tunnel.open_on(conn, target.system)
        self._tunnels.setdefault(conn, set()).add(tunnel)
        return tunnel

    def close_tunnel(self, tunnel: Tunnel) -> None:
        tunnel.close()
        if tunnel.conn is not None:
            held = self._tunnels.get(tunnel.conn)
            if held is not None:
                held.discard(tunnel)
                if not held:
                    del self._tunnels[tunnel.conn]
                    self._last_used[tunnel.conn] = time.monotonic()

    def _pinned(self, conn: asyncssh.SSHClientConnection) -> bool:
        return any(not t._closed for t in self._tunnels.get(conn, ()))

    async def _retire_older(
        self, target: SSHTarget, key: tuple[str, str, int, str], new: asyncssh.SSHClientConnection
    ) -> None:
        """A renewed certificate made a new connection: move the old one's tunnels to it
        and close the old one after a grace period (commands still running may finish)."""
        for other, old in list(self._conns.items()):
            if other[:3] != key[:3] or other == key:
                continue
            del self._conns[other]
            for tunnel in list(self._tunnels.pop(old, ())):
                if tunnel._closed:
                    continue
                try:
                    await tunnel.move_to(new, target.system)
                    self._tunnels.setdefault(new, set()).add(tunnel)
                except SSHError as e:
                    log.warning("%s: tunnel of %s not moved: %s", target.system, key[0], e)
            self._retiring.add(old)
            asyncio.get_running_loop().call_later(self.RETIRE_GRACE, self._close, old)

    def _close(self, conn: asyncssh.SSHClientConnection) -> None:
        conn.close()
        self._retiring.discard(conn)
        for d in (self._last_used, self._busy, self._idle, self._sessions):
            d.pop(conn, None)
        for t in self._tunnels.pop(conn, ()):
            t._closed = True

    def _schedule_idle_close(self, idle: float) -> None:
        if self._idle_timer is not None:
            return
        every = min(max(idle / 4, 1.0), 30.0)
        self._idle_timer = asyncio.get_running_loop().call_later(every, self._close_idle, every)

    def _close_idle(self, every: float) -> None:
        """Close connections unused for their idle time that carry no tunnel and no
        command: sshd then holds sessions for in-flight work only, not one per user."""
        self._idle_timer = None
        now = time.monotonic()
        for key, conn in list(self._conns.items()):
            if conn.is_closed():
                del self._conns[key]
                self._close(conn)
                continue
            idle = self._idle.get(conn, 300.0)
            if (
                idle > 0
                and not self._busy.get(conn)
                and not self._pinned(conn)
                and now - self._last_used.get(conn, now) >= idle
            ):
                del self._conns[key]
                self._close(conn)
        if self._conns:
            self._idle_timer = asyncio.get_running_loop().call_later(every, self._close_idle, every)

    def discard(self, conn: asyncssh.SSHClientConnection) -> None:
        for key, c in list(self._conns.items()):
            if c is conn:
                del self._conns[key]
        self._close(conn)

    def close_all(self) -> None:
        for conn in list(self._conns.values()) + list(self._retiring):
            self._close(conn)
        self._conns.clear()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None


class _Overflow(Exception):
    """Internal: the output cap was reached."""


async def _unlink_remote(conn: asyncssh.SSHClientConnection, path: str, timeout: float = 30.0) -> None:
    """``rm -f path`` as the connection's user (their shell runs it: output capped)."""
    proc = await conn.create_process(quote_argv(["rm", "-f", "--", path]), encoding=None)
    proc.stdin.write_eof()
    try:
        await asyncio.wait_for(_read_capped(proc, _CHUNK), timeout)
        await asyncio.wait_for(proc.wait_closed(), timeout)
    except (TimeoutError, _Overflow):
        pass  # the forward request itself will say whether the path is usable
    finally:
        proc.close()


async def _read_capped(proc: asyncssh.SSHClientProcess[bytes], limit: int) -> tuple[bytes, bytes]:
    """stdout and stderr of ``proc`` until EOF, raising _Overflow past ``limit`` bytes.

    Reading in chunks keeps asyncssh's flow control in charge: what is not read yet
    stays in the SSH window (a few MiB at most), so the hub never holds more than the
    cap plus one window per command.
    """
    total = 0
    bufs = (bytearray(), bytearray())

    async def pump(stream: asyncssh.SSHReader[bytes], buf: bytearray) -> None:
        nonlocal total
        while chunk := await stream.read(_CHUNK):
            total += len(chunk)
            if total > limit:
                raise _Overflow
            buf.extend(chunk)

    tasks = [
        asyncio.ensure_future(pump(proc.stdout, bufs[0])),
        asyncio.ensure_future(pump(proc.stderr, bufs[1])),
    ]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
    return bytes(bufs[0]), bytes(bufs[1])


# One pool per hub process, shared by every spawner.
pool = SSHPool()
