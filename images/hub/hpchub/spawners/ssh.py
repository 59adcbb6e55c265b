"""Login-node notebooks: ``jupyterhub-singleuser`` started over SSH on a login host.

Race-free port: the server binds port 0 itself (the kernel picks a free port while it
binds), then jupyter_server writes its runtime file ``jpserver-<pid>.json`` (mode 0600)
with the real port; the launcher waits for that file and prints the port. No "find a free
port, then hope nobody takes it" window.

No orphans: every start has a run directory ``~/.hpchub/ssh/<run_id>/`` (0700) named
before the launch (the run id and login host are in the hub DB first). The launcher
writes its own PID to ``launcher`` and the server's to ``pid`` right after starting it;
a stop that does not know the PID (the hub died, or the start was cancelled, mid-launch)
creates ``cancel`` and reads ``pid``: the launcher checks ``cancel`` after writing
``pid``, so one of the two always sees the other and the server never outlives the stop.

Maximum lifetime (``singleuser.maxLifetime``, like a walltime): a watchdog on the login
node ends the server on time even while the hub is down; the hub's poll is the backstop,
and the console shows the time left.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from typing import Any

from traitlets import Float

from .. import metrics, routing
from ..options import OptionsError, parse_slurm_time
from ..ssh import SSHError
from ..status import TransientProcessError
from .remote import MARK, RemoteSpawner, export_lines, parse_marks, shell_path, whole_script

DEFAULT_MAX_LIFETIME = "12:00:00"
# How often the launcher looks for the server's runtime file: a start is ready this much
# later than the server at worst (a `sleep` a tick, for the seconds a server takes to start).
LAUNCH_POLL_SECONDS = 0.05
# Slack past the lifetime before the hub's own check stops a server `timeout` missed.
EXPIRY_GRACE = 60


def run_dir_word(run_id: str) -> str:
    """The run directory as a shell word (relative to $HOME, which the shell expands)."""
    return f'"$HOME"/.hpchub/ssh/{shlex.quote(run_id)}'


def ours_test(var: str, run_id: str | None) -> str:
    """Shell test: process ``$var`` is alive and is this run's server. /proc/<pid>/environ
    is readable only for the user's own processes and holds the run directory of ours, so
    a PID reused (login node rebooted) by anything else fails. A PID read right after the
    launch may still be the launcher's fork, not yet the server: looked at again briefly."""
    if not run_id:  # state from before run ids: kill -0 only
        return f'kill -0 "${var}" 2>/dev/null'
    needle = shlex.quote(".hpchub/ssh/" + run_id)
    return (
        f'{{ i=0; r=1; while kill -0 "${var}" 2>/dev/null; do '
        f'if grep -aq {needle} /proc/"${var}"/environ 2>/dev/null; then r=0; break; fi; '
        f"[ $i -ge 10 ] && break; sleep 0.2; i=$((i+1)); done; [ $r = 0 ]; }}"
    )


def startup_lines(path: str | None) -> str:
    """Source the user's start-up script (a validated path) so what it sets reaches the
    server, and report its failure as ``STARTUP <exit code>`` with the last lines of its
    output. Its stdin is /dev/null (the launcher itself arrives on the shell's stdin, which
    bash reads line by line), its output goes to ``$d/startup.log`` (so nothing it prints
    can pass for one of the launcher's marks), and an ``exit`` inside it, which ends the
    launcher's shell, is caught by the EXIT trap. fd 3 keeps the launcher's stdout for the
    trap: bash runs it with the script's redirections still in place."""
    if not path:
        return ""
    report = f'echo "{MARK}STARTUP $rc"; tail -n 20 "$d/startup.log"'
    return f"""exec 3>&1
trap 'rc=$?; exec >&3; {report}' EXIT
. {shell_path(path)} </dev/null >"$d/startup.log" 2>&1
rc=$?
trap - EXIT
exec 3>&-
if [ $rc -ne 0 ]; then {report}; exit 1; fi"""


