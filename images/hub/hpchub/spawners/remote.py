"""What the SSH and Slurm spawners share: credentials, the SSH pool, pre-spawn checks, the
launcher that carries the environment over stdin, the state model and the restart path.

Why stdin: the API token must appear neither on a command line (``ps`` on a login node
shows every user's argv) nor in a file others can read. asyncssh's ``env`` would need
``AcceptEnv`` for arbitrary names on every site's sshd, which sites rarely allow. So the
remote command is a fixed ``sh -s`` and the environment travels inside the script on
stdin as ``export NAME='value'`` — shell builtins, which never reach an argv.

State (docs/design/state-and-status.md, section 1): ``run_id`` and ``remote_host`` are
written to the hub database *before* anything is launched or submitted, and ``phase``
at every transition, so a hub killed at any moment finds its run again (HPC-side names
carry the run id) instead of orphaning it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shlex
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import object_session
from tornado import web
from traitlets import Float

from .. import apirelay, reaper, routing
from ..identity import IdentityConfig, IdentityError, resolve
from ..prechecks import PreSpawnCheckFailed, checks_from_values, run_checks
from ..spawnsteps import SpawnSteps
from ..ssh import ForwardRefused, Result, SSHError, SSHTarget, Tunnel, host_label, pool
from ..sshca import CertificateRefused, UserCredentials, certificate_authority, credentials_from_auth_state
from ..status import StatusBoard, TransientProcessError, board_for
from . import restart
from .dispatch import DispatchSpawner

MARK = "HPCHUB-"
API_SOCKET = "api.sock"
# sun_path holds 108 bytes on Linux (104 elsewhere); stay under both.
MAX_SOCKET_PATH = 100

_ENV_NAME_OK = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")

# Where a run is, in order. None: nothing runs.
PHASES = ("launching", "queued", "starting", "running")


async def user_credentials(
    system: str,
    username: str,
    ssh_ca: Mapping[str, Any],
    auth_state: Mapping[str, Any] | None,
    identity: Mapping[str, Any] | None = None,
    systems: Mapping[str, Any] | None = None,
) -> UserCredentials:
    """The user's SSH key and certificate: from auth_state, else signed by the hub CA.

    Before the CA signs, the user's uid comes from the trusted identity source (values
    ``identity``), so no certificate is made for a uid below the floor. Raises
    CertificateRefused or IdentityError (messages for the user)."""
    creds = credentials_from_auth_state(dict(auth_state) if auth_state else None)
    if creds:
        return creds
    if ssh_ca.get("enabled"):
        ca = certificate_authority(ssh_ca)
        fresh = ca.cached(username)
        if fresh:
            return fresh
        ca.check_principal(username)  # a deny-listed name never costs a lookup
        config = IdentityConfig.from_values(identity)
        try:
            found = await resolve(config, username, auth_state, systems or {}, ssh_ca)
        except IdentityError as e:
            if e.status != 403:
                raise
            raise CertificateRefused(f"no SSH certificate is issued for {username}: {e.message}") from e
        return ca.credentials_for(username, found.uid if found else None)
    if auth_state and auth_state.get("ssh_private_key"):
        raise SSHError(f"{system}: the SSH certificate from your sign-in has expired; sign in again")
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
    # A service account: user certificates are never signed for its name (the loader puts
    # it on sshCA.denyPrincipals).
    return certificate_authority(ssh_ca).service_credentials(
        str(status["user"]), force_command=status.get("forceCommand") or None
    )


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


class TunnelLost(SSHError):
    """The notebook's tunnel to the hub cannot be restored safely: the server must go."""


def parse_marks(stdout: str) -> dict[str, str]:
    """``HPCHUB-KEY value`` lines of a script's output (the last one of a key wins)."""
    marks: dict[str, str] = {}
    for line in stdout.splitlines():
        if line.startswith(MARK):
            key, _, rest = line[len(MARK) :].partition(" ")
            marks[key] = rest.strip()
    return marks


