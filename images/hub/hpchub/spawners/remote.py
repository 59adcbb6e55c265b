"""What the SSH and Slurm spawners share: credentials, the SSH pool, pre-spawn checks and
the launcher that carries the environment over stdin.

Why stdin: the API token must appear neither on a command line (``ps`` on a login node
shows every user's argv) nor in a file others can read. asyncssh's ``env`` would need
``AcceptEnv`` for arbitrary names on every site's sshd, which sites rarely allow. So the
remote command is a fixed ``sh -s`` and the environment travels inside the script on
stdin as ``export NAME='value'`` — shell builtins, which never reach an argv.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.orm import object_session
from tornado import web
from traitlets import Float

from ..prechecks import PreSpawnCheckFailed, checks_from_values, run_checks
from ..ssh import Result, SSHError, SSHTarget, Tunnel, host_label, pool
from ..sshca import SSHCertificateAuthority, UserCredentials, credentials_from_auth_state
from ..status import StatusBoard, board_for
from .dispatch import DispatchSpawner

_CAS: dict[tuple[str, int], SSHCertificateAuthority] = {}

_ENV_NAME_OK = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


def user_credentials(
    system: str, username: str, ssh_ca: Mapping[str, Any], auth_state: Mapping[str, Any] | None
) -> UserCredentials:
    """The user's SSH key and certificate: from auth_state, else signed by the hub CA."""
    creds = credentials_from_auth_state(dict(auth_state) if auth_state else None)
    if creds:
        return creds
    if ssh_ca.get("enabled"):
        key_file = str(ssh_ca.get("privateKeyFile", ""))
        lifetime = int(ssh_ca.get("certLifetimeMinutes", 720))
        ca = _CAS.get((key_file, lifetime))
        if ca is None:
            ca = _CAS[(key_file, lifetime)] = SSHCertificateAuthority(key_file, lifetime)
        return ca.credentials_for(username)
    raise SSHError(
        f"{system}: no SSH credentials for {username} "
        "(the login did not provide a key and the hub's SSH CA is disabled)"
    )


def status_credentials(system: str, status: Mapping[str, Any], ssh_ca: Mapping[str, Any]) -> UserCredentials:
    """The status account's certificate, signed by the hub CA; with ``status.forceCommand``
    the certificate itself carries the command the login node will run instead."""
    if not ssh_ca.get("enabled"):
        raise SSHError(
            f"{system}: status.user needs the hub's SSH CA (sshCA.enabled) to sign its certificate"
        )
    key_file = str(ssh_ca.get("privateKeyFile", ""))
    lifetime = int(ssh_ca.get("certLifetimeMinutes", 720))
    ca = _CAS.get((key_file, lifetime))
    if ca is None:
        ca = _CAS[(key_file, lifetime)] = SSHCertificateAuthority(key_file, lifetime)
    return ca.credentials_for(str(status["user"]), force_command=status.get("forceCommand") or None)


def shell_path(path: str) -> str:
    """A validated user path as a shell word: ``~/x`` becomes ``"$HOME"/'x'`` (a quoted
    tilde would not expand), anything else is quoted whole."""
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def source_line(path: str | None) -> str:
    """Source the user's start-up script; a missing or failing script stops the start."""
    if not path:
        return ""
    word = shell_path(path)
    return f'. {word} || {{ echo "hpchub: the start-up script {path} failed" >&2; exit 1; }}'


def export_lines(env: Mapping[str, str]) -> str:
    """``export`` lines for a POSIX shell; names checked, values quoted."""
    lines = []
    for name, value in sorted(env.items()):
        if not name or name[0].isdigit() or not set(name) <= _ENV_NAME_OK:
            raise ValueError(f"environment variable name {name!r} is not valid")
        lines.append(f"export {name}={shlex.quote(str(value))}")
    return "\n".join(lines)


