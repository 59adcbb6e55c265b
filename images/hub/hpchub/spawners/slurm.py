"""Compute-node notebooks: a Slurm batch job submitted over SSH on a login node.

Flow: validated options -> run id and login host committed to the hub DB -> job script
from the Jinja template -> ``sbatch --parsable`` (job name ``hpchub-<run_id>``, script on
stdin, environment exported by the stdin launcher so the API token is on no command line)
-> the job id is written to the hub DB at once -> ``squeue`` until the job runs and its
address file appears -> (host, port).

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
poll tries again.

No orphans: the run id is in the DB before ``sbatch`` runs and in the job's name, so a
submission whose answer was lost (hub killed, DELETE or timeout while ``sbatch`` runs) is
found with ``squeue --me -n hpchub-<run_id>`` and adopted or cancelled — never submitted
twice. A stop that cannot be confirmed goes to the reaper (hpchub/reaper.py).

Requeue: jobs are submitted with ``--no-requeue`` unless ``slurm.requeue`` allows it;
then poll notices a requeued job running again elsewhere and moves the route.

For the console: ``spawner.job_info`` is a dict ``{job_id, state, reason,
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
from .remote import RemoteOps, RemoteSpawner, TunnelLost, export_lines, source_line, whole_script

__all__ = ["ACTIVE", "ENDING", "JobStatus", "SlurmSpawner", "TransientSchedulerError"]

TEMPLATES = Path(__file__).parent / "templates"
# In the job's 0700 run directory, 0600: the server's environment, API token included.
ENV_FILE = "env"
MARK = "HPCHUB-"
# Seconds one remote wait for a running job's address file may take: the job may die
# meanwhile, and the board is read between two waits.
ADDRESS_WAIT_SECONDS = 5
# How often that wait looks for the file (as often as the job script looks for the
# server's runtime file): the hub hears of the server at most this much after the job.
ADDRESS_POLL_SECONDS = 0.05
# Right after sbatch, when the status board is asked for the job's node while its address
# is waited for: on a cluster with room slurmctld has started the job by then.
FIRST_LOOK_SECONDS = 1.0
# How long a submission whose answer was lost is looked for (sbatch may still be talking
# to slurmctld when the hub gives up on it).
FIND_SUBMITTED_SECONDS = 15.0


def job_name(run_id: str) -> str:
    """The job's name: how a submission whose answer was lost is found again."""
    return f"hpchub-{run_id}"


def parse_address(job_id: str, stdout: str) -> tuple[str, int] | None:
    """``HPCHUB-ADDR <host> <port> <job id>`` from the address wait: a file left by
    another job is never taken."""
    for line in stdout.splitlines():
        if line.startswith(f"{MARK}ADDR "):
            parts = line.split()
            if len(parts) == 4 and parts[2].isdigit() and parts[3] == job_id:
                return parts[1], int(parts[2])
    return None


def address_wait_script(run_id: str, seconds: float, watch_end: bool = False) -> str:
    """Wait on the login node (not one SSH call per check) for the job's address file.
    ``watch_end``: stop early (``HPCHUB-ENDED``) once the job script's exit trap has written
    ``ended`` in the run directory: the job is over, and the status board says how."""
    tries = max(int(seconds / ADDRESS_POLL_SECONDS), 1)
    d = f".hpchub/jobs/{shlex.quote(run_id)}"
    end = f'  if [ -e {d}/ended ]; then echo "{MARK}ENDED"; exit 0; fi\n' if watch_end else ""
    return f"""a={d}/address
i=0
while [ $i -lt {tries} ]; do
  if [ -s "$a" ]; then echo "{MARK}ADDR $(cat "$a")"; exit 0; fi
{end}  sleep {ADDRESS_POLL_SECONDS}
  i=$((i+1))
done
exit 0
"""


def find_script(run_id: str) -> str:
    """The user's jobs named after this run, any state: ``<id>|<state>`` lines."""
    return f"""squeue --me -h -t all -n {shlex.quote(job_name(run_id))} -o '%i|%T' 2>&1
echo "{MARK}RC $?"
exit 0
"""