def launcher_script(
    *,
    env_exports: str,
    run_dir: str,
    modules: str,
    startup_script: str | None,
    cmd: list[str],
    bind_ip: str,
    wait_seconds: float,
    lifetime_seconds: int | None = None,
) -> str:
    """The script sent on stdin to the login node's shell. Everything variable is quoted."""
    q = shlex.quote
    server = " ".join(q(a) for a in cmd + ["--ServerApp.port=0", f"--ServerApp.ip={bind_ip}"])
    watchdog = lifetime_watchdog(int(lifetime_seconds)) if lifetime_seconds else ""
    tries = max(int(wait_seconds / LAUNCH_POLL_SECONDS), 1)
    return "umask 077\n" + whole_script(f"""{env_exports}
d={run_dir}
mkdir -p "$d" || {{ echo "{MARK}FAILED cannot create $d"; exit 1; }}
echo $$ > "$d/launcher"
[ -e "$d/cancel" ] && {{ echo "{MARK}CANCELLED"; exit 1; }}
# An earlier server's runtime files (its port is not this one's); a fork only if any.
for f in "$d"/jpserver-*; do [ ! -e "$f" ] || rm -f "$f"; done
export JUPYTER_RUNTIME_DIR="$d"
cd "$HOME"
{modules}
{startup_lines(startup_script)}
# setsid: the server leads its own process group, so stop can signal its kernels too.
setsid {server} </dev/null >"$d/server.log" 2>&1 &
pid=$!
echo $pid > "$d/pid"
# A stop that came while the server was being started: it may not have seen the pid.
if [ -e "$d/cancel" ]; then kill -TERM -$pid 2>/dev/null || kill -TERM $pid; echo "{MARK}CANCELLED"; exit 1; fi
{watchdog}
echo "{MARK}PID $pid"
# Its start time tells this server from a later process with the same PID (reboot).
echo "{MARK}PSTART $(LC_ALL=C ps -o lstart= -p $pid 2>/dev/null)"
i=0
while [ $i -lt {tries} ]; do
  for f in "$d"/jpserver-*.json; do
    if [ -s "$f" ]; then
      port=$(sed -n 's/.*"port": *\\([0-9][0-9]*\\).*/\\1/p' "$f")
      if [ -n "$port" ]; then echo "{MARK}PORT $port"; exit 0; fi
    fi
  done
  if ! kill -0 $pid 2>/dev/null; then
    echo "{MARK}DIED"
    tail -n 20 "$d/server.log"
    exit 1
  fi
  sleep {LAUNCH_POLL_SECONDS}
  i=$((i+1))
done
echo "{MARK}TIMEOUT"
tail -n 20 "$d/server.log"
exit 1
""")


def lifetime_watchdog(seconds: int) -> str:
    """The maximum lifetime, kept by the login node itself (the hub may be down): a small
    shell loop in its own session and with none of the server's environment (no token),
    which TERMs the server's process group when the time is up (KILL 30s later) and ends
    as soon as the server does. It re-checks that the PID is still this run's server."""
    loop = (
        "p=$1; end=$(( $(date +%s) + $2 )); n=$3; "
        'while sleep 20 && kill -0 "$p" 2>/dev/null && grep -aq "$n" /proc/"$p"/environ 2>/dev/null; do '
        'if [ "$(date +%s)" -ge "$end" ]; then kill -TERM -"$p" 2>/dev/null; sleep 30; '
        'kill -KILL -"$p" 2>/dev/null; exit 0; fi; done'
    )
    return (
        f"env -i PATH=/usr/bin:/bin setsid /bin/sh -c {shlex.quote(loop)} hpchub-lifetime "
        f'"$pid" {int(seconds)} "${{d#$HOME/}}" </dev/null >/dev/null 2>&1 &'
    )


def find_script(run_id: str, pid: int | None) -> str:
    """What is left of a run on its login node: the server's PID if it is alive and ours,
    its port once it listens, and whether the launcher still runs."""
    known = str(int(pid)) if pid else ""
    return whole_script(f"""d={run_dir_word(run_id)}
pid={known}
[ -n "$pid" ] || pid=$(cat "$d/pid" 2>/dev/null)
l=$(cat "$d/launcher" 2>/dev/null)
if [ -n "$l" ] && kill -0 "$l" 2>/dev/null; then echo "{MARK}LAUNCHER $l"; fi
if [ -n "$pid" ] && {ours_test("pid", run_id)}; then
  echo "{MARK}PID $pid"
  for f in "$d"/jpserver-*.json; do
    [ -s "$f" ] || continue
    port=$(sed -n 's/.*"port": *\\([0-9][0-9]*\\).*/\\1/p' "$f")
    [ -n "$port" ] && echo "{MARK}PORT $port"
  done
fi
exit 0
""")


