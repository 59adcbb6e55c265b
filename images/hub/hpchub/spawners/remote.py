"""What the login-node and batch spawners share: the run (id, login host, phase) and its
state in the hub DB, credentials as the spawner uses them, pre-spawn checks, the shared
status board, tunnel mode, stopping without orphans, and the restart path. The commands
themselves are hpchub.remoteops' (shared with the reaper).

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
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.orm import object_session
from tornado import web
from traitlets import Float

from .. import claims, reaper, routing
from ..claims import ClaimRefused
from ..identity import IdentityError
from ..prechecks import PreSpawnCheckFailed, checks_from_values, run_checks
from ..reaper_table import Cancellation
from ..remoteops import (
    API_SOCKET,
    MARK,
    MAX_SOCKET_PATH,
    RemoteOps,
    parse_marks,
    relay_start_script,
    relay_stop_script,
    run_directory,
    status_credentials,
    user_credentials,
)
from ..schedulers import SCHEDULERS
from ..serverstate import Phase, ServerStatus, error_text, status_of
from ..settings import SystemSettings
from ..spawnsteps import SpawnSteps
from ..sshca import CertificateRefused, UserCredentials
from ..sshpool import ForwardRefused, Result, SSHError, SSHTarget, Tunnel, host_label, pool
from ..status import StatusBoard, TransientProcessError, board_for
from . import restart
from .dispatch import DispatchSpawner

# The spawner state's layout (get_state/load_state). 2: phases named as serverstate.Phase,
# a "version" key. Rows of earlier hpchub versions are read through upgrade_state.
STATE_VERSION = 2
# How earlier versions named a run's phase.
_PHASE_NAMES = {
    "launching": Phase.SUBMITTING,
    "submitting": Phase.SUBMITTING,
    "queued": Phase.QUEUED,
    "starting": Phase.STARTING,
    "running": Phase.RUNNING,
}


def upgrade_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """A spawner state row of any hpchub version in this version's layout.

    - before phases (commit a9cf1a1): a job id (Slurm) or PID (SSH) and no phase: the server ran.
    - with phases, no ``version`` (0.1.0 up to the state model): "launching", "queued", "starting", "running".
    """
    out = dict(state)
    if out.get("version", 1) >= STATE_VERSION:
        return out
    phase = out.get("phase")
    if not phase and (out.get("job_id") or out.get("pid")):
        phase = "running"
    if phase:
        out["phase"] = _PHASE_NAMES.get(str(phase), Phase.RUNNING).value
    out["version"] = STATE_VERSION
    return out


class TunnelLost(SSHError):
    """The notebook's tunnel to the hub cannot be restored safely: the server must go."""