def parse_found(stdout: str) -> dict[str, str]:
    """Job id -> state from find_script; TransientSchedulerError when squeue failed."""
    rc = None
    jobs: dict[str, str] = {}
    errors: list[str] = []
    for line in stdout.splitlines():
        if line.startswith(f"{MARK}RC "):
            rc = int(line.split()[1])
            continue
        jid, sep, state = line.strip().partition("|")
        if sep and jid.isdigit():
            jobs[jid] = state.split()[0] if state else "UNKNOWN"
        elif line.strip():
            errors.append(line.strip())
    if rc is None:
        raise TransientSchedulerError("squeue gave no answer")
    if rc != 0:
        raise TransientSchedulerError("\n".join(errors) or f"squeue exited with status {rc}")
    return jobs


def cancel_script(run_id: str | None, job_id: str | None) -> str:
    """scancel the run's job(s) (by name, and by id when known), then list what is left."""
    lines = []
    if run_id:
        lines.append(f'scancel -u "$(id -un)" -n {shlex.quote(job_name(run_id))} 2>&1')
    if job_id:
        lines.append(f"scancel {shlex.quote(job_id)} 2>&1")
    lines.append(f'echo "{MARK}SCANCEL $?"')
    if run_id:
        lines.append(f"squeue --me -h -t all -n {shlex.quote(job_name(run_id))} -o '%i|%T' 2>&1")
        lines.append(f'echo "{MARK}RC $?"')
    if job_id:
        lines.append(f"squeue -h -t all -j {shlex.quote(job_id)} -o '%i|%T' 2>&1")
        lines.append(f'echo "{MARK}JRC $?"')
    lines.append("exit 0")
    return "\n".join(lines) + "\n"


def parse_cancel(stdout: str, job_id: str | None) -> set[str]:
    """Ids of the run's jobs still active (or completing) after scancel. A job purged from
    slurmctld (``Invalid job id``) is gone; any other squeue failure is transient."""
    left: set[str] = set()
    section: list[str] = []
    for line in stdout.splitlines():
        if line.startswith(f"{MARK}SCANCEL "):
            section = []
            continue
        if line.startswith((f"{MARK}RC ", f"{MARK}JRC ")):
            rc = int(line.split()[1])
            text = "\n".join(section)
            if rc != 0 and not (line.startswith(f"{MARK}JRC ") and "Invalid job id" in text):
                raise TransientSchedulerError(text or f"squeue exited with status {rc}")
            for entry in section:
                jid, sep, state = entry.partition("|")
                st = state.split()[0] if state else ""
                if sep and jid.isdigit() and (st in ACTIVE or st in ENDING):
                    left.add(jid)
            section = []
            continue
        if line.strip():
            section.append(line.strip())
    if job_id and f"{MARK}JRC " not in stdout:
        raise TransientSchedulerError("squeue gave no answer")
    return left


async def cancel_run(
    ops: RemoteOps, run_id: str | None, job_id: str | None, host: str | None = None, prefer: str | None = None
) -> bool:
    """One attempt to cancel a run's job; True when none of it is active any more.
    (The spawner's stop and the reaper both call this.) Any login host can cancel a job:
    ``host`` pins one only where it matters (tunnel mode), ``prefer`` tries one first."""
    for _ in range(6):
        try:
            r = await ops.run(
                ops.shell_argv, stdin=cancel_script(run_id, job_id), timeout=45, host=host, prefer=prefer
            )
        except SSHError as e:
            raise TransientSchedulerError(str(e)) from e
        if not parse_cancel(r.stdout, job_id):
            return True
        await asyncio.sleep(2)  # COMPLETING takes a moment; scancel again is harmless
    return False


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


# sbatch failures that may have submitted the job anyway (the answer was lost).
UNCERTAIN = ("timed out", "Unable to contact", "Socket", "Connection", "Zero Bytes")


