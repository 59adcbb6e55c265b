"""Compute-node notebooks: a Slurm batch job submitted over SSH on a login node.

Flow: validated options -> job script from the Jinja template -> ``sbatch --parsable``
(script on stdin, environment exported by the stdin launcher so the API token is on no
command line) -> the job id is written to the hub DB at once -> ``squeue`` until the job
runs and its address file appears -> (host, port).

Connect-back: the job writes ``<host> <port> <job id>`` to
``~/.hpchub/jobs/<run_id>/address`` once the server listens, and the spawner reads it over
the user's SSH connection. Chosen over a hub API endpoint because it needs nothing routable
from compute nodes to the hub beyond what the notebook itself needs, cannot be written by
another user (the file is in the user's own 0700 directory, read as that user), and is
still there after a hub restart. The job itself can write anything there, so only the port
is taken from it (range-checked, then confirmed by asking the server); the host is the
job's node as slurmctld reports it (hpchub/routing.py).

Scheduler errors are classified: ``Invalid job id`` or an empty ``squeue`` answer means
the job is gone (then ``sacct`` is asked for the final state); anything else (slurmctld
down, timeouts, SSH trouble) is transient: the server stays pending/running and the next
poll tries again. A job is never forgotten without a confirmed ``scancel``.

For the console (issue 4): ``spawner.job_info`` is a dict ``{job_id, state, reason,
expected_start, nodes, updated}`` kept current by start/poll; progress events carry the
same text.
"""

from __future__ import annotations

import asyncio
import secrets
import shlex
import time
from pathlib import Path
from typing import Any

import jinja2
from traitlets import Float

from .. import metrics, routing
from ..ssh import SSHError
from ..status import ACTIVE, ENDING, JobStatus, TransientSchedulerError
from .remote import RemoteSpawner, export_lines, source_line

__all__ = ["ACTIVE", "ENDING", "JobStatus", "SlurmSpawner", "TransientSchedulerError"]

TEMPLATES = Path(__file__).parent / "templates"
# In the job's 0700 run directory, 0600: the server's environment, API token included.
ENV_FILE = "env"
MARK = "HPCHUB-"
# Seconds one remote wait for a running job's address file may take: the job may die
# meanwhile, and the board is read between two waits.
ADDRESS_WAIT_SECONDS = 5


def parse_address(job_id: str, stdout: str) -> tuple[str, int] | None:
    """``HPCHUB-ADDR <host> <port> <job id>`` from the address wait: a file left by
    another job is never taken."""
    for line in stdout.splitlines():
        if line.startswith(f"{MARK}ADDR "):
            parts = line.split()
            if len(parts) == 4 and parts[2].isdigit() and parts[3] == job_id:
                return parts[1], int(parts[2])
    return None


def address_wait_script(run_id: str, seconds: float) -> str:
    """Wait on the login node (not one SSH call per check) for the job's address file."""
    tries = max(int(seconds * 5), 1)
    return f"""a=.hpchub/jobs/{shlex.quote(run_id)}/address
i=0
while [ $i -lt {tries} ]; do
  if [ -s "$a" ]; then echo "{MARK}ADDR $(cat "$a")"; exit 0; fi
  sleep 0.2
  i=$((i+1))
done
exit 0
"""


def render_job_script(template_text: str | None, context: dict[str, Any]) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters["shquote"] = lambda v: shlex.quote(str(v))
    template = env.from_string(template_text) if template_text else env.get_template("slurm.sh.j2")
    return template.render(**context)


_reapers: set[asyncio.Task[None]] = set()