def relay_start_script(run_dir: str, python: str, listen: str, lifetime: Sequence[str]) -> str:
    """Create the run directory (0700), write the relay there and start it detached;
    print the directory's absolute path, the relay's PID and its port."""
    q = shlex.quote
    source = Path(apirelay.__file__).read_text()
    eof = f"HPCHUB_RELAY_{secrets.token_hex(8)}"  # quoted here-doc: no expansion inside
    opts = " ".join(q(o) for o in lifetime)
    return f"""umask 077
d={run_dir}
mkdir -p "$d" && cd "$d" || {{ echo "{MARK}FAILED cannot create $d"; exit 1; }}
dir=$(pwd -P)
echo "{MARK}DIR $dir"
cat > relay.py <<'{eof}'
{source}
{eof}
rm -f {API_SOCKET} relay.port
setsid {q(python)} relay.py --listen {q(listen)} --socket "$dir/{API_SOCKET}" --port-file relay.port {opts} </dev/null >relay.log 2>&1 &
pid=$!
echo "{MARK}RELAYPID $pid"
# Its start time tells this relay from a later process with the same PID (status board).
echo "{MARK}RELAYSTART $(LC_ALL=C ps -o lstart= -p $pid)"
i=0
while [ $i -lt 150 ]; do
  if [ -s relay.port ]; then echo "{MARK}RELAYPORT $(cat relay.port)"; exit 0; fi
  kill -0 $pid 2>/dev/null || break
  sleep 0.1
  i=$((i+1))
done
echo "{MARK}FAILED"
tail -n 5 relay.log
exit 1
"""


def _relay_is_ours(pid: int, socket_path: str) -> str:
    # The PID must still be this relay (its argv names the socket), not a reused number.
    return (
        f"kill -0 {int(pid)} 2>/dev/null && grep -aqF -- {shlex.quote(socket_path)} /proc/{int(pid)}/cmdline"
    )


def relay_stop_script(pid: int, socket_path: str) -> str:
    return f"""if {_relay_is_ours(pid, socket_path)}; then kill -TERM {int(pid)}; fi
rm -f {shlex.quote(socket_path)}
exit 0
"""


def whole_script(body: str) -> str:
    """A script the shell runs only once it has read all of it.

    ``sh -s`` executes stdin line by line; if the hub dies while sending a script, the
    shell would run the part that arrived (a job script cut short inside its here-doc is
    still submitted). A brace group is parsed whole before it runs: cut short, it is a
    syntax error and nothing runs.
    """
    return "{\n" + body.rstrip("\n") + "\n}\n"


@dataclass(frozen=True)
class RemoteOps:
    """Runs commands on one system as one user: what a spawner and the reaper share.

    ``creds`` answers None when the user's credentials expired; the pool then uses a
    connection of theirs that is still open (poll and stop keep working) or fails with a
    message asking the user to sign in again.
    """

    target: SSHTarget
    username: str
    creds: Callable[[], Awaitable[UserCredentials | None]]
    timeout: float = 60.0

    @property
    def shell_argv(self) -> list[str]:
        # A login shell sources the site's profile (module command, PATH) like an
        # interactive login would; sites without modules skip its cost.
        return ["bash", "--login", "-s"] if self.target.login_shell else ["/bin/sh", "-s"]

    async def run(
        self,
        argv: Sequence[str],
        stdin: str | None = None,
        timeout: float | None = None,
        host: str | None = None,
        prefer: str | None = None,
    ) -> Result:
        return await pool.run(
            self.target,
            self.username,
            await self.creds(),
            argv,
            stdin=stdin,
            timeout=timeout or self.timeout,
            host=host,
            prefer=prefer,
        )

    async def script(self, text: str, timeout: float | None = None, host: str | None = None) -> Result:
        """Run a shell script sent on stdin (the only way anything reaches a shell)."""
        return await self.run(self.shell_argv, stdin=text, timeout=timeout, host=host)


