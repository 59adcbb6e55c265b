"""The SSH layer both HPC spawners share: one asyncssh connection per (user, host),
host keys checked against the known_hosts text from values, failover across login hosts.

It knows nothing about Slurm or Jupyter: callers hand it argv lists (quoted here with
``shlex.quote``) and stdin text, and get stdout/stderr/exit status back.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncssh

from . import metrics
from .sshca import UserCredentials

log = logging.getLogger("hpchub.ssh")


class SSHError(RuntimeError):
    """An SSH problem phrased for the user: it names the system and the reason."""


class HostKeyError(SSHError):
    """A login node presented a host key that values' knownHosts does not list."""


@dataclass(frozen=True)
class SSHTarget:
    """Where and how to reach one system's login nodes (from ``systems.<name>.ssh``)."""

    system: str  # display name, for messages
    hosts: tuple[tuple[str, int], ...]
    known_hosts: str
    connect_timeout: float = 10.0
    keepalive: float = 30.0
    login_shell: bool = False

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


class SSHPool:
    """Connections reused per (user, host, credential) with keepalive.

    A host that failed recently is tried last, so a dead login node costs one connect
    timeout once, not on every poll.
    """

    DEAD_HOST_BACKOFF = 60.0
    RETIRE_GRACE = 120.0

    def __init__(self) -> None:
        self._conns: dict[tuple[str, str, int, str], asyncssh.SSHClientConnection] = {}
        self._locks: dict[tuple[str, str, int, str], asyncio.Lock] = {}
        self._dead_until: dict[tuple[str, int], float] = {}
        self._pinned: weakref.WeakSet[asyncssh.SSHClientConnection] = weakref.WeakSet()
        self.connects = 0  # counted for tests and benchmarks

    def _ordered(self, target: SSHTarget, prefer: str | None) -> list[tuple[str, int]]:
        now = time.monotonic()
        hosts = list(target.hosts)
        hosts.sort(key=lambda hp: (self._dead_until.get(hp, 0) > now, host_label(*hp) != prefer))
        return hosts

    async def connection(
        self,
        target: SSHTarget,
        username: str,
        creds: UserCredentials,
        prefer: str | None = None,
        only: str | None = None,
    ) -> tuple[tuple[str, int], asyncssh.SSHClientConnection]:
        """An open connection to one of the target's hosts: ((host, port), connection).

        ``only`` (a ``host:port`` label) pins the host: a notebook started there can only
        be polled and stopped there. ``prefer`` tries that host first.
        """
        hosts = (
            [hp for hp in target.hosts if host_label(*hp) == only] if only else self._ordered(target, prefer)
        )
        if only and not hosts:
            raise SSHError(f"{target.system}: login host {only} is no longer configured")
        errors: list[str] = []
        for host, port in hosts:
            key = (username, host, port, creds.fingerprint)
            lock = self._locks.setdefault(key, asyncio.Lock())
            async with lock:
                conn = self._conns.get(key)
                if conn is not None and not conn.is_closed():
                    return (host, port), conn
                try:
                    conn = await self._connect(target, host, port, username, creds)
                except HostKeyError as e:
                    metrics.ssh_error(target.system, "host_key")
                    errors.append(str(e))
                    self._dead_until[(host, port)] = time.monotonic() + self.DEAD_HOST_BACKOFF
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
                    self._dead_until[(host, port)] = time.monotonic() + self.DEAD_HOST_BACKOFF
                    log.warning("%s: login host %s:%s unreachable: %s", target.system, host, port, reason)
                    continue
                self._dead_until.pop((host, port), None)
                metrics.ssh_connected(target.system, conn)
                self._retire_older(key)
                self._conns[key] = conn
                return (host, port), conn
        raise SSHError(f"{target.system} is not reachable over SSH: " + "; ".join(errors))

    async def _connect(
        self, target: SSHTarget, host: str, port: int, username: str, creds: UserCredentials
    ) -> asyncssh.SSHClientConnection:
        try:
            known = asyncssh.import_known_hosts(target.known_hosts)
        except (ValueError, asyncssh.Error) as e:
            raise HostKeyError(f"{target.system}: ssh.knownHosts cannot be read: {e}") from e
        client_key = (creds.private_key, creds.certificate) if creds.certificate else creds.private_key
        self.connects += 1
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

    async def run(
        self,
        target: SSHTarget,
        username: str,
        creds: UserCredentials,
        argv: Sequence[str],
        stdin: str | None = None,
        timeout: float = 60.0,
        host: str | None = None,
        prefer: str | None = None,
    ) -> Result:
        """Run argv (quoted) on a login host; ``host`` pins it, else failover applies."""
        (name, port), conn = await self.connection(target, username, creds, prefer=prefer, only=host)
        chosen = host_label(name, port)
        command = quote_argv(argv)
        try:
            proc = await asyncio.wait_for(conn.run(command, input=stdin, check=False), timeout)
        except TimeoutError as e:
            metrics.ssh_error(target.system, "timeout")
            raise SSHError(f"{target.system}: {argv[0]} on {chosen} did not finish in {timeout:.0f}s") from e
        except (OSError, asyncssh.Error) as e:
            # The pooled connection died (host rebooted, network blip): drop it so the
            # next call reconnects, and report this call as failed.
            self.discard(conn)
            metrics.ssh_error(target.system, "broken")
            raise SSHError(f"{target.system}: the SSH connection to {chosen} broke: {e}") from e
        out = proc.stdout if isinstance(proc.stdout, str) else (proc.stdout or b"").decode()
        err = proc.stderr if isinstance(proc.stderr, str) else (proc.stderr or b"").decode()
        status = proc.exit_status if proc.exit_status is not None else 255
        return Result(name, chosen, status, out, err)

    async def forward(
        self,
        target: SSHTarget,
        username: str,
        creds: UserCredentials,
        host: str,
        *,
        local: bool,
        listen: tuple[str, int],
        dest: tuple[str, int],
    ) -> tuple[asyncssh.SSHClientConnection, asyncssh.SSHListener]:
        """A port forward over the user's pooled connection to ``host`` (a label).

        local: listen here, connect from the login node to ``dest`` (proxy -> notebook);
        remote: listen on the login node, connect from here to ``dest`` (notebook -> hub).
        The forward lives as long as that connection; callers re-open it when it closed.
        """
        _, conn = await self.connection(target, username, creds, only=host)
        self._pinned.add(conn)  # never retired while it carries a tunnel
        try:
            if local:
                listener = await conn.forward_local_port(listen[0], listen[1], dest[0], dest[1])
            else:
                listener = await conn.forward_remote_port(listen[0], listen[1], dest[0], dest[1])
        except (OSError, asyncssh.Error) as e:
            where = "here" if local else host
            raise SSHError(
                f"{target.system}: cannot open an SSH tunnel on {where} port {listen[1]}: {e}"
            ) from e
        return conn, listener

    def _retire_older(self, key: tuple[str, str, int, str]) -> None:
        """A renewed certificate made a new connection: close the user's old one to that
        host after a grace period (commands still running on it may finish)."""
        for other, conn in list(self._conns.items()):
            if other[:3] == key[:3] and other != key:
                del self._conns[other]
                if conn not in self._pinned:
                    asyncio.get_running_loop().call_later(self.RETIRE_GRACE, conn.close)

    def discard(self, conn: asyncssh.SSHClientConnection) -> None:
        for key, c in list(self._conns.items()):
            if c is conn:
                del self._conns[key]
        conn.close()

    def close_all(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()


# One pool per hub process, shared by every spawner.
pool = SSHPool()