class RemoteSpawner(DispatchSpawner):
    """Base of the backends that reach the supercomputer over SSH."""

    ssh_command_timeout = Float(
        60.0, config=True, help="Seconds a single remote command (sbatch, squeue, kill) may take."
    )

    remote_host: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tunnels: dict[str, Tunnel] = {}
        self.tunnel_ports: dict[str, Any] = {}

    def configure_status(self) -> None:
        """Poll at the status board's pace, jittered (polls of 1,000 servers never line up
        after a restart, jupyterhub#4646); the board answers from its cache."""
        assert self.cell is not None
        interval = self.cell.system.status.get("intervalSeconds")
        if interval:
            self.poll_interval = max(1, int(interval))
        self.poll_jitter = 0.4  # tornado's PeriodicCallback: +-20%

    @property
    def can_watch(self) -> bool:
        # A spawner built without a user or login hosts (tests, a removed system) has no board.
        return self.cell is not None and bool(self.cell.system.ssh.get("hosts")) and self.user is not None

    @property
    def status_board(self) -> StatusBoard:
        """The system's shared status board (hpchub/status.py)."""
        assert self.cell is not None
        system = self.cell.system
        status = dict(system.status)

        async def service_credentials() -> UserCredentials:
            return status_credentials(self.system_name, status, self.ssh_ca)

        return board_for(
            system.name, self.target, pool, status, service_credentials if status.get("user") else None
        )

    @property
    def system_name(self) -> str:
        assert self.cell is not None
        return self.cell.system.display_name

    @property
    def target(self) -> SSHTarget:
        assert self.cell is not None
        return SSHTarget.from_values(self.system_name, self.cell.system.ssh)

    @property
    def remote_user(self) -> str:
        return self.user.name

    @property
    def shell_argv(self) -> list[str]:
        # A login shell sources the site's profile (module command, PATH) like an
        # interactive login would; sites without modules skip its cost.
        return ["bash", "--login", "-s"] if self.target.login_shell else ["/bin/sh", "-s"]

    async def credentials(self) -> UserCredentials:
        return user_credentials(
            self.system_name, self.remote_user, self.ssh_ca, await self.user.get_auth_state()
        )

    async def credentials_or_open(self) -> UserCredentials | None:
        """The user's credentials; None when they expired (then an open connection of
        the user serves polls and stops, and the console asks them to sign in again)."""
        try:
            return await self.credentials()
        except SSHError as e:
            self.log.info("%s: %s; using an open connection if any", self.system_name, e)
            return None

    async def ssh(
        self,
        argv: Sequence[str],
        stdin: str | None = None,
        timeout: float | None = None,
        host: str | None = None,
        expired_ok: bool = False,
    ) -> Result:
        """Run argv as the user. ``expired_ok``: a stop or poll that may use an open
        connection when the user's credentials have expired."""
        creds = await (self.credentials_or_open() if expired_ok else self.credentials())
        return await pool.run(
            self.target,
            self.remote_user,
            creds,
            argv,
            stdin=stdin,
            timeout=timeout or self.ssh_command_timeout,
            host=host,
            prefer=self.remote_host,
        )

    async def script(
        self, text: str, timeout: float | None = None, host: str | None = None, expired_ok: bool = False
    ) -> Result:
        """Run a shell script sent on stdin (the only way anything reaches a shell)."""
        return await self.ssh(self.shell_argv, stdin=text, timeout=timeout, host=host, expired_ok=expired_ok)

    async def run_prechecks(self) -> None:
        assert self.cell is not None
        checks = checks_from_values(self.cell.system.name, self.cell.system.pre_spawn_checks)

        async def run(argv: Sequence[str], timeout: float) -> Result:
            return await self.ssh(argv, timeout=timeout)

        try:
            await run_checks(self.system_name, checks, run)
        except PreSpawnCheckFailed as e:
            msg = e.message if e.message.startswith(self.system_name) else f"{self.system_name}: {e.message}"
            # 403: the site refuses this spawn for this user; the text is the operator's.
            raise web.HTTPError(403, "%s", msg + (f" ({e.output})" if e.output else "")) from e

    async def start(self) -> tuple[str, int]:
        """Start via the backend's ``start_remote``; failures become messages for humans.

        JupyterHub relays an HTTPError's message to the REST caller and the console;
        anything else would surface as a bare "Internal Server Error".
        """
        try:
            return await self.start_remote()
        except web.HTTPError:
            raise
        except (RuntimeError, SSHError) as e:
            self.log.error("%s", e)
            raise web.HTTPError(500, "%s", str(e)) from e

    async def start_remote(self) -> tuple[str, int]:
        raise NotImplementedError

    def remote_env(self) -> dict[str, str]:
        """The server's environment: JupyterHub's plus the system's from values."""
        assert self.cell is not None
        env = {k: str(v) for k, v in self.get_env().items()}
        # The hub's own PATH, HOME, ... mean nothing on the supercomputer.
        for k in ("PATH", "HOME", "SHELL", "USER", "LANG", "PYTHONPATH", "VIRTUAL_ENV"):
            env.pop(k, None)
        env.update({k: str(v) for k, v in (self.cell.system.singleuser.get("environment") or {}).items()})
        return env

    def module_lines(self) -> str:
        """``module load`` lines for the system's modules and the chosen version."""
        assert self.cell is not None
        su = self.cell.system.singleuser
        modules = list(su.get("modules") or [])
        version = self.clean_options.version if self.clean_options else None
        if version:
            modules += list((self.cell.versions.get(version) or {}).get("modules") or [])
        # A missing module is a start failure with a message, not a server started in the
        # wrong environment.
        return "\n".join(
            f'module load {shlex.quote(m)} || {{ echo "hpchub: module load failed:" {shlex.quote(m)} >&2; exit 1; }}'
            for m in modules
        )

    def server_cmd(self) -> list[str]:
        assert self.cell is not None
        cmd = list(self.cell.system.singleuser.get("cmd") or ["jupyterhub-singleuser"])
        return cmd + list(self.get_args())

    # --- SSH tunnel mode (ssh.tunnel: true) -------------------------------------------
    # For notebooks the hub and proxy cannot route to (and that cannot route to the hub):
    # the notebook -> hub API direction is a remote forward on the login node, the
    # proxy -> notebook direction a local forward listening in the hub's pod, both over
    # the user's pooled SSH connection. Their ports are kept in state and re-opened on
    # the same ports after a hub restart (poll), so the proxy route and the notebook's
    # API URL stay valid.

    @property
    def tunnel(self) -> bool:
        assert self.cell is not None
        return bool(self.cell.system.ssh.get("tunnel", False))

    def _ssh_value(self, key: str, default: str) -> str:
        assert self.cell is not None
        return str(self.cell.system.ssh.get(key) or default)

    async def open_api_tunnel(self, host: str, port: int = 0) -> int:
        """Remote forward on ``host`` to this hub's API; returns the login-node port."""
        creds = await self.credentials_or_open()
        hub_port = int(self.hub.port) if self.hub and self.hub.port else 8081
        tunnel = await pool.forward(
            self.target,
            self.remote_user,
            creds,
            host,
            local=False,
            listen=(self._ssh_value("tunnelRemoteBind", "127.0.0.1"), port),
            dest=("127.0.0.1", hub_port),
        )
        self._tunnels["api"] = tunnel
        self.tunnel_ports["api"] = tunnel.port
        return tunnel.port

    async def open_server_tunnel(self, host: str, dest: tuple[str, int], port: int = 0) -> int:
        """Local forward from this pod to the notebook; returns the local port."""
        creds = await self.credentials_or_open()
        tunnel = await pool.forward(
            self.target,
            self.remote_user,
            creds,
            host,
            local=True,
            listen=(self._ssh_value("tunnelBindAddress", "0.0.0.0"), port),
            dest=dest,
        )
        self._tunnels["server"] = tunnel
        self.tunnel_ports.update(server=tunnel.port, dest_host=dest[0], dest_port=dest[1])
        return tunnel.port

    async def prepare_tunnel(self, env: dict[str, str]) -> tuple[str | None, dict[str, str]]:
        """In tunnel mode: pin the login node the server will run on (or submit from) and
        point the notebook's hub URLs at the API tunnel ending there. Else unchanged."""
        if not self.tunnel:
            return None, env
        (h, p), _ = await pool.connection(
            self.target, self.remote_user, await self.credentials(), prefer=self.remote_host
        )
        pinned = self.remote_host = host_label(h, p)
        return pinned, self.tunnel_env(env, await self.open_api_tunnel(pinned))

    def tunnel_env(self, env: dict[str, str], api_port: int) -> dict[str, str]:
        """Point the notebook's hub URLs at the login node end of the API tunnel."""
        # The URL the notebook was given: hub_connect_url's when set, else the hub's own.
        api = env.get("JUPYTERHUB_API_URL", self.hub.api_url).rstrip("/")
        path = "/" + api.split("://", 1)[-1].split("/", 1)[-1]
        local = f"http://{self._ssh_value('tunnelRemoteHost', '127.0.0.1')}:{api_port}{path}"
        return {k: v.replace(api, local) if isinstance(v, str) else v for k, v in env.items()}

    @property
    def tunnel_connect_host(self) -> str:
        # How the proxy reaches this hub pod: values, else the pod IP from the Downward API.
        return self._ssh_value("tunnelConnectHost", os.environ.get("POD_IP", "127.0.0.1"))

    async def ensure_tunnels(self) -> None:
        """Re-open forwards that died with the hub (restart) or with their connection."""
        if not self.tunnel or not self.tunnel_ports or not self.remote_host:
            return
        api = self._tunnels.get("api")
        if "api" in self.tunnel_ports and (api is None or api.closed):
            await self.open_api_tunnel(self.remote_host, int(self.tunnel_ports["api"]))
        srv = self._tunnels.get("server")
        if "server" in self.tunnel_ports and (srv is None or srv.closed):
            dest = (str(self.tunnel_ports["dest_host"]), int(self.tunnel_ports["dest_port"]))
            await self.open_server_tunnel(self.remote_host, dest, int(self.tunnel_ports["server"]))

    def close_tunnels(self) -> None:
        for tunnel in self._tunnels.values():
            pool.close_tunnel(tunnel)
        self._tunnels.clear()
        self.tunnel_ports = {}

    def save_state_now(self) -> None:
        """Write spawner state to the hub DB before a long wait.

        JupyterHub only stores state after start() returns; a hub killed while a job is
        queued would otherwise forget the job (an orphan). Committing here closes that gap.
        """
        if self.orm_spawner is None:
            return
        self.orm_spawner.state = self.get_state()
        session = object_session(self.orm_spawner)
        if session is not None:
            session.commit()

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.remote_host = state.get("remote_host")
        self.tunnel_ports = dict(state.get("tunnel") or {})

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.remote_host:
            state["remote_host"] = self.remote_host
        if self.tunnel_ports:
            state["tunnel"] = dict(self.tunnel_ports)
        return state

    def clear_state(self) -> None:
        super().clear_state()
        self.remote_host = None
        self.close_tunnels()