class SlurmSpawner(RemoteSpawner):
    """Runs the notebook as a Slurm job; state = run id, job id, login host, node, port."""

    stop_confirm_seconds = Float(
        60.0, config=True, help="How long stop() keeps trying scancel and checking the job is gone."
    )

    backend_name = "slurm"
    job_id: str | None = None
    node: str | None = None  # the node the route points to (from Slurm)
    remote_port: int | None = None
    # Seen not running while the server ran: requeued (slurm.requeue); poll follows it.
    _requeued = False
    # Times this start (queue wait, server start); None after a restart (no start to time).
    _timer: metrics.SpawnTimer | None = None
    _running_seen = False  # this wait has seen the job running (note_running)

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

    @property
    def slurm_host(self) -> str | None:
        """The login host scheduler commands must run on: any (failover) unless tunnel
        mode ties the job to the login node its API tunnel ends on. The submission host
        is tried first either way (RemoteSpawner.ssh prefers it)."""
        return self.remote_host if self.tunnel else None

    @property
    def requeue(self) -> bool:
        assert self.cell is not None
        return bool(self.cell.system.slurm.get("requeue", False))

    def job_context(self) -> dict[str, Any]:
        assert self.cell is not None and self.clean_options is not None
        su = self.cell.system.singleuser
        run_dir = self.run_dir
        # A requeued job comes back on another node with a new port while the hub still
        # routes to the old one; a notebook's kernels are lost either way. Sites that
        # want it anyway allow it with slurm.requeue (poll then moves the route).
        requeue = ["--requeue" if self.requeue else "--no-requeue"]
        return {
            "job_name": job_name(self.run_id),
            "output": f".hpchub/jobs/{self.run_id}.out",
            "directives": requeue + self.clean_options.sbatch_directives(),
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
        # whole_script: a script cut short (the hub killed mid-send) must submit nothing.
        return "umask 077\n" + whole_script(
            f"d={self.run_dir}\n"
            'mkdir -p "$d" && chmod 700 "$d" || exit 1\n'
            f"cat > \"$d/{ENV_FILE}\" <<'{eof}'\n{export_lines(env)}\n{eof}\n"
            f"sbatch --parsable --export=ALL <<'{eof}'\n{job}\n{eof}\n"
        )

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

    async def job_status(self, max_age: float | None = None) -> JobStatus:
        """This run's job as the scheduler sees it: the one place the spawner asks (the
        status board answers, one squeue for every job of the system)."""
        return await self.query(max_age=max_age)

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

    async def wait_address(
        self, seconds: float = ADDRESS_WAIT_SECONDS, watch_end: bool = False
    ) -> tuple[tuple[str, int] | None, bool]:
        """The running job's address, waited for on a login node as the user (the file is
        in their 0700 directory; $HOME is shared, so any login host will do); and, with
        ``watch_end``, whether the job script ended first (address_wait_script)."""
        assert self.job_id and self.run_id
        try:
            r = await self.script(
                address_wait_script(self.run_id, seconds, watch_end),
                timeout=seconds + 30,
                host=self.slurm_host,
                expired_ok=True,
            )
        except SSHError as e:
            self.log.warning("%s: cannot read the address of job %s: %s", self.system_name, self.job_id, e)
            return None, False
        address = parse_address(self.job_id, r.stdout)
        return address, address is None and f"{MARK}ENDED" in r.stdout.splitlines()

    def report(self, st: JobStatus) -> None:
        """The job's state as a progress event (what the console and /progress show)."""
        queue: dict[str, str] = {}
        if st.state == "PENDING":
            # The console draws a queued cell from these (pending reason, expected start).
            queue = {
                "state": "queued",
                "reason": st.reason,
                "expected_start": st.expected_start.replace("T", " "),
            }
        self._event(self._describe(st), 50 if st.state == "RUNNING" else 30, **queue)

    def note_running(self) -> None:
        """The job runs: phase, the queue-wait metric and the spawn step, once per wait."""
        self.set_phase("starting")
        if self._timer is not None:
            self._timer.running()
        if not self._running_seen:
            self.step("queue")
            self._running_seen = True

    async def first_sight(self) -> tuple[tuple[str, int] | None, bool, JobStatus | None]:
        """Right after sbatch: the job's address (or its end), waited for on the login node
        for up to a poll interval, and meanwhile the job as the board's next refresh after
        FIRST_LOOK_SECONDS sees it: RUNNING with its node on a cluster with room (no
        scheduler query is left to make once the server is up); ended or queued with a
        reason, the wait ends there (a job that fails at once fails the spawn at once).
        Returns (address, ended on the login node, the board's look)."""

        async def look() -> JobStatus | None:
            await asyncio.sleep(FIRST_LOOK_SECONDS)
            try:
                return await self.job_status(max_age=0)
            except TransientSchedulerError:
                return None  # the loop asks again

        waiting = asyncio.ensure_future(self.wait_address(self.poll_seconds, watch_end=True))
        looking = asyncio.ensure_future(look())
        try:
            done, _ = await asyncio.wait({waiting, looking}, return_when=asyncio.FIRST_COMPLETED)
            seen = looking.result() if looking in done else None
            if seen is not None and (not seen.active or (seen.state == "PENDING" and seen.reason)):
                # It ended at once, or it queues (the scheduler gave a reason): no address
                # soon; the loop says why, or shows the queue at the site's pace.
                return None, False, seen
            if seen is not None:
                self.report(seen)  # pending (not looked at by the scheduler yet) or running
                if seen.state == "RUNNING":
                    self.note_running()  # the queue wait ends here, not when the server is up
            address, ended = await waiting
        finally:
            for task in (waiting, looking):
                if not task.done():
                    task.cancel()
        if looking.done() and not looking.cancelled():
            seen = looking.result()
        if address:
            self.step("address")
        return address, ended, seen

    async def find_submitted(self, seconds: float = FIND_SUBMITTED_SECONDS) -> str | None:
        """The job of this run, looked up by its name (a submission whose answer was
        lost); None when none appeared within ``seconds``."""
        assert self.run_id
        deadline = time.monotonic() + seconds
        while True:
            try:
                r = await self.script(
                    find_script(self.run_id), timeout=30, host=self.slurm_host, expired_ok=True
                )
                jobs = parse_found(r.stdout)
                if jobs:
                    return sorted(jobs, key=int)[0]
            except (SSHError, TransientSchedulerError) as e:
                self.log.warning(
                    "%s: cannot look for job %s yet: %s", self.system_name, job_name(self.run_id), e
                )
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(2)

    async def output_tail(self, lines: int = 20) -> str:
        if not self.job_id:
            return ""
        try:
            r = await self.ssh(
                ["tail", "-n", str(lines), f".hpchub/jobs/{self.run_id}.out"],
                timeout=20,
                host=self.slurm_host,
                expired_ok=True,
            )
        except SSHError:
            return ""
        return (r.stdout or r.stderr).strip()

    async def start_remote(self) -> tuple[str, int]:
        assert self.cell is not None
        if self.clean_options is None:
            await self.check_options(self.user_options)
        self._event(f"Checking your account on {self.system_name}", 5)
        await self.run_prechecks()
        self.step("prechecks")
        self._event(f"Submitting the job on {self.system_name}", 10)
        host = await self.begin_run()
        self.step("login host")
        # Tunnel mode: compute nodes reach the hub API through the login node the job is sent from.
        env = await self.prepare_tunnel(self.remote_env(), host)
        if self.tunnel:
            self.step("tunnel")
        self._timer = metrics.spawn_timer(self.cell, "slurm")
        self.job_id = await self.submit(env, host)
        self.step("submit")
        self.set_phase("queued")  # from here on a hub restart cannot orphan the job
        self.log.info("%s: submitted Slurm job %s for %s", self.system_name, self.job_id, self._log_name)
        self._event(f"Slurm job {self.job_id} submitted on {self.system_name}", 20)
        return await self.wait_for_server(None, just_submitted=True)

    async def submit(self, env: dict[str, str], host: str) -> str:
        """sbatch; the job id. Never a second sbatch for one run: when the answer is lost
        or unclear, the job is looked up by its name."""
        try:
            result = await self.script(self.submit_script(env), timeout=self.ssh_command_timeout, host=host)
        except SSHError as e:
            found = await self.find_submitted()
            if found:
                return found
            # It may still appear: stop() (which JupyterHub calls next) and the reaper watch.
            raise RuntimeError(
                f"{self.system_name}: submitting the job of {self.user.name} failed: {e}"
            ) from e
        out = result.stdout.strip().splitlines()
        job_id = out[-1].split(";")[0] if result.ok and out else ""
        if job_id.isdigit():
            return job_id
        detail = (result.stderr or result.stdout).strip()[-1000:]
        found = await self.find_submitted(
            FIND_SUBMITTED_SECONDS if any(u in detail for u in UNCERTAIN) else 0
        )
        if found:
            return found
        metrics.scheduler_error(self.system_name, "submit")
        if any(u in detail for u in UNCERTAIN):
            # It may still appear: stop() (which JupyterHub calls next) and the reaper watch.
            raise RuntimeError(
                f"{self.system_name}'s scheduler did not answer while your job was submitted ({detail}). "
                "Try again in a few minutes; should the job appear meanwhile, the hub cancels it."
            )
        self.forget_run()  # refused: nothing was submitted, nothing to stop
        raise RuntimeError(f"{self.system_name}: sbatch refused the job of {self.user.name}: {detail}")

    async def wait_for_server(self, deadline: float | None, just_submitted: bool = False) -> tuple[str, int]:
        """Wait (at the site's pace) until the job runs and its server answers; the address
        the proxy uses. Used by start and, after a hub restart, by the adoption.

        ``just_submitted``: on a cluster with room the job runs within a second of sbatch,
        so first its address is waited for on the login node (no scheduler query) for up
        to a poll interval while the board is asked once for its node (first_sight).
        Waiting at the board's pace instead would add up to a poll interval (5 s) to every
        such start. A job still queued then is followed at the site's pace."""
        assert self.cell is not None
        if not self.job_id:
            # The hub died (or gave up) while sbatch ran: the name finds the job.
            self.job_id = await self.find_submitted(0)
            if not self.job_id:
                raise RuntimeError(
                    f"{self.system_name}: the hub restarted while your job was being submitted and "
                    "no job was found; start it again"
                )
            self.set_phase("queued")
        job_id = self.job_id
        self.watch()
        self._running_seen = False
        address: tuple[str, int] | None = None
        ended, seen = False, None
        if just_submitted:
            address, ended, seen = await self.first_sight()
        # A user can write `ended` themselves: it makes the hub ask the board once, not more.
        watch_end = not ended
        while True:
            if deadline and time.time() > deadline:
                raise RuntimeError(
                    f"{self.system_name}: Slurm job {job_id} did not start in {self.start_timeout} seconds; "
                    "it was cancelled"
                )
            try:
                if address and seen is not None and seen.state == "RUNNING" and seen.nodes:
                    st = seen  # its node, from the board while the server started
                else:
                    # With the address in hand (the job runs) or the job's end seen on the
                    # login node: a refresh from after that.
                    fresh = address is not None or ended
                    st = await self.job_status(max_age=0 if fresh else self.poll_seconds)
                seen, ended = None, False
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
            self.report(st)
            if st.state != "RUNNING":
                # Queued jobs are checked at the site's pace; the board's one squeue
                # answers every waiting spawn at once.
                self.set_phase("queued" if st.state == "PENDING" else "starting")
                address = None
                await asyncio.sleep(self.poll_seconds)
                continue
            self.note_running()
            # Running: the server is seconds from listening; wait for its address on the
            # login node (one SSH call per few seconds, no squeue), then look again.
            if address is None:
                address, ended = await self.wait_address(watch_end=watch_end)
                if ended:
                    watch_end = False
                if address is None:
                    continue
            if not st.nodes:
                address = None
                continue  # running, but slurmctld has not named its node yet
            self.step("server")
            # The host comes from Slurm (the job's first node, mapped by values); only the
            # port comes from the job's address file, which the job can write anything to.
            self.node, host = routing.node_address(self.system_name, self.cell.system.slurm, st.nodes)
            source = f"Slurm job {job_id}'s address file"
            port = routing.check_port(self.system_name, self.cell.system.singleuser, address[1], source)
            self.remote_port = port
            self._event(f"Slurm job {job_id} is running on {self.node}; server on port {port}", 90)
            target = await self._server_tunnel((host, port)) if self.tunnel else (host, port)
            # A Jupyter server for this user's URL prefix must answer there (RouteRefused).
            await self.confirm_route(*target, source)
            self.step("route")
            if just_submitted:
                # start() returns now and JupyterHub stores the state at once (as the SSH
                # backend does): a commit here would only delay the route.
                self.phase = "running"
            else:
                self.set_phase("running")
            if self._timer is not None:
                self._timer.ready()
                self._timer = None
            return target

    async def _server_tunnel(self, dest: tuple[str, int]) -> tuple[str, int]:
        assert self.remote_host
        srv = self._tunnels.get("server")
        same = (self.tunnel_ports.get("dest_host"), self.tunnel_ports.get("dest_port")) == dest
        if srv is not None and not srv.closed and same:
            return self.tunnel_connect_host, int(self.tunnel_ports["server"])
        if "api_socket" in self.tunnel_ports or "api" in self.tunnel_ports:
            await self.ensure_tunnels()
        old = int(self.tunnel_ports.get("server") or 0) if same else 0
        try:
            local = await self.open_server_tunnel(self.remote_host, dest, old)
        except SSHError:
            local = await self.open_server_tunnel(self.remote_host, dest, 0)
        return self.tunnel_connect_host, local

    async def poll_remote(self) -> int | None:
        if not self.job_id:
            return None  # launching: only stop() can settle it
        try:
            st = await self.job_status()
        except TransientSchedulerError as e:
            # Not "job gone" (batchspawner #315): keep the server, try next time.
            self.log.warning(
                "%s: cannot check Slurm job %s of %s: %s", self.system_name, self.job_id, self._log_name, e
            )
            return None
        if st.active:
            try:
                return await self._follow(st)
            except TunnelLost as e:
                return await self.tunnel_lost(e)
            except SSHError as e:
                self.log.warning(
                    "%s: cannot re-open the tunnel of %s: %s", self.system_name, self._log_name, e
                )
            return None
        if not st.gone:
            return None  # COMPLETING: not gone yet; the next poll reports how it ended
        self.log.warning(
            "%s: Slurm job %s of %s ended: %s%s",
            self.system_name,
            self.job_id,
            self._log_name,
            st.state,
            f" ({st.reason})" if st.reason else "",
        )
        return 1

    async def _follow(self, st: JobStatus) -> int | None:
        """A running server's job changed under it: requeued (and back on a node, with a
        new address), or its tunnel died. Move the route; say so in the log. TunnelLost:
        the notebook's hub-API path cannot be restored safely (the caller stops it)."""
        assert self.cell is not None
        if self.phase != "running":
            return None
        if st.state != "RUNNING":
            if not self._requeued:
                self.log.warning(
                    "%s: Slurm job %s of %s was requeued (%s)",
                    self.system_name,
                    self.job_id,
                    self._log_name,
                    st.state,
                )
            self._requeued = True
            return None
        slurm = self.cell.system.slurm
        node = routing.node_address(self.system_name, slurm, st.nodes)[0] if st.nodes else None
        if self._requeued or (self.node and node and node != self.node):
            address, _ = await self.wait_address(seconds=1)
            if address is None or not st.nodes:
                return None
            # As at start: the host from Slurm, only the port from the job's address file.
            node, host = routing.node_address(self.system_name, slurm, st.nodes)
            source = f"Slurm job {self.job_id}'s address file"
            port = routing.check_port(self.system_name, self.cell.system.singleuser, address[1], source)
            if (node, port) == (self.node, self.remote_port):
                self._requeued = False
                return None
            target = await self._server_tunnel((host, port)) if self.tunnel else (host, port)
            if not await self.answers(*target):
                # Not (yet) this user's Jupyter server there (an old address file, a server
                # still starting, or something else): no route; look again at the next poll.
                return None
            self.log.warning(
                "%s: Slurm job %s of %s now runs on %s port %s (was %s port %s); moving the route",
                self.system_name,
                self.job_id,
                self._log_name,
                node,
                port,
                self.node,
                self.remote_port,
            )
            self.node, self.remote_port = node, port
            self._requeued = False
            self.save_state_now()
            await self.move_route(*target)
            return None
        moved = await self.ensure_tunnels()
        if moved:
            await self.move_route(*moved)
        return None

    async def confirmed_url(self) -> str | None:
        """A running job's server at the address in the state, if it answers there. The
        board answers the job's state for every server of the system at once; with the
        user's credentials expired, the server's own answer is what confirms it."""
        if self.phase != "running" or not self.job_id or not self.node or not self.remote_port:
            return None
        nodes = ""
        try:
            st = await self.job_status()
            if st.state != "RUNNING":
                return None
            nodes = st.nodes
        except TransientSchedulerError as e:
            self.log.warning(
                "%s: cannot check job %s now (%s); asking its server", self.system_name, self.job_id, e
            )
        assert self.cell is not None
        # The host from Slurm (the node saved at start came from squeue, never the job).
        node, host = routing.node_address(self.system_name, self.cell.system.slurm, nodes or self.node)
        if node != self.node:
            return None  # elsewhere now (requeued while the hub was down): the adoption follows
        target = (
            await self._server_tunnel((host, self.remote_port)) if self.tunnel else (host, self.remote_port)
        )
        if not await self.answers(*target):
            return None
        return self.url_for(*target)

    def has_handle(self) -> bool:
        return bool(self.job_id)

    async def stop_remote(self, now: bool) -> bool:
        if not self.job_id and not self.run_id:
            return True
        deadline = time.monotonic() + self.stop_confirm_seconds
        # Without a job id, sbatch may still be creating the job: look again for a while.
        settle = time.monotonic() + (0 if self.job_id else FIND_SUBMITTED_SECONDS)
        while True:
            try:
                gone = await cancel_run(
                    self.ops, self.run_id, self.job_id, host=self.slurm_host, prefer=self.remote_host
                )
                if gone and time.monotonic() >= settle:
                    self.unwatch()
                    return True
            except TransientSchedulerError as e:
                metrics.scheduler_error(self.system_name, "cancel")
                self.log.warning(
                    "%s: cannot cancel Slurm job %s of %s yet: %s",
                    self.system_name,
                    self.job_id or job_name(self.run_id or ""),
                    self._log_name,
                    e,
                )
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(1)

    def stopped_text(self) -> str:
        job = self.job_id or job_name(self.run_id or "")
        return f"{self.system_name}: Slurm job {job} of {self._log_name} cancelled"

    def reaper_row(self, reason: str) -> Any:
        row = super().reaper_row(reason)
        row.job_id = self.job_id
        return row

    def forget_run(self) -> None:
        self.unwatch()
        super().forget_run()
        self.job_id = None
        self.node = None
        self.remote_port = None

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.job_id = state.get("job_id")
        self.node = state.get("node")
        self.remote_port = state.get("port")
        if self.job_id and not self.phase:
            self.phase = "running"  # a row written by 0.1.0
        self.watch()  # before the hub's start-up checks: their polls share one refresh

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.job_id:
            state.update(job_id=self.job_id, backend="slurm")
            if self.run_id:
                state["run_id"] = self.run_id
            if self.node:
                state["node"] = self.node
            if self.remote_port:
                state["port"] = self.remote_port
        return state