class RemoteSpawner(DispatchSpawner):
    """Base of the backends that reach the supercomputer over SSH."""

    ssh_command_timeout = Float(
        60.0, config=True, help="Seconds a single remote command (sbatch, squeue, kill) may take."
    )

    backend_name = ""
    remote_host: str | None = None
    run_id: str | None = None
    phase: str | None = None
    started: float | None = None
    expires: float | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tunnels: dict[str, Tunnel] = {}
        self.tunnel_ports: dict[str, Any] = {}
        self.job_info: dict[str, Any] = {}
        self._events: list[dict[str, Any]] = []
        # Set when the hub could not use the user's credentials (the console says so).
        self.credentials_problem = ""
        self._adoption: asyncio.Future[Any] | None = None
        self._stop_task: asyncio.Future[None] | None = None
        # The steps of the start in progress (None outside one: polls, adoption).
        self.steps: SpawnSteps | None = None

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
        return self.ops.shell_argv

    @property
    def ops(self) -> RemoteOps:
        """Commands as the user, usable with expired credentials (an open connection)."""
        return RemoteOps(self.target, self.remote_user, self.credentials_or_open, self.ssh_command_timeout)

    async def credentials(self) -> UserCredentials:
        return await user_credentials(
            self.system_name,
            self.remote_user,
            self.ssh_ca,
            await self.user.get_auth_state(),
            self.identity,
            self.systems,
        )

    async def credentials_or_open(self) -> UserCredentials | None:
        """The user's credentials; None when they expired (then an open connection of
        the user serves polls and stops, and the console asks them to sign in again)."""
        try:
            creds = await self.credentials()
        except (SSHError, CertificateRefused, IdentityError) as e:
            self.log.info("%s: %s; using an open connection if any", self.system_name, e)
            self.credentials_problem = str(e)
            return None
        self.credentials_problem = ""
        return creds

    async def check_options(self, user_options: dict[str, Any] | None) -> Any:
        # JupyterHub runs this (apply_user_options) just before start(): a start's clock.
        self.steps = SpawnSteps()
        clean = await super().check_options(user_options)
        self.step("options")
        # The credentials before anything runs: a name the CA will not sign for (root, a
        # system account, a uid below the floor) is refused here with the reason.
        try:
            await self.credentials()
        except CertificateRefused as e:
            raise web.HTTPError(403, "%s", f"{self.system_name}: {e}") from e
        except IdentityError as e:
            raise web.HTTPError(e.status, "%s", f"{self.system_name}: {e.message}") from e
        self.step("credentials")
        return clean

    def step(self, name: str) -> None:
        """End the step ``name`` of the start in progress (spawnsteps.py)."""
        if self.steps is not None:
            self.steps.mark(name)

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
        self._events = []
        self.job_info = {}
        if self.steps is None:
            self.steps = SpawnSteps()
        self.step("hub")  # JupyterHub's own work between the option check and start()
        try:
            address = await self.start_remote()
            if self.steps is not None:
                self.log.info(
                    "%s: spawn steps of %s: %s", self.system_name, self._log_name, self.steps.text()
                )
            return address
        except web.HTTPError:
            await self.stop_api_relay()
            raise
        except (RuntimeError, SSHError) as e:
            self.log.error("%s", e)
            await self.stop_api_relay()
            raise web.HTTPError(500, "%s", str(e)) from e
        finally:
            self.steps = None

    async def start_remote(self) -> tuple[str, int]:
        raise NotImplementedError

    async def confirm_route(self, host: str, port: int, source: str) -> None:
        """A Jupyter server for this user's URL prefix must answer at host:port before
        the proxy is sent there (the port came from a file the user can write)."""
        assert self.server is not None
        await routing.confirm_jupyter(self.system_name, host, port, self.server.base_url, source)

    # --- the run: id, login host, phase ---------------------------------------------

    async def begin_run(self) -> str:
        """Name this start and pin its login host, and commit both before anything is
        launched there: from here on a hub killed at any moment can find the run."""
        self.run_id = secrets.token_hex(8)
        self.started = time.time()
        self.phase = "launching"
        (h, p), _ = await pool.connection(
            self.target, self.remote_user, await self.credentials(), prefer=self.remote_host
        )
        self.remote_host = host_label(h, p)
        self.save_state_now()
        return self.remote_host

    def set_phase(self, phase: str) -> None:
        if phase != self.phase:
            self.phase = phase
            self.save_state_now()

    def save_state_now(self) -> None:
        """Write spawner state to the hub DB at once.

        JupyterHub only stores state after start() returns; a hub killed while a job is
        queued (or a launch is in flight) would otherwise forget the run: an orphan.
        """
        if self.orm_spawner is None:
            return
        self.orm_spawner.state = self.get_state()
        session = object_session(self.orm_spawner)
        if session is not None:
            session.commit()

    def _event(self, message: str, progress: int | None = None, **fields: str) -> None:
        event: dict[str, Any] = {"message": message, **fields}
        if progress is not None:
            event["progress"] = progress
        if not self._events or self._events[-1]["message"] != message:
            self._events.append(event)

    async def progress(self) -> Any:
        sent = 0
        while True:
            while sent < len(self._events):
                yield self._events[sent]
                sent += 1
            if not self._spawn_pending:
                return
            await asyncio.sleep(0.5)

    def console_status(self) -> dict[str, Any]:
        """What the console shows beyond JupyterHub's own state (see console/page.py)."""
        out: dict[str, Any] = {}
        if self.expires and self.phase == "running":
            out["time_left"] = max(int(self.expires - time.time()), 0)
        if self.credentials_problem:
            out["message"] = self.credentials_problem
        return out

    # --- stopping without orphans ------------------------------------------------------

    async def stop(self, now: bool = False) -> None:
        """Stop the run and confirm it is gone; what cannot be confirmed goes to the reaper.

        JupyterHub clears the state after stop() whatever happens, so a cancellation that
        must go on is committed to the reaper's table before this returns. Concurrent
        calls (a DELETE and a failed start-up check) share one stop.
        """
        if self._stop_task is None or self._stop_task.done():
            self._stop_task = asyncio.ensure_future(self._stop_once(now))
        await asyncio.shield(self._stop_task)

    async def _stop_once(self, now: bool) -> None:
        if not self.run_id and not self.has_handle():
            return
        self._cancel_adoption()
        stopped = self.stopped_text()
        try:
            gone = await self.stop_remote(now)
            error = "" if gone else "not confirmed gone"
        except (SSHError, RuntimeError) as e:
            gone, error = False, str(e)
        if not gone:
            self.log.error(
                "%s: stop of %s (run %s) not confirmed: %s; the reaper keeps trying",
                self.system_name,
                self._log_name,
                self.run_id,
                error,
            )
            self.hand_to_reaper(f"stop not confirmed: {error}")
        else:
            self.log.info("%s", stopped)
        # Tunnel mode: the hub-API relay ends with the server by itself (pid/end file);
        # ended here too so nothing of the run holds a port on the login node.
        await self.stop_api_relay()
        self.close_tunnels()
        self.forget_run()

    def stopped_text(self) -> str:
        return f"{self.system_name}: {self._log_name} stopped (run {self.run_id})"

    def has_handle(self) -> bool:
        """Whether the backend knows a job id / pid (a row from before run ids)."""
        return False

    async def stop_remote(self, now: bool) -> bool:
        """Stop the run; True once the job/process is confirmed gone."""
        raise NotImplementedError

    def reaper_row(self, reason: str) -> reaper.Cancellation:
        assert self.cell is not None
        return reaper.Cancellation(
            username=self.remote_user,
            server=self.name,
            system=self.cell.system.name,
            backend=self.backend_name,
            host=self.remote_host or "",
            run_id=self.run_id or "",
            reason=reason,
        )

    def hand_to_reaper(self, reason: str) -> None:
        """Commit a pending cancellation of this run to the hub DB (before state is cleared)."""
        session = object_session(self.orm_spawner) if self.orm_spawner is not None else None
        if session is None:
            self.log.error("%s: no database to record the cancellation of %s", self.system_name, self.run_id)
            return
        reaper.add(session.get_bind(), self.reaper_row(reason))

    def forget_run(self) -> None:
        self.run_id = None
        self.phase = None
        self.started = None
        self.expires = None
        self.job_info = {}

    # --- after a hub restart (JupyterHub's check_spawner) -----------------------------

    async def poll(self) -> int | None:
        if self._adoption is not None and not self._adoption.done():
            return None  # the adoption owns the run until it is up or has failed
        if not self.phase:
            return 0
        try:
            return await self.poll_remote()
        except Exception:
            # JupyterHub reads an exception from poll as "not running" and stops the
            # server; whatever failed here, the run may well be fine.
            self.log.exception("%s: poll of %s failed; trying again later", self.system_name, self._log_name)
            return None

    async def poll_remote(self) -> int | None:
        raise NotImplementedError

    async def get_url(self) -> str:
        """JupyterHub asks this of every server poll() called alive at hub start-up.

        A running server whose address is confirmed (and answers) returns its URL; tunnel
        mode re-opens its forwards first (the hub pod may be new). Anything else (a job
        still queued, a server starting, an address that cannot be checked right now) is
        *adopted*: the spawner turns into a pending spawn that finishes when the server
        answers, and JupyterHub's own check is answered by a placeholder so it neither
        waits hours nor stops the server. See restart.py.
        """
        try:
            url = await self.confirmed_url()
        except (SSHError, RuntimeError) as e:
            self.log.warning("%s: cannot confirm %s yet: %s", self.system_name, self._log_name, e)
            url = None
        except Exception:
            # An exception here would end JupyterHub's start-up (init_spawners gathers the
            # checks): whatever it was, the adoption takes over.
            self.log.exception("%s: confirming %s failed", self.system_name, self._log_name)
            url = None
        if url:
            return url
        return restart.adopt(self)

    async def confirmed_url(self) -> str | None:
        """The URL of a running server whose address is confirmed and answers, else None."""
        raise NotImplementedError

    async def wait_for_server(self, deadline: float | None) -> tuple[str, int]:
        """Wait until this run's server answers; (host, port) the proxy uses. Raises
        RuntimeError (a message for the user) when the run ended first."""
        raise NotImplementedError

    def _cancel_adoption(self) -> None:
        if self._adoption is not None and not self._adoption.done():
            self._adoption.cancel()

    def url_for(self, host: str, port: int) -> str:
        """The server URL JupyterHub keeps in its DB row (address and URL prefix)."""
        assert self.server is not None
        h = f"[{host}]" if ":" in host else host
        return f"http://{h}:{port}{self.server.base_url}"

    async def answers(self, host: str, port: int, timeout: float = 5) -> bool:
        """A Jupyter server for this user's URL prefix answers at host:port."""
        return await restart.server_answers(self, host, port, timeout)

    async def move_route(self, host: str, port: int) -> None:
        """Point the server's DB row and proxy route at a new address (restart, requeue)."""
        await restart.move_route(self, host, port)

    # --- environment and command ----------------------------------------------------

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
    # For notebooks the hub and proxy cannot route to (and that cannot route to the hub).
    # proxy -> notebook: a local forward listening in the hub's pod. notebook -> hub API:
    # the hub forwards its API to a Unix socket in the user's 0700 run directory on the
    # login node (only the owner can open it, nobody can take its place while the forward
    # is down), and the notebook talks to a relay (hpchub/apirelay.py) that holds one TCP
    # port for the notebook's lifetime and passes connections on to that socket. Never a
    # remote TCP forward: once it dropped (hub restart, lost keepalive), any user on the
    # login node could bind its port and receive the notebook's tokens. After a hub
    # restart (get_url, poll) the new hub re-opens the forwards: the API forward on the
    # same socket path, the server forward on the same local port where it is free (a new
    # pod: any port), and the route and DB row move to this pod's address. When that
    # cannot be done safely (relay gone, forward refused) the server is stopped.

    @property
    def tunnel(self) -> bool:
        assert self.cell is not None
        return bool(self.cell.system.ssh.get("tunnel", False))

    def _ssh_value(self, key: str, default: str) -> str:
        assert self.cell is not None
        return str(self.cell.system.ssh.get(key) or default)

    @property
    def run_dir(self) -> str:
        """This start's directory on the HPC side, as a shell word (``"$HOME"/...``)."""
        raise NotImplementedError

    # apirelay.py options saying when the relay ends by itself (besides stop()).
    relay_lifetime: tuple[str, ...] = ()

    async def open_api_tunnel(self, host: str) -> int:
        """Start the relay on ``host`` and forward the hub API to its socket; returns the
        relay's port (what the notebook's hub URLs point at)."""
        result = await self.script(
            relay_start_script(
                self.run_dir,
                self._ssh_value("tunnelRelayPython", "python3"),
                self._ssh_value("tunnelRemoteBind", "127.0.0.1"),
                self.relay_lifetime,
            ),
            host=host,
        )
        marks = parse_marks(result.stdout)
        if not {"DIR", "RELAYPID", "RELAYPORT"} <= marks.keys():
            detail = (result.stdout.split(f"{MARK}FAILED", 1)[-1] + result.stderr).strip()[-1000:]
            raise SSHError(f"{self.system_name}: the hub-API relay did not start on {host}: {detail}")
        self.tunnel_ports.update(
            api_socket=f"{marks['DIR']}/{API_SOCKET}",
            relay_pid=int(marks["RELAYPID"]),
            relay_start=marks.get("RELAYSTART") or None,
            relay_port=int(marks["RELAYPORT"]),
        )
        try:
            if len(str(self.tunnel_ports["api_socket"]).encode()) > MAX_SOCKET_PATH:
                raise SSHError(
                    f"{self.system_name}: the hub-API socket path {self.tunnel_ports['api_socket']} is "
                    f"longer than a Unix socket path may be ({MAX_SOCKET_PATH} bytes)"
                )
            await self._forward_api(host)
        except SSHError:
            await self.stop_api_relay()
            raise
        self.log.info(
            "%s: hub-API relay of %s on %s: port %s, pid %s",
            self.system_name,
            self._log_name,
            host,
            self.tunnel_ports["relay_port"],
            self.tunnel_ports["relay_pid"],
        )
        return int(self.tunnel_ports["relay_port"])

    async def _forward_api(self, host: str) -> None:
        hub_port = int(self.hub.port) if self.hub and self.hub.port else 8081
        self._tunnels["api"] = await pool.forward(
            self.target,
            self.remote_user,
            await self.credentials_or_open(),
            host,
            local=False,
            listen=str(self.tunnel_ports["api_socket"]),
            dest=("127.0.0.1", hub_port),
        )

    def watch_relay(self) -> None:
        """Put the relay on the status board: its liveness comes with the one `ps` per
        login node that serves every poll, not one SSH command per server."""
        pid = self.tunnel_ports.get("relay_pid")
        if pid and self.remote_host and self.can_watch:
            self.status_board.watch_process(
                self.remote_host,
                int(pid),
                self.tunnel_ports.get("relay_start"),
                self.remote_user,
                self.credentials_or_open,
            )

    def unwatch_relay(self) -> None:
        pid = self.tunnel_ports.get("relay_pid")
        if pid and self.remote_host and self.can_watch:
            self.status_board.unwatch_process(self.remote_host, int(pid))

    async def stop_api_relay(self) -> None:
        """End this server's relay (best effort: it also ends with the server)."""
        pid, sock = self.tunnel_ports.get("relay_pid"), self.tunnel_ports.get("api_socket")
        if not pid or not sock or not self.remote_host:
            return
        self.unwatch_relay()
        try:
            await self.script(
                relay_stop_script(int(pid), str(sock)), host=self.remote_host, timeout=20, expired_ok=True
            )
        except SSHError as e:
            self.log.warning(
                "%s: cannot stop the hub-API relay of %s: %s", self.system_name, self._log_name, e
            )

    async def open_server_tunnel(self, host: str, dest: tuple[str, int], port: int = 0) -> int:
        """Local forward from this pod to the notebook; returns the local port."""
        tunnel = await pool.forward(
            self.target,
            self.remote_user,
            await self.credentials_or_open(),
            host,
            local=True,
            listen=(self._ssh_value("tunnelBindAddress", "0.0.0.0"), port),
            dest=dest,
        )
        self._tunnels["server"] = tunnel
        self.tunnel_ports.update(server=tunnel.port, dest_host=dest[0], dest_port=dest[1])
        return tunnel.port

    async def prepare_tunnel(self, env: dict[str, str], host: str) -> dict[str, str]:
        """In tunnel mode: point the notebook's hub URLs at the relay on the login node the
        server runs on (or is submitted from). Else unchanged."""
        if not self.tunnel:
            return env
        env = self.tunnel_env(env, await self.open_api_tunnel(host))
        self.save_state_now()  # the API port: a restarted hub re-opens it
        return env

    def tunnel_env(self, env: dict[str, str], api_port: int) -> dict[str, str]:
        """Point the notebook's hub URLs at the relay on the login node."""
        # The URL the notebook was given: hub_connect_url's when set, else the hub's own.
        api = env.get("JUPYTERHUB_API_URL", self.hub.api_url).rstrip("/")
        path = "/" + api.split("://", 1)[-1].split("/", 1)[-1]
        local = f"http://{self._ssh_value('tunnelRemoteHost', '127.0.0.1')}:{api_port}{path}"
        return {k: v.replace(api, local) if isinstance(v, str) else v for k, v in env.items()}

    @property
    def tunnel_connect_host(self) -> str:
        # How the proxy reaches this hub pod: values, else the pod IP from the Downward API.
        return self._ssh_value("tunnelConnectHost", os.environ.get("POD_IP", "127.0.0.1"))

    async def ensure_tunnels(self) -> tuple[str, int] | None:
        """Check the relay and re-open forwards that died with the hub (restart) or with
        their connection; the address the proxy reaches the notebook at, when it changed
        (a new hub pod). TunnelLost: the notebook can no longer reach the hub safely;
        SSHError: the login node cannot be reached for now."""
        if not self.tunnel or not self.tunnel_ports or not self.remote_host:
            return None
        if "api" in self.tunnel_ports and "api_socket" not in self.tunnel_ports:
            raise TunnelLost(
                f"{self.system_name}: the server of {self._log_name} was started with its hub-API "
                "forward on a TCP port of the login node, which other users can take over; "
                "it is not re-opened"
            )
        if "api_socket" in self.tunnel_ports:
            self.watch_relay()
            try:
                relay = await self.status_board.process(self.remote_host, int(self.tunnel_ports["relay_pid"]))
            except TransientProcessError as e:
                raise SSHError(str(e)) from e
            if not relay.alive:
                raise TunnelLost(
                    f"{self.system_name}: the hub-API relay of {self._log_name} on {self.remote_host} "
                    "is gone; its port may have been taken by someone else"
                )
            api = self._tunnels.get("api")
            if api is None or api.closed:
                try:
                    await self._forward_api(self.remote_host)
                except ForwardRefused as e:
                    raise TunnelLost(str(e)) from e
        srv = self._tunnels.get("server")
        if "server" in self.tunnel_ports and (srv is None or srv.closed):
            dest = (str(self.tunnel_ports["dest_host"]), int(self.tunnel_ports["dest_port"]))
            old = int(self.tunnel_ports["server"])
            try:
                local = await self.open_server_tunnel(self.remote_host, dest, old)
            except ForwardRefused:
                # The old port is taken in this (new) pod; the listener is ours either way
                # (local), so any free port will do: the route moves to it.
                try:
                    local = await self.open_server_tunnel(self.remote_host, dest, 0)
                except ForwardRefused as e:
                    raise TunnelLost(str(e)) from e
            self.save_state_now()
            return self.tunnel_connect_host, local
        return None

    async def poll_tunnels(self) -> int | None:
        """For poll() of a running server: None while its tunnels are (or may become)
        usable; a re-opened server forward moves the route. When they are lost the server
        is stopped here and 1 returned: JupyterHub calls stop() only for servers poll()
        calls running, so a server whose way to the hub is lost would be left running,
        its tokens going to whoever holds its port."""
        try:
            moved = await self.ensure_tunnels()
            if moved:
                await self.move_route(*moved)
        except TunnelLost as e:
            return await self.tunnel_lost(e)
        except SSHError as e:
            self.log.warning("%s: cannot re-open the tunnel of %s: %s", self.system_name, self._log_name, e)
        return None

    async def tunnel_lost(self, e: TunnelLost) -> int | None:
        """Stop a server whose hub-API path is lost; 1 (for poll) once it is stopped or
        handed to the reaper."""
        self.log.warning("%s; stopping the server", e)
        try:
            await self.stop(now=True)
        except (RuntimeError, SSHError) as stop_error:
            # Not confirmed stopped: keep it listed and try again at the next poll.
            self.log.error("%s: cannot stop %s yet: %s", self.system_name, self._log_name, stop_error)
            return None
        return 1

    def close_tunnels(self) -> None:
        for tunnel in self._tunnels.values():
            pool.close_tunnel(tunnel)
        self._tunnels.clear()
        self.tunnel_ports = {}

    # --- state ------------------------------------------------------------------------

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.remote_host = state.get("remote_host")
        self.tunnel_ports = dict(state.get("tunnel") or {})
        self.run_id = state.get("run_id")
        self.phase = state.get("phase")
        self.started = state.get("started")
        self.expires = state.get("expires")
        self.watch_relay()  # before the hub's start-up checks: their polls share one refresh

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.phase:
            state.update(backend=self.backend_name, run_id=self.run_id, phase=self.phase)
            for key in ("started", "expires"):
                if getattr(self, key):
                    state[key] = getattr(self, key)
        if self.remote_host:
            state["remote_host"] = self.remote_host
        if self.tunnel_ports:
            state["tunnel"] = dict(self.tunnel_ports)
        return state

    def clear_state(self) -> None:
        self.unwatch_relay()
        super().clear_state()
        self.remote_host = None
        self.close_tunnels()
        self.forget_run()