def stop_script(pid: int | None, grace: float, run_id: str | None = None) -> str:
    """Stop a run: TERM to the server's process group, KILL after ``grace``; exit 0 once
    nothing of it is left. Without a PID (lost mid-launch) the run directory names it."""
    tries = max(int(grace * 5), 1)
    known = str(int(pid)) if pid else ""
    find = ""
    if run_id:
        find = f"""d={run_dir_word(run_id)}
mkdir -p "$d" && touch "$d/cancel"
l=$(cat "$d/launcher" 2>/dev/null)
i=0
# A launcher still running may be about to write the pid file: give it time to.
while [ -z "$pid" ] && [ -n "$l" ] && kill -0 "$l" 2>/dev/null && [ $i -lt 50 ]; do
  [ -s "$d/pid" ] && pid=$(cat "$d/pid")
  sleep 0.2
  i=$((i+1))
done
[ -n "$pid" ] || pid=$(cat "$d/pid" 2>/dev/null)
"""
    return whole_script(f"""pid={known}
{find}[ -n "$pid" ] || exit 0
{ours_test("pid", run_id)} || exit 0
# The whole process group (the server leads it): kernels that ignore TERM go too.
# (dash's kill takes no "--": a negative PID right after the signal works in every sh.)
alive() {{ kill -0 -$pid 2>/dev/null || kill -0 $pid 2>/dev/null; }}
kill -TERM -$pid 2>/dev/null || kill -TERM $pid 2>/dev/null
i=0
while [ $i -lt {tries} ]; do
  alive || exit 0
  sleep 0.2
  i=$((i+1))
done
kill -KILL -$pid 2>/dev/null || kill -KILL $pid 2>/dev/null
i=0
while alive && [ $i -lt 25 ]; do sleep 0.2; i=$((i+1)); done
alive && exit 1
exit 0
""")