class SlurmSpawner(RemoteSpawner):
    """Runs the notebook as a Slurm job; state = job id and login host."""

    stop_confirm_seconds = Float(
        60.0, config=True, help="How long stop() keeps trying scancel and checking the job is gone."
    )

    job_id: str | None = None
    node: str | None = None  # the node the route points to (from Slurm)
    remote_port: int | None = None
    # Names this spawn's files (~/.hpchub/jobs/<run_id>/address, <run_id>.out): job ids
    # repeat across clusters sharing a home directory and after a Slurm reinstall.
    run_id: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.job_info: dict[str, Any] = {}
        self._events: list[dict[str, Any]] = []

    def configure_from_cell(self) -> None:
        assert self.cell is not None
        self.configure_status()
        # A queued job may wait; after this long the job is cancelled and the spawn fails.
        system = self.cell.system
        timeout = (
            system.slurm.get("startTimeoutSeconds") or system.singleuser.get("startTimeoutSeconds") or 900
        )
        self.start_timeout = int(timeout)

    @property
    def poll_seconds(self) -> float:
        assert self.cell is not None
        return float(self.cell.system.slurm.get("pollSeconds", 5))

    # Tunnel mode: the hub-API relay on the login node ends when the job script's exit
    # trap writes this file (or when stop() ends it).
    relay_lifetime = ("--end-file", "ended")

    @property
    def run_dir(self) -> str:
        assert self.run_id
        return f'"$HOME"/.hpchub/jobs/{self.run_id}'

    def job_context(self) -> dict[str, Any]:
        assert self.cell is not None and self.clean_options is not None
        su = self.cell.system.singleuser
        run_dir = self.run_dir
        return {
            "job_name": f"hpchub-{self.cell.server_name}",
            "output": f".hpchub/jobs/{self.run_id}.out",
            "directives": self.clean_options.sbatch_directives(),
            "modules": self.module_lines(),
            "startup_script": source_line(self.clean_options.startup_script),
            "server_cmd": " ".join(shlex.quote(a) for a in self.server_cmd()),
            "bind_ip": str(su.get("ip", "0.0.0.0")),
            # Informational: the hub routes to the node Slurm names, not to what the job says.
            "report_host": '"$(hostname)"',
            "run_dir": run_dir,
            "environment": (
                f'. "$d/{ENV_FILE}" || {{ echo "hpchub: cannot read the server\'s environment" >&2; exit 1; }}'
            ),
        }

    def submit_script(self, env: dict[str, str]) -> str:
        """Write the server's environment to a 0600 file in the 0700 run directory, then
        submit the job, which sources that file. The API token never enters the job's
        environment, which slurmctld keeps for the job's lifetime and shows to its owner
        and the admins (and slurmdbd stores with AccountingStoreFlags=job_env), nor the
        batch script, nor a command line."""
        assert self.cell is not None
        context = self.job_context()
        job = render_job_script(self.cell.system.slurm.get("jobTemplate"), context)
        if context["environment"] not in job:
            raise RuntimeError(
                f"{self.system_name}: slurm.jobTemplate does not use {{{{ environment }}}}, the line "
                "that gives the server its hub token and settings; add it after `d={{ run_dir }}`"
            )
        eof = f"HPCHUB_JOB_{secrets.token_hex(8)}"  # quoted here-docs: no expansion inside
        return (
            "umask 077\n"
            f"d={self.run_dir}\n"
            'mkdir -p "$d" && chmod 700 "$d" || exit 1\n'
            f"cat > \"$d/{ENV_FILE}\" <<'{eof}'\n{export_lines(env)}\n{eof}\n"
            f"sbatch --parsable --export=ALL <<'{eof}'\n{job}\n{eof}\n"
        )

    def _event(self, message: str, progress: int | None = None, **fields: str) -> None:
        event: dict[str, Any] = {"message": message, **fields}
        if progress is not None:
            event["progress"] = progress
        if not self._events or self._events[-1]["message"] != message:
            self._events.append(event)

    def _describe(self, st: JobStatus) -> str:
        text = f"Slurm job {st.job_id} on {self.system_name} is {st.state}"
        if st.reason:
            text += f" ({st.reason})"
        if st.state == "PENDING" and st.expected_start:
            text += f", expected start {st.expected_start}"
        if st.nodes and st.state == "RUNNING":
            text += f" on {st.nodes}"
        return text

    def watch(self, job_id: str | None = None) -> None:
        """Put the job on the system's status board (one squeue serves every poll)."""
        job_id = job_id or self.job_id
        if job_id and self.can_watch:
            self.status_board.watch_job(job_id, self.remote_user, self.credentials_or_open)

    def unwatch(self, job_id: str | None = None) -> None:
        job_id = job_id or self.job_id
        if job_id and self.can_watch:
            self.status_board.unwatch_job(job_id)

    async def query(self, job_id: str | None = None, max_age: float | None = None) -> JobStatus:
        """The job's status from the board; TransientSchedulerError when Slurm or SSH did
        not answer. ``max_age`` None: the board's interval (a poll)."""
        job_id = job_id or self.job_id
        assert job_id
        self.watch(job_id)
        st = await self.status_board.job(job_id, max_age=max_age)
        if job_id != self.job_id:
            return st
        self.job_info = {
            "job_id": st.job_id,
            "state": st.state,
            "reason": st.reason,
            "expected_start": st.expected_start,
            "nodes": st.nodes,
            "updated": time.time(),
        }
        return st

    async def wait_address(self, seconds: float = ADDRESS_WAIT_SECONDS) -> tuple[str, int] | None:
        """The running job's address, waited for on the login node as the user (the file
        is in their 0700 directory)."""
        assert self.job_id and self.run_id
        try:
            r = await self.script(
                address_wait_script(self.run_id, seconds), timeout=seconds + 30, host=self.remote_host
            )
        except SSHError as e:
            self.log.warning("%s: cannot read the address of job %s: %s", self.system_name, self.job_id, e)
            return None
        return parse_address(self.job_id, r.stdout)

    async def output_tail(self, lines: int = 20) -> str:
        if not self.job_id:
            return ""
        try:
            r = await self.ssh(
                ["tail", "-n", str(lines), f".hpchub/jobs/{self.run_id}.out"],
                timeout=20,
                host=self.remote_host,
            )
        except SSHError:
            return ""
        return (r.stdout or r.stderr).strip()

    async def start_remote(self) -> tuple[str, int]:
        assert self.cell is not None
        self._events = []
        if self.clean_options is None:
            await self.check_options(self.user_options)
        self._event(f"Checking your account on {self.system_name}", 5)
        await self.run_prechecks()
        self._event(f"Submitting the job on {self.system_name}", 10)
        self.run_id = secrets.token_hex(8)
        # Tunnel mode: compute nodes reach the hub API through the login node the job is sent from.
        pinned, env = await self.prepare_tunnel(self.remote_env())
        timer = metrics.spawn_timer(self.cell, "slurm")
        result = await self.script(self.submit_script(env), timeout=self.ssh_command_timeout, host=pinned)
        job_id = (
            result.stdout.strip().splitlines()[-1].split(";")[0]
            if result.ok and result.stdout.strip()
            else ""
        )
        if not job_id.isdigit():
            metrics.scheduler_error(self.system_name, "submit")
            detail = (result.stderr or result.stdout).strip()[-1000:]
            raise RuntimeError(f"{self.system_name}: sbatch refused the job of {self.user.name}: {detail}")
        self.job_id = job_id
        self.remote_host = result.label
        self.save_state_now()  # from here on a hub restart cannot orphan the job
        self.log.info("%s: submitted Slurm job %s for %s", self.system_name, job_id, self._log_name)
        self._event(f"Slurm job {job_id} submitted on {self.system_name}", 20)

        self.watch()
        while True:
            try:
                st = await self.query(max_age=self.poll_seconds)
            except TransientSchedulerError as e:
                self._event(f"{self.system_name}'s scheduler is not answering ({e}); retrying")
                await asyncio.sleep(self.poll_seconds)
                continue
            if not st.active:
                tail = await self.output_tail()
                raise RuntimeError(
                    f"{self.system_name}: Slurm job {job_id} of {self.user.name} ended ({st.state}"
                    + (f", {st.reason}" if st.reason else "")
                    + ") before the server started."
                    + (f" Last lines of its output:\n{tail}" if tail else "")
                )
            queue: dict[str, str] = {}
            if st.state == "PENDING":
                # The console draws a queued cell from these (pending reason, expected start).
                queue = {
                    "state": "queued",
                    "reason": st.reason,
                    "expected_start": st.expected_start.replace("T", " "),
                }
            self._event(self._describe(st), 50 if st.state == "RUNNING" else 30, **queue)
            if st.state != "RUNNING":
                # Queued jobs are checked at the site's pace; the board's one squeue
                # answers every waiting spawn at once.
                await asyncio.sleep(self.poll_seconds)
                continue
            timer.running()
            # Running: the server is seconds from listening; wait for its address on the
            # login node (one SSH call per few seconds, no squeue), then look again.
            address = await self.wait_address()
            if address is None:
                continue
            if not st.nodes:
                continue  # running, but slurmctld has not named its node yet
            # The host comes from Slurm (the job's first node, mapped by values); only the
            # port comes from the job's address file, which the job can write anything to.
            self.node, host = routing.node_address(self.system_name, self.cell.system.slurm, st.nodes)
            source = f"Slurm job {job_id}'s address file"
            port = routing.check_port(self.system_name, self.cell.system.singleuser, address[1], source)
            self.remote_port = port
            self._event(f"Slurm job {job_id} is running on {self.node}; server on port {port}", 90)
            if self.tunnel:
                local = await self.open_server_tunnel(result.label, (host, port))
                await self.confirm_route(self.tunnel_connect_host, local, source)
                timer.ready()
                return self.tunnel_connect_host, local
            await self.confirm_route(host, port, source)
            timer.ready()
            return host, port

    async def progress(self) -> Any:
        sent = 0
        while True:
            while sent < len(self._events):
                yield self._events[sent]
                sent += 1
            if not self._spawn_pending:
                return
            await asyncio.sleep(0.5)

    async def poll(self) -> int | None:
        if not self.job_id:
            return 0
        try:
            st = await self.query()
        except TransientSchedulerError as e:
            # Not "job gone" (batchspawner #315): keep the server, try next time.
            self.log.warning(
                "%s: cannot check Slurm job %s of %s: %s", self.system_name, self.job_id, self._log_name, e
            )
            return None
        if st.active:
            return await self.poll_tunnels() if st.state == "RUNNING" else None
        self.log.warning(
            "%s: Slurm job %s of %s ended: %s%s",
            self.system_name,
            self.job_id,
            self._log_name,
            st.state,
            f" ({st.reason})" if st.reason else "",
        )
        return 1

    async def _cancel_until_gone(self, job_id: str, host: str | None, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                r = await self.ssh(["scancel", job_id], timeout=30, host=host, expired_ok=True)
                if r.ok or "Invalid job id" in r.stderr or "already completing" in r.stderr:
                    st = await self.query(job_id, max_age=0)
                    if st.gone:
                        return True
                else:
                    metrics.scheduler_error(self.system_name, "cancel")
                    self.log.warning("%s: scancel %s failed: %s", self.system_name, job_id, r.stderr.strip())
            except (SSHError, TransientSchedulerError) as e:
                self.log.warning("%s: cannot cancel Slurm job %s yet: %s", self.system_name, job_id, e)
            await asyncio.sleep(1)
        return False

    async def stop(self, now: bool = False) -> None:
        if not self.job_id:
            return
        job_id, host = self.job_id, self.remote_host
        if not await self._cancel_until_gone(job_id, host, self.stop_confirm_seconds):
            # Keep trying in the background rather than forget the job (no orphans).
            self.log.error(
                "%s: Slurm job %s of %s not confirmed gone after %.0fs; still cancelling in the background",
                self.system_name,
                job_id,
                self._log_name,
                self.stop_confirm_seconds,
            )
            task = asyncio.ensure_future(self._cancel_until_gone(job_id, host, 24 * 3600))
            _reapers.add(task)
            task.add_done_callback(_reapers.discard)
        else:
            self.unwatch(job_id)
        self.log.info("%s: Slurm job %s of %s cancelled", self.system_name, job_id, self._log_name)
        await self.stop_api_relay()
        self.job_id = None
        self.close_tunnels()

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.job_id = state.get("job_id")
        self.run_id = state.get("run_id")
        self.node = state.get("node")
        self.remote_port = state.get("port")
        self.watch()  # before the hub's start-up checks: their polls share one refresh

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.job_id:
            state.update(job_id=self.job_id, run_id=self.run_id, backend="slurm")
            if self.node:
                state.update(node=self.node, port=self.remote_port)
        return state

    def clear_state(self) -> None:
        self.unwatch()
        super().clear_state()
        self.job_id = None
        self.run_id = None
        self.node = None
        self.remote_port = None
