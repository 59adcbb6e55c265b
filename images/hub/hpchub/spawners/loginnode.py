"""Login-node notebooks: ``jupyterhub-singleuser`` started over SSH on a login host (the
backend ``ssh``; the scripts it runs there are hpchub.launcher's: race-free port, a run
directory named before the launch, a stop that never misses a launch in flight).

Maximum lifetime (``singleuser.maxLifetime``, like a walltime): a watchdog on the login
node ends the server on time even while the hub is down; the hub's poll is the backstop,
and the console shows the time left.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from traitlets import Float

from .. import claims, metrics, routing
from ..claims import ClaimRefused
from ..launcher import ended_script, find_script, launcher_script, parse_ended, run_dir_word, stop_script
from ..options import OptionsError, parse_slurm_time
from ..remoteops import MARK, export_lines, parse_marks
from ..serverstate import Phase
from ..sshpool import SSHError
from ..status import TransientProcessError
from .remote import RemoteSpawner

# Slack past the lifetime before the hub's own check stops a server `timeout` missed.
EXPIRY_GRACE = 60


class SSHSpawner(RemoteSpawner):
    """Runs the notebook on a login node; state = run id, host, PID and port."""

    stop_grace_seconds = Float(10.0, config=True, help="Seconds between TERM and KILL when stopping.")

    backend_name = "ssh"
    pid: int | None = None
    pid_start: str | None = None
    # What this server has on the status board: (board, host, pid, owner).
    _watched: tuple[Any, str, int, str] | None = None
    remote_port: int | None = None
    # Tunnel mode: the hub-API relay ends once the server whose PID the launcher wrote is gone.
    relay_lifetime = ("--pid-file", "pid")

    def configure_from_cell(self) -> None:
        assert self.cell is not None
        self.configure_status()
        # The launcher waits singleuser.startTimeoutSeconds for the port; the hub a bit longer.
        self.start_timeout = self.settings.singleuser.server_start_timeout + 60

    @property
    def run_dir(self) -> str:
        # A fresh directory per start: two hubs (or a restarted one) never read each
        # other's runtime files. Relative to $HOME (the shell expands it); hex name.
        assert self.run_id
        return run_dir_word(self.run_id)

    @property
    def max_lifetime(self) -> int | None:
        """Seconds a login-node notebook may run (``singleuser.maxLifetime``); None: no limit."""
        value = self.settings.singleuser.max_lifetime
        if not value:
            return None
        try:
            return parse_slurm_time(value, "maxLifetime")
        except OptionsError as e:
            raise RuntimeError(f"{self.system_name}: singleuser.maxLifetime: {e.message}") from e

    @property
    def connect_host(self) -> str:
        """The address the proxy uses: singleuser.connectHost, else the login host."""
        assert self.remote_host
        return self.settings.singleuser.connect_host or self.remote_host.rpartition(":")[0]

    async def start_remote(self) -> tuple[str, int]:
        assert self.cell is not None
        clean = self.clean_options or await self.check_options(self.user_options)
        self._event(f"Checking your account on {self.system_name}", 10)
        await self.run_prechecks()
        self.step("prechecks")
        su = self.settings.singleuser
        wait = float(su.server_start_timeout)
        lifetime = self.max_lifetime
        host = await self.begin_run()
        self.step("login host")
        # Tunnel mode: the API tunnel must end on the login node the server will run on.
        env = await self.prepare_tunnel(self.remote_env(), host)
        if self.tunnel:
            self.step("tunnel")
        self.expires = (self.started or time.time()) + lifetime if lifetime else None
        self.time_limit = lifetime
        script = launcher_script(
            env_exports=export_lines(env),
            run_dir=self.run_dir,
            modules=self.module_lines(),
            startup_script=clean.startup_script,
            cmd=self.server_cmd(),
            bind_ip=su.ip,
            wait_seconds=wait,
            lifetime_seconds=lifetime,
            save_before_seconds=self.cell.walltime.save_before_seconds,
        )
        self._event(f"Starting your server on {host.rpartition(':')[0]}", 30)
        timer = metrics.spawn_timer(self.cell, "ssh")
        try:
            result = await self.script(script, timeout=wait + 30, host=host)
            self.step("launch")
            marks = parse_marks(result.stdout)
            if not marks.keys() & {"PORT", "DIED", "TIMEOUT", "FAILED", "CANCELLED", "STARTUP"}:
                raise SSHError(f"the launcher on {host} ended without a word (exit {result.exit_status})")
        except SSHError as e:
            # The connection broke mid-launch (sshd restarted, a network blip): the server
            # may well be starting. Find it through its run directory rather than fail.
            self.log.warning("%s: launch of %s broke off: %s", self.system_name, self._log_name, e)
            self._event(f"The connection to {host.rpartition(':')[0]} broke; looking for your server", 40)
            found = await self.wait_for_server(time.time() + wait)
            timer.ready()
            return found
        # The launcher's marks came through the user's shell: claims, checked here.
        if "PID" in marks:
            self.pid = claims.pid(self.system_name, marks["PID"])
            self.pid_start = (
                claims.pid_start(self.system_name, marks["PSTART"]) if marks.get("PSTART") else None
            )
            self.set_phase(Phase.STARTING)
        if "STARTUP" in marks:
            # The user's start-up script failed: nothing was started.
            code = claims.exit_code(self.system_name, marks["STARTUP"])
            self.forget_run()
            output = result.stdout.split(f"{MARK}STARTUP", 1)[-1].partition("\n")[2].strip()
            message = (
                f"{self.system_name}: the start-up script {clean.startup_script} failed with exit "
                f"code {code} on {result.label} for {self.user.name}; no server was started."
            )
            self.record_end("startup_script", {"exit_code": code, "message": message}, output)
            raise RuntimeError(
                message
                + (f" Last lines of its output:\n{output[-2000:]}" if output else " It printed nothing.")
            )
        if "PORT" not in marks:
            tail = result.stdout.split(f"{MARK}DIED", 1)[-1].split(f"{MARK}TIMEOUT", 1)[-1].strip()
            why = "the server exited" if "DIED" in marks else "the server did not start in time"
            if "DIED" not in marks:
                # TIMEOUT, or a launch that broke off: nothing of it may stay behind.
                await self.stop_remote(now=True)
            await self.stop_api_relay()
            self.close_tunnels()
            self.forget_run()
            detail = (tail or result.stderr.strip())[-2000:]
            message = f"{self.system_name}: {why} on {result.label} for {self.user.name}" + (
                f" (pid {marks['PID']})" if "PID" in marks else ""
            )
            self.record_end("start_failed", {"message": message}, detail)
            raise RuntimeError(message + (f". Last lines of its log:\n{detail}" if detail else ""))
        # The host is the login node from values; only the port comes from the server's
        # runtime file, which the user can write: range-checked, then confirmed below.
        source = f"the server's runtime file on {result.label}"
        port = claims.port(self.system_name, marks["PORT"])
        self.remote_port = routing.check_port(self.system_name, su, port, source)
        self.set_phase(Phase.RUNNING, save=False)  # JupyterHub stores the state when start returns
        self.watch()
        if self.tunnel:
            # The server listens on the login node; the proxy reaches it through this pod.
            local = await self.open_server_tunnel(result.label, (self.connect_host, self.remote_port))
            await self.confirm_route(self.tunnel_connect_host, local, source)
            self.step("route")
            self.log.info(
                "%s: tunnel for %s: %s -> %s:%s",
                self.system_name,
                self._log_name,
                local,
                self.connect_host,
                self.remote_port,
            )
            timer.ready()
            return self.tunnel_connect_host, local
        await self.confirm_route(self.connect_host, self.remote_port, source)
        self.step("route")
        timer.ready()
        self.log.info(
            "%s: server of %s started on %s pid %s port %s",
            self.system_name,
            self._log_name,
            result.label,
            self.pid,
            self.remote_port,
        )
        return self.connect_host, self.remote_port

    def watch(self) -> None:
        """Put this server on the system's status board (one `ps` per login node serves
        every server's poll). The watch follows the current PID: one a server held before
        (a find script that printed another) is unwatched first, so a server never holds
        more than one watch, whatever its user's shell prints."""
        if not (self.pid and self.remote_host and self.can_watch):
            return
        board, host, pid, owner = self.status_board, self.remote_host, self.pid, self.remote_user
        if self._watched is not None and self._watched != (board, host, pid, owner):
            self.unwatch()
        board.watch_process(host, pid, self.pid_start, owner, self.credentials_or_open)
        self._watched = (board, host, pid, owner)

    def unwatch(self) -> None:
        """Take what this server watched (whatever its PID is now) off the board."""
        if self._watched is not None:
            board, host, pid, owner = self._watched
            self._watched = None
            board.unwatch_process(host, pid, owner)
        elif self.pid and self.remote_host and self.can_watch:
            self.status_board.unwatch_process(self.remote_host, self.pid, self.remote_user)

    def follow_pid(self, pid: int) -> None:
        """A PID the user's shell reported for this run (checked by claims.pid): watched in
        place of the one before. A new PID's start time is unknown (None), never the
        previous one's."""
        if pid != self.pid:
            self.pid_start = None
        self.pid = pid
        self.watch()

    async def process_alive(self) -> bool:
        """Whether the server process is alive and ours: the one place the SSH backend
        asks (the status board answers, one `ps` per login node for every server)."""
        assert self.pid and self.remote_host
        self.watch()
        try:
            return (await self.status_board.process(self.remote_host, self.pid, self.remote_user)).alive
        except TransientProcessError as e:
            raise SSHError(str(e)) from e

    async def poll_remote(self) -> int | None:
        if not self.pid or not self.remote_host:
            # Launching (the PID is not known yet): only stop() can settle it.
            return None
        try:
            alive = await self.process_alive()
        except ClaimRefused as e:
            # A PID kept from before it was checked (a row of 0.1.0), or another user's.
            self.log.warning("%s: %s; %s is not running", self.system_name, e, self._log_name)
            self.record_end("unknown", {"message": f"{e}; hpchub no longer follows it"})
            return 1
        except SSHError as e:
            # The login node is unreachable for now: the server may well be fine (and
            # the proxy will tell); dropping it would orphan the process.
            self.log.warning("%s: cannot poll %s: %s", self.system_name, self._log_name, e)
            return None
        if not alive:
            if not self.end_recorded and not self.stopping_itself:
                await self.record_process_end()  # within this poll: the cell says why
            return 1
        if self.expires and time.time() > self.expires + EXPIRY_GRACE:
            self.log.warning(
                "%s: %s outlived its maximum lifetime; stopping it", self.system_name, self._log_name
            )
            self.record_end(
                "lifetime",
                {
                    "limit_seconds": self.max_lifetime,
                    "elapsed_seconds": time.time() - self.started if self.started else None,
                    "message": "the hub stopped it: its lifetime watchdog on the login node did not",
                },
            )
            await self.stop()
            return 1
        # Tunnel mode: re-open the forwards (a new hub pod moves the route); a lost hub-API
        # path stops the server (1).
        return await self.poll_tunnels()

    async def record_process_end(self) -> None:
        """Record how the server ended: its parent's word (exit status or signal), the
        lifetime watchdog's, the last lines of its log — claims of the user's about their
        own server, read from their own run directory. The limit and the times are the
        hub's own."""
        assert self.run_id and self.remote_host
        try:
            r = await self.script(
                ended_script(self.run_id), host=self.remote_host, timeout=30, expired_ok=True
            )
            end = parse_ended(r.stdout)
        except SSHError as e:
            self.log.warning("%s: cannot read how %s ended: %s", self.system_name, self._log_name, e)
            end = parse_ended("")
        figures: dict[str, Any] = {
            "elapsed_seconds": time.time() - self.started if self.started else None,
            "exit_code": end.exit_code,
            "signal": end.signal,
        }
        if end.watchdog and self.max_lifetime:
            cause = "lifetime"
            figures["limit_seconds"] = self.max_lifetime
        else:
            cause = "exited" if end.known else "unknown"
        self.record_end(cause, figures, end.output)

    async def find(self) -> dict[str, str]:
        assert self.run_id and self.remote_host
        result = await self.script(
            find_script(self.run_id, self.pid), host=self.remote_host, timeout=30, expired_ok=True
        )
        return parse_marks(result.stdout)

    async def confirmed_url(self) -> str | None:
        if self.phase != "running" or not self.pid or not self.remote_port or not self.remote_host:
            return None
        try:
            if not await self.process_alive():
                return None  # the adoption finds out what happened (and says so)
        except SSHError as e:
            # The login node cannot be asked now (down, or the user's credentials expired
            # with no connection open): the server's own answer confirms it.
            self.log.warning(
                "%s: cannot check %s now (%s); asking its server", self.system_name, self._log_name, e
            )
        if self.tunnel:
            await self.ensure_tunnels()
            host, port = self.tunnel_connect_host, int(self.tunnel_ports["server"])
        else:
            host, port = self.connect_host, self.remote_port
        if not await self.answers(host, port):
            return None
        return self.url_for(host, port)

    async def wait_for_server(self, deadline: float | None) -> tuple[str, int]:
        """Adoption: the server of this run, found through its run directory."""
        if not self.run_id or not self.remote_host:
            raise RuntimeError(f"{self.system_name}: the hub lost track of this server; start it again")
        while True:
            try:
                marks = await self.find()
            except SSHError as e:
                # The login node cannot be asked; a server that answers where the state
                # says it listens is this one (only it knows this user's URL prefix there).
                if self.phase == "running" and self.remote_port and not self.tunnel:
                    if await self.answers(self.connect_host, self.remote_port):
                        return self.connect_host, self.remote_port
                self._event(f"{self.system_name} is not answering over SSH ({e}); retrying")
                await asyncio.sleep(5)
                continue
            if "PID" in marks:
                try:
                    self.follow_pid(claims.pid(self.system_name, marks["PID"]))
                    port = claims.port(self.system_name, marks["PORT"]) if "PORT" in marks else None
                except ClaimRefused as e:
                    raise RuntimeError(f"{e}; the server is not adopted") from e
                if port is not None:
                    # As at start: only the port comes from the (user-writable) runtime file.
                    assert self.cell is not None
                    source = f"the server's runtime file on {self.remote_host}"
                    su = self.settings.singleuser
                    self.remote_port = routing.check_port(self.system_name, su, port, source)
                    if self.tunnel:
                        host, port = await self._reopen_server_tunnel()
                    else:
                        host, port = self.connect_host, self.remote_port
                    if await self.answers(host, port):
                        return host, port
                self.set_phase(Phase.STARTING)
                self._event(f"Your server on {self.remote_host.rpartition(':')[0]} is starting", 50)
            elif "LAUNCHER" not in marks:
                raise RuntimeError(
                    f"{self.system_name}: your server on {self.remote_host.rpartition(':')[0]} is not "
                    "running (its start was interrupted or it ended); start it again"
                )
            if deadline and time.time() > deadline:
                raise RuntimeError(
                    f"{self.system_name}: your server did not start in {int(self.start_timeout)} seconds"
                )
            await asyncio.sleep(1)

    async def _reopen_server_tunnel(self) -> tuple[str, int]:
        assert self.remote_host and self.remote_port
        if "api_socket" in self.tunnel_ports or "api" in self.tunnel_ports:
            await self.ensure_tunnels()
        if "server" not in self.tunnel_ports:
            local = await self.open_server_tunnel(self.remote_host, (self.connect_host, self.remote_port))
        else:
            await self.ensure_tunnels()
            local = int(self.tunnel_ports["server"])
        return self.tunnel_connect_host, local

    def has_handle(self) -> bool:
        return bool(self.pid)

    async def stop_remote(self, now: bool) -> bool:
        if not self.remote_host or not (self.pid or self.run_id):
            return True
        grace = 0.5 if now else self.stop_grace_seconds
        for attempt in range(3):
            try:
                result = await self.script(
                    stop_script(self.pid, grace, self.run_id),
                    timeout=grace + 45,
                    host=self.remote_host,
                    expired_ok=True,
                )
            except SSHError as e:
                self.log.warning(
                    "%s: stop of %s failed (attempt %d): %s", self.system_name, self._log_name, attempt + 1, e
                )
                await asyncio.sleep(2)
                continue
            if not result.ok:
                raise RuntimeError(
                    f"{self.system_name}: process {self.pid} on {self.remote_host} survived KILL"
                )
            self.unwatch()
            return True
        return False

    def reaper_row(self, reason: str) -> Any:
        row = super().reaper_row(reason)
        row.pid = self.pid
        return row

    def forget_run(self) -> None:
        self.unwatch()
        super().forget_run()
        self.pid = None
        self.pid_start = None
        self.remote_port = None

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.pid = state.get("pid")
        self.pid_start = state.get("pid_start")
        self.remote_port = state.get("port")
        try:
            self.watch()  # before the hub's start-up checks: their polls share one refresh
        except ClaimRefused as e:
            self.log.warning("%s: %s (kept in %s's state)", self.system_name, e, self._log_name)

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.pid:
            state.update(pid=self.pid, port=self.remote_port, backend="ssh")
            if self.pid_start:
                state["pid_start"] = self.pid_start
            if self.run_id:
                state["run_id"] = self.run_id
        return state