class SSHSpawner(RemoteSpawner):
    """Runs the notebook on a login node; state = run id, host, PID and port."""

    stop_grace_seconds = Float(10.0, config=True, help="Seconds between TERM and KILL when stopping.")

    backend_name = "ssh"
    pid: int | None = None
    pid_start: str | None = None
    remote_port: int | None = None
    # Tunnel mode: the hub-API relay ends once the server whose PID the launcher wrote is gone.
    relay_lifetime = ("--pid-file", "pid")

    def configure_from_cell(self) -> None:
        assert self.cell is not None
        self.configure_status()
        # The launcher waits startTimeoutSeconds for the port; the hub waits a bit longer.
        self.start_timeout = int(self.cell.system.singleuser.get("startTimeoutSeconds", 120)) + 60

    @property
    def run_dir(self) -> str:
        # A fresh directory per start: two hubs (or a restarted one) never read each
        # other's runtime files. Relative to $HOME (the shell expands it); hex name.
        assert self.run_id
        return run_dir_word(self.run_id)

    @property
    def max_lifetime(self) -> int | None:
        """Seconds a login-node notebook may run (``singleuser.maxLifetime``); None: no limit."""
        assert self.cell is not None
        value = self.cell.system.singleuser.get("maxLifetime", DEFAULT_MAX_LIFETIME)
        if value in (None, "", 0, "0"):
            return None
        try:
            return parse_slurm_time(value, "maxLifetime")
        except OptionsError as e:
            raise RuntimeError(f"{self.system_name}: singleuser.maxLifetime: {e.message}") from e

    @property
    def connect_host(self) -> str:
        """The address the proxy uses: singleuser.connectHost, else the login host."""
        assert self.cell is not None and self.remote_host
        return str(self.cell.system.singleuser.get("connectHost") or self.remote_host.rpartition(":")[0])

    async def start_remote(self) -> tuple[str, int]:
        assert self.cell is not None
        clean = self.clean_options or await self.check_options(self.user_options)
        self._event(f"Checking your account on {self.system_name}", 10)
        await self.run_prechecks()
        self.step("prechecks")
        su = self.cell.system.singleuser
        wait = float(su.get("startTimeoutSeconds", self.start_timeout))
        lifetime = self.max_lifetime
        host = await self.begin_run()
        self.step("login host")
        # Tunnel mode: the API tunnel must end on the login node the server will run on.
        env = await self.prepare_tunnel(self.remote_env(), host)
        if self.tunnel:
            self.step("tunnel")
        self.expires = (self.started or time.time()) + lifetime if lifetime else None
        script = launcher_script(
            env_exports=export_lines(env),
            run_dir=self.run_dir,
            modules=self.module_lines(),
            startup_script=clean.startup_script,
            cmd=self.server_cmd(),
            bind_ip=str(su.get("ip", "0.0.0.0")),
            wait_seconds=wait,
            lifetime_seconds=lifetime,
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
        if "PID" in marks:
            self.pid = int(marks["PID"])
            self.pid_start = marks.get("PSTART") or None
            self.set_phase("starting")
        if "STARTUP" in marks:
            # The user's start-up script failed: nothing was started.
            self.forget_run()
            output = result.stdout.split(f"{MARK}STARTUP", 1)[-1].partition("\n")[2].strip()
            raise RuntimeError(
                f"{self.system_name}: the start-up script {clean.startup_script} failed with exit "
                f"code {marks['STARTUP']} on {result.label} for {self.user.name}; no server was started."
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
            raise RuntimeError(
                f"{self.system_name}: {why} on {result.label} for {self.user.name}"
                + (f" (pid {marks['PID']})" if "PID" in marks else "")
                + (f". Last lines of its log:\n{detail}" if detail else "")
            )
        # The host is the login node from values; only the port comes from the server's
        # runtime file, which the user can write: range-checked, then confirmed below.
        source = f"the server's runtime file on {result.label}"
        self.remote_port = routing.check_port(self.system_name, su, int(marks["PORT"]), source)
        self.phase = "running"  # JupyterHub stores the state when start returns
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
        every server's poll)."""
        if self.pid and self.remote_host and self.can_watch:
            self.status_board.watch_process(
                self.remote_host, self.pid, self.pid_start, self.remote_user, self.credentials_or_open
            )

    def unwatch(self) -> None:
        if self.pid and self.remote_host and self.can_watch:
            self.status_board.unwatch_process(self.remote_host, self.pid)

    async def process_alive(self) -> bool:
        """Whether the server process is alive and ours: the one place the SSH backend
        asks (the status board answers, one `ps` per login node for every server)."""
        assert self.pid and self.remote_host
        self.watch()
        try:
            return (await self.status_board.process(self.remote_host, self.pid)).alive
        except TransientProcessError as e:
            raise SSHError(str(e)) from e

    async def poll_remote(self) -> int | None:
        if not self.pid or not self.remote_host:
            # Launching (the PID is not known yet): only stop() can settle it.
            return None
        try:
            alive = await self.process_alive()
        except SSHError as e:
            # The login node is unreachable for now: the server may well be fine (and
            # the proxy will tell); dropping it would orphan the process.
            self.log.warning("%s: cannot poll %s: %s", self.system_name, self._log_name, e)
            return None
        if not alive:
            return 1
        if self.expires and time.time() > self.expires + EXPIRY_GRACE:
            self.log.warning(
                "%s: %s outlived its maximum lifetime; stopping it", self.system_name, self._log_name
            )
            await self.stop()
            return 1
        # Tunnel mode: re-open the forwards (a new hub pod moves the route); a lost hub-API
        # path stops the server (1).
        return await self.poll_tunnels()

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
                self.pid = int(marks["PID"])
                self.watch()
                if "PORT" in marks:
                    # As at start: only the port comes from the (user-writable) runtime file.
                    assert self.cell is not None
                    source = f"the server's runtime file on {self.remote_host}"
                    su = self.cell.system.singleuser
                    self.remote_port = routing.check_port(self.system_name, su, int(marks["PORT"]), source)
                    if self.tunnel:
                        host, port = await self._reopen_server_tunnel()
                    else:
                        host, port = self.connect_host, self.remote_port
                    if await self.answers(host, port):
                        return host, port
                self.set_phase("starting")
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
        if self.pid and not self.phase:
            self.phase = "running"  # a row written by 0.1.0
        self.watch()  # before the hub's start-up checks: their polls share one refresh

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.pid:
            state.update(pid=self.pid, port=self.remote_port, backend="ssh")
            if self.pid_start:
                state["pid_start"] = self.pid_start
            if self.run_id:
                state["run_id"] = self.run_id
        return state