class RemoteSpawner(DispatchSpawner):
    """Base of the backends that reach the supercomputer over SSH."""

    ssh_command_timeout = Float(
        60.0, config=True, help="Seconds a single remote command (sbatch, squeue, kill) may take."
    )

    backend_name = ""
    remote_host: str | None = None
    run_id: str | None = None
    phase: Phase | None = None  # written by set_phase (and begin_run, forget_run) only
    started: float | None = None
    expires: float | None = None
    time_limit: int | None = None  # seconds the run may last: a job's limit (extensions included), a lifetime

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
        self.poll_interval = max(1, self.settings.status.interval_seconds)
        self.poll_jitter = 0.4  # tornado's PeriodicCallback: +-20%

    @property
    def can_watch(self) -> bool:
        # A spawner built without a user or login hosts (tests, a removed system) has no board.
        return self.cell is not None and bool(self.cell.system.ssh.get("hosts")) and self.user is not None

    @property
    def settings(self) -> SystemSettings:
        """The system's settings, typed and defaulted once (hpchub.settings)."""
        assert self.cell is not None
        return self.cell.system.settings

    @property
    def status_board(self) -> StatusBoard:
        """The system's shared status board (hpchub/status.py)."""
        assert self.cell is not None
        system = self.cell.system
        status = self.settings.status

        async def service_credentials() -> UserCredentials:
            return status_credentials(self.system_name, status, self.ssh_ca)

        scheduler = SCHEDULERS.get(system.scheduler) if system.scheduler else None
        creds = service_credentials if status.user else None
        return board_for(system.name, self.target, pool, status, creds, scheduler)

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
        self.new_start()
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
        except web.HTTPError as e:
            self.record_end("start_failed", {"message": error_text(e)})
            await self.stop_api_relay()
            raise self.start_failure(e) from e
        except (RuntimeError, SSHError, ClaimRefused) as e:
            # ClaimRefused: the user's shell or job reported a value hpchub cannot use.
            self.log.error("%s", claims.shown(str(e), claims.MAX_LOGGED))
            self.record_end("start_failed", {"message": str(e)})
            await self.stop_api_relay()
            raise self.start_failure(e) from e
        finally:
            self.steps = None

    def start_failure(self, e: BaseException) -> web.HTTPError:
        """What a start (or an adoption) that failed with ``e`` raises. Its message may
        quote what the user's shell or job printed (a start-up script's output, a job's
        last lines, a pre-spawn check's answer), and JupyterHub and tornado log an
        HTTPError's text: that is the message on one line, escaped (claims.shown); the
        user reads it as written (``jupyterhub_message``: JupyterHub's pages and progress
        events, the console's error_text)."""
        message = error_text(e)
        failure = web.HTTPError(
            getattr(e, "status_code", 500), "%s", claims.shown(message, claims.MAX_LOGGED)
        )
        failure.jupyterhub_message = message
        return failure

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
        self.phase = Phase.SUBMITTING
        (h, p), _ = await pool.connection(
            self.target, self.remote_user, await self.credentials(), prefer=self.remote_host
        )
        self.remote_host = host_label(h, p)
        self.save_state_now()
        return self.remote_host

    def set_phase(self, phase: Phase, save: bool = True) -> None:
        """The run's phase, committed to the hub DB at once (``save=False``: when start()
        returns, where JupyterHub stores the state itself)."""
        if phase != self.phase:
            self.phase = phase
            if save:
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

    def _event(self, message: str, progress: int | None = None) -> None:
        """A progress event: the message, and the server's status as the console draws it
        (serverstate.ServerStatus.event: state, label, detail)."""
        event: dict[str, Any] = {"message": message, **status_of(self).event()}
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
            if self.pending != "spawn":
                return
            await asyncio.sleep(0.5)

    def server_status(self) -> ServerStatus:
        """This run as the console, the admin view and the metrics show it (serverstate)."""
        return ServerStatus(
            phase=self.phase,
            host=self.remote_host or "",  # the login node a server runs on (or a job was sent from)
            ends_at=self.expires,
            time_limit=self.time_limit,
            notebook_client=self.notebook_client,
            message=self.credentials_problem,
            credentials_problem=self.credentials_problem,
        )

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

    @property
    def stopping_itself(self) -> bool:
        """hpchub's own stop of this run is under way: what a poll sees end meanwhile
        (a cancelled job, a process gone) is that stop, not news."""
        return self._stop_task is not None and not self._stop_task.done()

    async def _stop_once(self, now: bool) -> None:
        if not self.run_id and not self.has_handle():
            return
        self.stop_begins()  # asked for (REST, console, culler): hpchub.ends attributes it
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

    def reaper_row(self, reason: str) -> Cancellation:
        assert self.cell is not None
        return Cancellation(
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
        self.time_limit = None
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
        env.update(self.settings.singleuser.environment)
        return env

    def module_lines(self) -> str:
        """``module load`` lines for the system's modules and the chosen version."""
        assert self.cell is not None
        modules = list(self.settings.singleuser.modules)
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
        cmd = list(self.settings.singleuser.cmd)
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
        return self.settings.tunnel.enabled

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
                self.settings.tunnel.relay_python,
                self.settings.tunnel.remote_bind,
                self.relay_lifetime,
            ),
            host=host,
        )
        marks = parse_marks(result.stdout)
        if not {"DIR", "RELAYPID", "RELAYPORT"} <= marks.keys():
            detail = (result.stdout.split(f"{MARK}FAILED", 1)[-1] + result.stderr).strip()[-1000:]
            raise SSHError(f"{self.system_name}: the hub-API relay did not start on {host}: {detail}")
        # Printed through the user's shell: claims.
        system = self.system_name
        self.tunnel_ports.update(
            api_socket=f"{run_directory(system, marks['DIR'])}/{API_SOCKET}",
            relay_pid=claims.pid(system, marks["RELAYPID"]),
            relay_start=claims.pid_start(system, marks["RELAYSTART"]) if marks.get("RELAYSTART") else None,
            relay_port=claims.port(system, marks["RELAYPORT"]),
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
            self.status_board.unwatch_process(self.remote_host, int(pid), self.remote_user)

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
            listen=(self.settings.tunnel.bind_address, port),
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
        local = f"http://{self.settings.tunnel.remote_host}:{api_port}{path}"
        return {k: v.replace(api, local) if isinstance(v, str) else v for k, v in env.items()}

    @property
    def tunnel_connect_host(self) -> str:
        # How the proxy reaches this hub pod: values, else the pod IP from the Downward API.
        return self.settings.tunnel.connect_host or os.environ.get("POD_IP", "127.0.0.1")

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
            try:
                self.watch_relay()
                relay = await self.status_board.process(
                    self.remote_host, int(self.tunnel_ports["relay_pid"]), self.remote_user
                )
            except ClaimRefused as e:
                raise TunnelLost(f"{e}; the hub-API relay cannot be checked") from e
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
        self.record_end("unknown", {"message": f"{e}; hpchub stopped the server"})
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
        state = upgrade_state(state)
        super().load_state(state)
        self.remote_host = state.get("remote_host")
        self.tunnel_ports = dict(state.get("tunnel") or {})
        self.run_id = state.get("run_id")
        self.phase = Phase(state["phase"]) if state.get("phase") else None
        self.started = state.get("started")
        self.expires = state.get("expires")
        self.time_limit = state.get("time_limit")
        try:
            self.watch_relay()  # before the hub's start-up checks: their polls share one refresh
        except ClaimRefused as e:
            self.log.warning("%s: %s (kept in %s's state)", self.system_name, e, self._log_name)

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.phase:
            state.update(
                version=STATE_VERSION, backend=self.backend_name, run_id=self.run_id, phase=self.phase.value
            )
            for key in ("started", "expires", "time_limit"):
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
