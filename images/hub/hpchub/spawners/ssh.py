"""Login-node notebooks: ``jupyterhub-singleuser`` started over SSH on a login host.

Race-free port: the server binds port 0 itself (the kernel picks a free port while it
binds), then jupyter_server writes its runtime file ``jpserver-<pid>.json`` (mode 0600)
with the real port; the launcher waits for that file and prints the port. No "find a free
port, then hope nobody takes it" window.
"""

from __future__ import annotations

import asyncio
import secrets
import shlex
from typing import Any

from traitlets import Float

from .. import metrics, routing
from ..ssh import SSHError
from ..status import TransientProcessError
from .remote import MARK, RemoteSpawner, export_lines, parse_marks, shell_path


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
) -> str:
    """The script sent on stdin to the login node's shell. Everything variable is quoted;
    ``startup_script`` is the user's validated path (or None)."""
    q = shlex.quote
    server = " ".join(q(a) for a in cmd + ["--ServerApp.port=0", f"--ServerApp.ip={bind_ip}"])
    tries = max(int(wait_seconds * 5), 1)
    return f"""umask 077
{env_exports}
d={run_dir}
mkdir -p "$d" || {{ echo "{MARK}FAILED cannot create $d"; exit 1; }}
rm -f "$d"/jpserver-*.json "$d"/jpserver-*.html
export JUPYTER_RUNTIME_DIR="$d"
cd "$HOME"
{modules}
{startup_lines(startup_script)}
# setsid: the server leads its own process group, so stop can signal its kernels too.
setsid {server} </dev/null >"$d/server.log" 2>&1 &
pid=$!
echo $pid > "$d/pid"
echo "{MARK}PID $pid"
# Its start time tells this server from a later process with the same PID (reboot).
echo "{MARK}PSTART $(LC_ALL=C ps -o lstart= -p $pid)"
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
  sleep 0.2
  i=$((i+1))
done
echo "{MARK}TIMEOUT"
tail -n 20 "$d/server.log"
exit 1
"""


def stop_script(pid: int, grace: float) -> str:
    tries = max(int(grace * 5), 1)
    return f"""pid={int(pid)}
kill -0 $pid 2>/dev/null || exit 0
kill -TERM -- -$pid 2>/dev/null || kill -TERM $pid 2>/dev/null
i=0
while [ $i -lt {tries} ]; do
  kill -0 $pid 2>/dev/null || exit 0
  sleep 0.2
  i=$((i+1))
done
kill -KILL -- -$pid 2>/dev/null || kill -KILL $pid 2>/dev/null
# A killed process needs a moment to be gone (and reaped) on a busy node.
i=0
while [ $i -lt 25 ]; do
  kill -0 $pid 2>/dev/null || exit 0
  sleep 0.2
  i=$((i+1))
done
exit 1
"""


class SSHSpawner(RemoteSpawner):
    """Runs the notebook on a login node; state = host, PID and port."""

    stop_grace_seconds = Float(10.0, config=True, help="Seconds between TERM and KILL when stopping.")

    pid: int | None = None
    pid_start: str | None = None
    remote_port: int | None = None
    run_id: str | None = None
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
        return f'"$HOME"/.hpchub/ssh/{self.run_id}'

    async def start_remote(self) -> tuple[str, int]:
        assert self.cell is not None
        clean = self.clean_options or await self.check_options(self.user_options)
        await self.run_prechecks()
        su = self.cell.system.singleuser
        wait = float(su.get("startTimeoutSeconds", self.start_timeout))
        self.run_id = secrets.token_hex(8)
        # Tunnel mode: the API tunnel must end on the login node the server will run on.
        pinned, env = await self.prepare_tunnel(self.remote_env())
        timer = metrics.spawn_timer(self.cell, "ssh")
        script = launcher_script(
            env_exports=export_lines(env),
            run_dir=self.run_dir,
            modules=self.module_lines(),
            startup_script=clean.startup_script,
            cmd=self.server_cmd(),
            bind_ip=str(su.get("ip", "0.0.0.0")),
            wait_seconds=wait,
        )
        result = await self.script(script, timeout=wait + 30, host=pinned)
        marks = parse_marks(result.stdout)
        if "PID" in marks:
            self.pid = int(marks["PID"])
            self.pid_start = marks.get("PSTART") or None
            self.remote_host = result.label
        if "STARTUP" in marks:
            # The user's start-up script failed: nothing was started.
            output = result.stdout.split(f"{MARK}STARTUP", 1)[-1].partition("\n")[2].strip()
            raise RuntimeError(
                f"{self.system_name}: the start-up script {clean.startup_script} failed with exit "
                f"code {marks['STARTUP']} on {result.label} for {self.user.name}; no server was started."
                + (f" Last lines of its output:\n{output[-2000:]}" if output else " It printed nothing.")
            )
        if "PORT" not in marks:
            tail = result.stdout.split(f"{MARK}DIED", 1)[-1].split(f"{MARK}TIMEOUT", 1)[-1].strip()
            why = "the server exited" if "DIED" in marks else "the server did not start in time"
            if "TIMEOUT" in marks and self.pid:
                await self._kill(grace=2)
            detail = (tail or result.stderr.strip())[-2000:]
            raise RuntimeError(
                f"{self.system_name}: {why} on {result.label} for {self.user.name}"
                + (f" (pid {self.pid})" if self.pid else "")
                + (f". Last lines of its log:\n{detail}" if detail else "")
            )
        # The host is the login node from values; only the port comes from the server's
        # runtime file, which the user can write: range-checked, then confirmed below.
        source = f"the server's runtime file on {result.label}"
        self.remote_port = routing.check_port(self.system_name, su, int(marks["PORT"]), source)
        self.watch()
        host = str(su.get("connectHost") or result.host)
        if self.tunnel:
            # The server listens on the login node; the proxy reaches it through this pod.
            local = await self.open_server_tunnel(result.label, (host, self.remote_port))
            await self.confirm_route(self.tunnel_connect_host, local, source)
            self.log.info(
                "%s: tunnel for %s: %s -> %s:%s",
                self.system_name,
                self._log_name,
                local,
                host,
                self.remote_port,
            )
            timer.ready()
            return self.tunnel_connect_host, local
        await self.confirm_route(host, self.remote_port, source)
        timer.ready()
        self.log.info(
            "%s: server of %s started on %s pid %s port %s",
            self.system_name,
            self._log_name,
            result.label,
            self.pid,
            self.remote_port,
        )
        return host, self.remote_port

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

    async def poll(self) -> int | None:
        if not self.pid or not self.remote_host:
            return 0
        self.watch()
        try:
            st = await self.status_board.process(self.remote_host, self.pid)
        except (SSHError, TransientProcessError) as e:
            # The login node is unreachable for now: the server may well be fine (and
            # the proxy will tell); dropping it would orphan the process.
            self.log.warning("%s: cannot poll %s: %s", self.system_name, self._log_name, e)
            return None
        return await self.poll_tunnels() if st.alive else 1

    async def _kill(self, grace: float) -> None:
        if not self.pid or not self.remote_host:
            return
        result = await self.script(
            stop_script(self.pid, grace), timeout=grace + 30, host=self.remote_host, expired_ok=True
        )
        if not result.ok:
            raise RuntimeError(f"{self.system_name}: process {self.pid} on {self.remote_host} survived KILL")

    async def stop(self, now: bool = False) -> None:
        for attempt in range(3):
            try:
                await self._kill(grace=0.5 if now else self.stop_grace_seconds)
                break
            except SSHError as e:
                self.log.warning(
                    "%s: stop of %s failed (attempt %d): %s", self.system_name, self._log_name, attempt + 1, e
                )
                await asyncio.sleep(2)
        else:
            raise RuntimeError(
                f"{self.system_name}: could not reach {self.remote_host} to stop pid {self.pid}"
            )
        self.unwatch()
        await self.stop_api_relay()
        self.pid = None
        self.remote_port = None
        self.close_tunnels()

    async def progress(self) -> Any:
        yield {"progress": 20, "message": f"Connecting to {self.system_name} over SSH"}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.pid = state.get("pid")
        self.pid_start = state.get("pid_start")
        self.remote_port = state.get("port")
        self.run_id = state.get("run_id")
        self.watch()  # before the hub's start-up checks: their polls share one refresh

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.pid:
            state.update(pid=self.pid, port=self.remote_port, run_id=self.run_id, backend="ssh")
            if self.pid_start:
                state["pid_start"] = self.pid_start
        return state

    def clear_state(self) -> None:
        self.unwatch()
        super().clear_state()
        self.pid = None
        self.pid_start = None
        self.remote_port = None
