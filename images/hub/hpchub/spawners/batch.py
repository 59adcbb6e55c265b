"""Compute-node notebooks: a batch job submitted over SSH on a login node, for any
scheduler behind hpchub.schedulers' interface (Slurm today). The lifecycle is written once,
here; the scheduler adapter says which commands to run and how to read their answers.

Flow: validated options -> run id and login host committed to the hub DB -> job script
from the Jinja template -> the adapter's submit command (job name ``hpchub-<run_id>``,
script on stdin, environment in a 0600 file so the API token is on no command line and in
no job record) -> the job id is written to the hub DB at once -> the status board until the
job runs and its address file appears -> (host, port).

Connect-back: the job writes ``<host> <port> <job id>`` to
``~/.hpchub/jobs/<run_id>/address`` once the server listens, and the spawner reads it over
the user's SSH connection. Chosen over a hub API endpoint because it needs nothing routable
from compute nodes to the hub beyond what the notebook itself needs, cannot be written by
another user (the file is in the user's own 0700 directory, read as that user), and is
still there after a hub restart. The job itself can write anything there, so only the port
is taken from it (range-checked, then confirmed by asking the server); the host is the
job's node as the scheduler reports it (hpchub/routing.py).

Scheduler errors are classified by the adapter and the board: a job is gone only when the
scheduler answered and neither its query nor its accounting knows it; anything else
(controller down, timeouts, SSH trouble) is transient: the server stays pending/running
and the next poll tries again.

No orphans: the run id is in the DB before the submission and in the job's name, so a
submission whose answer was lost (hub killed, DELETE or timeout while it runs) is found
by name and adopted or cancelled — never submitted twice. A stop that cannot be confirmed
goes to the reaper (hpchub/reaper.py).

Requeue: jobs are submitted without requeue unless ``<scheduler>.requeue`` allows it; then
poll notices a requeued job running again elsewhere and moves the route.

For the console: ``job_info`` holds the last board answer ({job_id, state, reason,
expected_start, nodes, updated}); ``server_status`` turns it into the ServerStatus every
view draws (job_view).

Walltime: the job asks the scheduler for SIGUSR1 ``walltime.saveBeforeSeconds`` before its
limit (Slurm's ``--signal``), which the job script passes on to the server (the notebook
saves open documents). ``extend`` raises a running job's limit within the cap of its level
or QOS (hpchub.walltime), through the site's extend account, for the job id of this run's
own state and only if Slurm has that job in the shape the hub submitted it (``job_shape``:
name, partition, QOS, account, nodes; the login node checks); the new limit is kept in
state (``time_limit``), so the end the views show follows it, across hub restarts too.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shlex
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from traitlets import Float

from .. import claims, metrics, routing
from ..claims import ClaimRefused
from ..endings import tail
from ..remoteops import (
    MARK,
    ExtendJobRefused,
    cancel_run,
    catches_usr1,
    export_lines,
    extend_job,
    job_name,
    source_line,
    startup_failure,
    whole_script,
)
from ..schedulers import SCHEDULERS, JobStatus, Scheduler, TransientSchedulerError
from ..schedulers.base import EndDetails, end_section, end_sections, parse_found
from ..serverstate import JobShape, Phase, ServerStatus, status_of
from ..sshpool import SSHError
from ..walltime import ExtendRefused, check_extend, extend_offer, minutes_text
from .remote import RemoteSpawner, TunnelLost

TEMPLATES = Path(__file__).parent / "templates"
# In the job's 0700 run directory, 0600: the server's environment, API token included.
ENV_FILE = "env"
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
# to the controller when the hub gives up on it).
FIND_SUBMITTED_SECONDS = 15.0
# The job template's line that passes SIGUSR1 on to the server alone (its kernels would die
# of it), once the server catches it (a signal early in a short job would end a server still
# starting: it then saves at the end the hub tells it); the save signal is asked for only in
# a job script that has it.
FORWARD_USR1 = f'trap \'[ -n "$pid" ] && {catches_usr1("pid")} && kill -USR1 "$pid" 2>/dev/null\' USR1'


_ADDRESS_LINE = re.compile(rf"^{MARK}ADDR ([^ \n]{{1,255}}) ([0-9]{{1,5}}) ([0-9]{{1,10}})[ \t\r]*$", re.M)
MAX_ADDRESS_LINES = 16


def parse_address(job_id: str, stdout: str) -> tuple[str, int] | None:
    """``HPCHUB-ADDR <host> <port> <job id>`` from the address wait: a file left by
    another job is never taken, nor a port that is not one."""
    for n, m in enumerate(_ADDRESS_LINE.finditer(stdout)):
        if n >= MAX_ADDRESS_LINES:
            return None  # more address lines than a wait prints: none is believed
        if m.group(3) != job_id:
            continue
        try:
            return m.group(1), claims.port("address file", m.group(2))
        except ClaimRefused:
            continue
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


def output_section(path: str, lines: int = 20) -> str:
    """The end script's ``output`` section: the last lines of a file the job (the user)
    writes, read only if it is a regular file (a FIFO would hang the read) and from its
    last 64 KiB only (a file of one endless line)."""
    f = shlex.quote(path)
    return end_section("output", f"[ -f {f} ] && tail -c 65536 {f} | tail -n {int(lines)}")


def render_job_script(scheduler: Scheduler, template_text: str | None, context: dict[str, Any]) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters["shquote"] = lambda v: shlex.quote(str(v))
    template = env.from_string(template_text) if template_text else env.get_template(scheduler.job_template)
    return template.render(**context)


def job_script(
    scheduler: Scheduler, template_text: str | None, context: dict[str, Any], save_before: int
) -> str:
    """The job script, asking for SIGUSR1 ``save_before`` seconds before the limit where
    the script passes it on (FORWARD_USR1): in one without that line the signal would end
    the batch shell (bash's default for USR1), and the job with it."""
    job = render_job_script(scheduler, template_text, context)
    if FORWARD_USR1 not in job:
        return job
    directives = list(context["directives"]) + scheduler.save_signal(save_before)
    return render_job_script(scheduler, template_text, {**context, "directives": directives})


def job_view(
    scheduler: Scheduler, status: ServerStatus, info: Mapping[str, Any], limit: int | None
) -> ServerStatus:
    """A run's status with what the board last said of its job (``info``: job_id, state,
    reason, expected_start, nodes): queued with the scheduler's pending reason and expected
    start; running on its nodes until ``limit`` seconds after its start."""
    if not info.get("state"):
        # No answer from the scheduler yet: a submitted job is "starting" until the board
        # says it is queued.
        return replace(status, phase=Phase.STARTING) if status.phase is Phase.QUEUED else status
    state = str(info["state"])
    status = replace(status, job_id=str(info.get("job_id") or ""))
    if state in scheduler.queued_states:
        start = str(info.get("expected_start") or "").replace("T", " ")
        return replace(status, phase=Phase.QUEUED, reason=str(info.get("reason") or ""), expected_start=start)
    if state == scheduler.running_state:
        # For a running job the query's start time (squeue's %S) is the actual start.
        try:
            started = datetime.fromisoformat(str(info.get("expected_start"))).timestamp()
        except ValueError:
            started = None
        ends_at = started + limit if limit and started else None
        phase = Phase.STARTING if status.phase is Phase.QUEUED else status.phase
        return replace(status, phase=phase, host=str(info.get("nodes") or ""), ends_at=ends_at)
    return status


class BatchSpawner(RemoteSpawner):
    """Runs the notebook as a batch job of ``scheduler_name``'s scheduler; state = run id,
    job id, login host, node, port. One subclass per scheduler (SlurmSpawner), so sites
    configure it by name (``c.SlurmSpawner...``)."""

    stop_confirm_seconds = Float(
        60.0, config=True, help="How long stop() keeps trying to cancel the job and checking it is gone."
    )

    scheduler_name = ""
    job_id: str | None = None
    qos: str = ""  # the job's QOS (an extension's cap may be the QOS's)
    # The job as submitted, from the checked options: the extend account finds it in Slurm.
    job_shape: JobShape | None = None
    node: str | None = None  # the node the route points to (from the scheduler)
    remote_port: int | None = None
    # Seen not running while the server ran: requeued (<scheduler>.requeue); poll follows it.
    _requeued = False
    # Times this start (queue wait, server start); None after a restart (no start to time).
    _timer: metrics.SpawnTimer | None = None
    _running_seen = False  # this wait has seen the job running (note_running)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._extend_lock = asyncio.Lock()

    @property
    def backend_name(self) -> str:  # type: ignore[override]
        return self.scheduler_name

    @property
    def scheduler(self) -> Scheduler:
        return SCHEDULERS[self.scheduler_name]

    def configure_from_cell(self) -> None:
        assert self.cell is not None
        self.configure_status()
        # A queued job may wait; after this long the job is cancelled and the spawn fails.
        self.start_timeout = self.settings.batch_start_timeout

    @property
    def poll_seconds(self) -> float:
        return self.settings.batch.poll_seconds

    # Tunnel mode: the hub-API relay on the login node ends when the job script's exit
    # trap writes this file (or when stop() ends it).
    relay_lifetime = ("--end-file", "ended")

    @property
    def run_dir(self) -> str:
        assert self.run_id
        return f'"$HOME"/.hpchub/jobs/{self.run_id}'

    @property
    def command_host(self) -> str | None:
        """The login host scheduler commands must run on: any (failover) unless tunnel
        mode ties the job to the login node its API tunnel ends on. The submission host
        is tried first either way (RemoteSpawner.ssh prefers it)."""
        return self.remote_host if self.tunnel else None

    @property
    def requeue(self) -> bool:
        assert self.cell is not None
        return self.settings.batch.requeue

    def job_context(self) -> dict[str, Any]:
        assert self.cell is not None and self.clean_options is not None
        su = self.settings.singleuser
        run_dir = self.run_dir
        return {
            "job_name": job_name(self.run_id),
            "output": f".hpchub/jobs/{self.run_id}.out",
            # A requeued job comes back on another node with a new port while the hub still
            # routes to the old one; sites that want it anyway allow it (poll then follows).
            "directives": self.scheduler.directives(self.clean_options, self.requeue),
            "directive_prefix": self.scheduler.directive_prefix(),
            "modules": self.module_lines(),
            "startup_script": source_line(self.clean_options.startup_script),
            "server_cmd": " ".join(shlex.quote(a) for a in self.server_cmd()),
            "bind_ip": su.ip,
            # Informational: the hub routes to the node the scheduler names, not to what the job says.
            "report_host": '"$(hostname)"',
            "run_dir": run_dir,
            "environment": (
                f'. "$d/{ENV_FILE}" || {{ echo "hpchub: cannot read the server\'s environment" >&2; exit 1; }}'
            ),
            "forward_usr1": FORWARD_USR1,
        }

    def submit_script(self, env: dict[str, str]) -> str:
        """Write the server's environment to a 0600 file in the 0700 run directory, then
        submit the job, which sources that file. The API token never enters the job's
        environment, which the scheduler keeps for the job's lifetime and shows to its owner
        and the admins (Slurm: and slurmdbd stores with AccountingStoreFlags=job_env), nor
        the batch script, nor a command line."""
        context = self.job_context()
        assert self.cell is not None
        job = job_script(
            self.scheduler, self.settings.batch.job_template, context, self.cell.walltime.save_before_seconds
        )
        if context["environment"] not in job:
            raise RuntimeError(
                f"{self.system_name}: {self.scheduler.values_key}.jobTemplate does not use "
                "{{ environment }}, the line that gives the server its hub token and settings; "
                "add it after `d={{ run_dir }}`"
            )
        eof = f"HPCHUB_JOB_{secrets.token_hex(8)}"  # quoted here-docs: no expansion inside
        # whole_script: a script cut short (the hub killed mid-send) must submit nothing.
        return "umask 077\n" + whole_script(
            f"d={self.run_dir}\n"
            'mkdir -p "$d" && chmod 700 "$d" || exit 1\n'
            f"cat > \"$d/{ENV_FILE}\" <<'{eof}'\n{export_lines(env)}\n{eof}\n"
            f"{self.scheduler.submit_command(eof)}\n{job}\n{eof}\n"
        )

    def watch(self, job_id: str | None = None) -> None:
        """Put the job on the system's status board (one query serves every poll), as a
        claim of this user's. ClaimRefused: not a job id, or another user's job."""
        job_id = job_id or self.job_id
        if job_id and self.can_watch:
            self.status_board.watch_job(job_id, self.remote_user, self.credentials_or_open)

    def unwatch(self, job_id: str | None = None) -> None:
        job_id = job_id or self.job_id
        if job_id and self.can_watch:
            self.status_board.unwatch_job(job_id, self.remote_user)

    async def job_status(self, max_age: float | None = None) -> JobStatus:
        """This run's job as the scheduler sees it: the one place the spawner asks (the
        status board answers, one query for every job of the system)."""
        return await self.query(max_age=max_age)

    async def query(self, job_id: str | None = None, max_age: float | None = None) -> JobStatus:
        """The job's status from the board; TransientSchedulerError when the scheduler or SSH did
        not answer. ``max_age`` None: the board's interval (a poll)."""
        job_id = job_id or self.job_id
        assert job_id
        self.watch(job_id)
        st = await self.status_board.job(job_id, self.remote_user, max_age=max_age)
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
                host=self.command_host,
                expired_ok=True,
            )
        except SSHError as e:
            self.log.warning("%s: cannot read the address of job %s: %s", self.system_name, self.job_id, e)
            return None, False
        address = parse_address(self.job_id, r.stdout)
        return address, address is None and f"{MARK}ENDED" in r.stdout.splitlines()

    def report(self, st: JobStatus) -> None:
        """The job's state as a progress event (what the console and /progress show; the
        event carries the queued cell's reason and expected start: server_status)."""
        running = st.state == self.scheduler.running_state
        self._event(self.scheduler.describe(self.system_name, st), 50 if running else 30)

    def note_running(self) -> None:
        """The job runs: phase, the queue-wait metric and the spawn step, once per wait."""
        self.set_phase(Phase.STARTING)
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
            queued = seen is not None and self.scheduler.phase(seen.state) is Phase.QUEUED
            if seen is not None and (not seen.active or (queued and seen.reason)):
                # It ended at once, or it queues (the scheduler gave a reason): no address
                # soon; the loop says why, or shows the queue at the site's pace.
                return None, False, seen
            if seen is not None:
                self.report(seen)  # pending (not looked at by the scheduler yet) or running
                if seen.state == self.scheduler.running_state:
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
                find = self.scheduler.find_script(job_name(self.run_id))
                r = await self.script(find, timeout=30, host=self.command_host, expired_ok=True)
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

    async def how_job_ended(self, st: JobStatus) -> tuple[EndDetails, str]:
        """How the job ended, as its scheduler tells it, and the last lines it wrote: one
        script as the user (the adapter's questions, then the job's output). What the board
        last saw stands in for what cannot be read."""
        assert self.job_id and self.run_id
        seen = EndDetails(state=st.state, reason=st.reason, source="board")
        script = self.scheduler.end_script(self.job_id) + output_section(f".hpchub/jobs/{self.run_id}.out")
        try:
            r = await self.script(script, timeout=30, host=self.command_host, expired_ok=True)
        except SSHError as e:
            self.log.warning(
                "%s: cannot ask how %s job %s ended: %s",
                self.system_name,
                self.scheduler.title,
                self.job_id,
                e,
            )
            return seen, ""
        sections = end_sections(r.stdout)
        output = tail(sections.get("output", ("", 0))[0])
        details = self.scheduler.parse_end(self.job_id, self.remote_user, sections, output)
        return details or seen, output

    def record_job_end(self, details: EndDetails, output: str, cause: str, message: str = "") -> None:
        figures = details.details()
        if message:
            figures["message"] = message
        self.record_end(cause, figures, output)

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
        assert self.clean_options is not None
        self.time_limit = self.clean_options.time_seconds
        self.qos = self.clean_options.qos or ""
        self.job_shape = self.scheduler.job_shape(self.clean_options, self.requeue)
        # Tunnel mode: compute nodes reach the hub API through the login node the job is sent from.
        env = await self.prepare_tunnel(self.remote_env(), host)
        if self.tunnel:
            self.step("tunnel")
        self._timer = metrics.spawn_timer(self.cell, self.backend_name)
        self.job_id = await self.submit(env, host)
        self.step("submit")
        self.set_phase(Phase.QUEUED)  # from here on a hub restart cannot orphan the job
        title = self.scheduler.title
        self.log.info("%s: submitted %s job %s for %s", self.system_name, title, self.job_id, self._log_name)
        self._event(f"{title} job {self.job_id} submitted on {self.system_name}", 20)
        return await self.wait_for_server(None, just_submitted=True)

    async def submit(self, env: dict[str, str], host: str) -> str:
        """Submit; the job id. Never a second submission for one run: when the answer is lost
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
        printed = ""
        if result.ok and result.stdout.strip():
            # What the submission printed came through the user's shell: a claim.
            try:
                return self.scheduler.parse_submitted(self.system_name, result.stdout)
            except ClaimRefused as e:
                printed = e.value
        detail = (result.stderr or result.stdout).strip()[-1000:]
        uncertain = any(u in detail for u in self.scheduler.uncertain_submit_errors)
        found = await self.find_submitted(FIND_SUBMITTED_SECONDS if uncertain else 0)
        if found:
            return found
        metrics.scheduler_error(self.system_name, "submit")
        if printed:
            # Not forgotten: stop() (which JupyterHub calls next) cancels by the run's name
            # whatever was submitted.
            raise RuntimeError(
                f"{self.system_name}: {self.scheduler.submitter} printed {printed} for the job of {self.user.name}, "
                f"which is not a {self.scheduler.title} job id; nothing was started"
            )
        if uncertain:
            # It may still appear: stop() (which JupyterHub calls next) and the reaper watch.
            raise RuntimeError(
                f"{self.system_name}'s scheduler did not answer while your job was submitted ({detail}). "
                "Try again in a few minutes; should the job appear meanwhile, the hub cancels it."
            )
        self.forget_run()  # refused: nothing was submitted, nothing to stop
        raise RuntimeError(
            f"{self.system_name}: {self.scheduler.title} refused the job of {self.user.name}: {detail}"
        )

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
            # The hub died (or gave up) while the submission ran: the name finds the job.
            self.job_id = await self.find_submitted(0)
            if not self.job_id:
                raise RuntimeError(
                    f"{self.system_name}: the hub restarted while your job was being submitted and "
                    "no job was found; start it again"
                )
            self.set_phase(Phase.QUEUED)
        job_id = self.job_id
        try:
            self.watch()
        except ClaimRefused as e:
            self.drop_claim()
            raise RuntimeError(f"{e}; nothing was started") from e
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
                    f"{self.system_name}: {self.scheduler.title} job {job_id} did not start in "
                    f"{self.start_timeout} seconds; "
                    "it was cancelled"
                )
            try:
                if address and seen is not None and seen.state == self.scheduler.running_state and seen.nodes:
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
            if st.state == "FOREIGN":
                # The submission (through the user's shell) named another user's job.
                self.drop_claim()
                raise RuntimeError(f"{self.system_name}: {st.reason}; nothing was started")
            if not st.active:
                details, output = await self.how_job_ended(st)
                shown, why = output, ""
                cause = self.scheduler.end_cause(details)
                if cause in ("exited", "unknown"):
                    cause = "start_failed"  # the server never answered: it could not start
                script = self.clean_options.startup_script if self.clean_options else None
                failed = startup_failure(output) if script else None
                if failed:  # in the words a login node's start uses (SSHSpawner)
                    why = f"the start-up script {script} failed with exit code {failed[0]}; "
                    shown, cause = failed[1], "startup_script"
                    details = replace(details, exit_code=str(failed[0]))
                message = (
                    f"{self.system_name}: {why}{self.scheduler.title} job {job_id} of {self.user.name} ended ({st.state}"
                    + (f", {st.reason}" if st.reason else "")
                    + ") before the server started."
                )
                self.record_job_end(details, output, cause, message)
                raise RuntimeError(message + (f" Last lines of its output:\n{shown}" if shown else ""))
            self.report(st)
            if st.state != self.scheduler.running_state:
                # Queued jobs are checked at the site's pace; the board's one query
                # answers every waiting spawn at once.
                self.set_phase(self.scheduler.phase(st.state) or Phase.STARTING)
                address = None
                await asyncio.sleep(self.poll_seconds)
                continue
            self.note_running()
            # Running: the server is seconds from listening; wait for its address on the
            # login node (one SSH call per few seconds, no job query), then look again.
            if address is None:
                address, ended = await self.wait_address(watch_end=watch_end)
                if ended:
                    watch_end = False
                if address is None:
                    continue
            if not st.nodes:
                address = None
                continue  # running, but the scheduler has not named its node yet
            self.step("server")
            # The host comes from the scheduler (the job's first node, mapped by values); only
            # the port comes from the job's address file, which the job can write anything to.
            self.node, host = self.node_address(st.nodes)
            source = f"{self.scheduler.title} job {job_id}'s address file"
            port = routing.check_port(self.system_name, self.settings.singleuser, address[1], source)
            self.remote_port = port
            self._event(
                f"{self.scheduler.title} job {job_id} is running on {self.node}; server on port {port}", 90
            )
            target = await self._server_tunnel((host, port)) if self.tunnel else (host, port)
            # A Jupyter server for this user's URL prefix must answer there (RouteRefused).
            await self.confirm_route(*target, source)
            self.step("route")
            # Right after a submission start() returns now and JupyterHub stores the state at
            # once (as the SSH backend relies on): a commit here would only delay the route.
            # The adoption after a restart commits it.
            self.set_phase(Phase.RUNNING, save=not just_submitted)
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
        except ClaimRefused as e:
            # A job id kept from before it was checked (a row of 0.1.0), or another user's.
            self.log.warning("%s: %s; %s is not running", self.system_name, e, self._log_name)
            self.drop_claim()
            self.record_end("unknown", {"message": f"{e}; hpchub no longer follows it"})
            return 1
        except TransientSchedulerError as e:
            # Not "job gone" (batchspawner #315): keep the server, try next time.
            self.log.warning(
                "%s: cannot check %s job %s of %s: %s",
                self.system_name,
                self.scheduler.title,
                self.job_id,
                self._log_name,
                e,
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
            "%s: %s job %s of %s ended: %s%s",
            self.system_name,
            self.scheduler.title,
            self.job_id,
            self._log_name,
            st.state,
            f" ({st.reason})" if st.reason else "",
        )
        if not self.end_recorded and not self.stopping_itself:
            # Within this poll: the cell says why before anyone looks (a job hpchub itself
            # cancelled is that stop's, not news).
            details, output = await self.how_job_ended(st)
            self.record_job_end(details, output, self.scheduler.end_cause(details))
        return 1

    async def _follow(self, st: JobStatus) -> int | None:
        """A running server's job changed under it: requeued (and back on a node, with a
        new address), or its tunnel died. Move the route; say so in the log. TunnelLost:
        the notebook's hub-API path cannot be restored safely (the caller stops it)."""
        assert self.cell is not None
        if self.phase != "running":
            return None
        if st.state != self.scheduler.running_state:
            if not self._requeued:
                self.log.warning(
                    "%s: %s job %s of %s was requeued (%s)",
                    self.system_name,
                    self.scheduler.title,
                    self.job_id,
                    self._log_name,
                    st.state,
                )
            self._requeued = True
            return None
        node = self.node_address(st.nodes)[0] if st.nodes else None
        if self._requeued or (self.node and node and node != self.node):
            address, _ = await self.wait_address(seconds=1)
            if address is None or not st.nodes:
                return None
            # As at start: the host from the scheduler, only the port from the address file.
            node, host = self.node_address(st.nodes)
            source = f"{self.scheduler.title} job {self.job_id}'s address file"
            port = routing.check_port(self.system_name, self.settings.singleuser, address[1], source)
            if (node, port) == (self.node, self.remote_port):
                self._requeued = False
                return None
            target = await self._server_tunnel((host, port)) if self.tunnel else (host, port)
            if not await self.answers(*target):
                # Not (yet) this user's Jupyter server there (an old address file, a server
                # still starting, or something else): no route; look again at the next poll.
                return None
            self.log.warning(
                "%s: %s job %s of %s now runs on %s port %s (was %s port %s); moving the route",
                self.system_name,
                self.scheduler.title,
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
            if st.state != self.scheduler.running_state:
                return None
            nodes = st.nodes
        except TransientSchedulerError as e:
            self.log.warning(
                "%s: cannot check %s job %s now (%s); asking its server",
                self.system_name,
                self.scheduler.title,
                self.job_id,
                e,
            )
        assert self.cell is not None
        # The host from the scheduler (the node saved at start came from it, never the job).
        node, host = self.node_address(nodes or self.node)
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

    def drop_claim(self) -> None:
        """Forget a job id that is not this user's job (or not a job id): stop() then
        cancels only what carries this run's name."""
        self.unwatch()
        self.job_id = None
        self.job_info = {}
        self.save_state_now()

    async def stop_remote(self, now: bool) -> bool:
        if not self.job_id and not self.run_id:
            return True
        deadline = time.monotonic() + self.stop_confirm_seconds
        # Without a job id, the submission may still be creating the job: look again for a while.
        settle = time.monotonic() + (0 if self.job_id else FIND_SUBMITTED_SECONDS)
        while True:
            try:
                gone = await cancel_run(
                    self.ops,
                    self.scheduler,
                    self.run_id,
                    self.job_id,
                    host=self.command_host,
                    prefer=self.remote_host,
                )
                if gone and time.monotonic() >= settle:
                    self.unwatch()
                    return True
            except TransientSchedulerError as e:
                metrics.scheduler_error(self.system_name, "cancel")
                self.log.warning(
                    "%s: cannot cancel %s job %s of %s yet: %s",
                    self.system_name,
                    self.scheduler.title,
                    self.job_id or job_name(self.run_id or ""),
                    self._log_name,
                    e,
                )
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(1)

    def stopped_text(self) -> str:
        job = self.job_id or job_name(self.run_id or "")
        return f"{self.system_name}: {self.scheduler.title} job {job} of {self._log_name} cancelled"

    def reaper_row(self, reason: str) -> Any:
        row = super().reaper_row(reason)
        row.job_id = self.job_id
        return row

    def server_status(self) -> ServerStatus:
        """The run, with what the board last said of its job (job_view); its time limit is
        the one in state, extensions included."""
        status = job_view(self.scheduler, super().server_status(), self.job_info, self.time_limit)
        return replace(status, qos=self.qos, job_shape=self.job_shape)

    async def extend(self, seconds: Any) -> None:
        """Raise this run's job's time limit by ``seconds``, within the cap
        (hpchub.walltime.check_extend), as the site's extend account. The job is this
        run's own (state), never one named by a request. ExtendRefused with the reason."""
        async with self._extend_lock:  # two requests at once must not both pass the cap
            status = status_of(self)
            new_limit = check_extend(extend_offer(self.cell, status), status, seconds)
            if not self.job_id or not self.run_id or self.job_shape is None:
                raise ExtendRefused(409, "This server's job is not known yet; try again in a moment.")
            minutes = -(-new_limit // 60)
            try:
                await extend_job(
                    self.system_name,
                    self.target,
                    self.settings.extend,
                    self.ssh_ca,
                    self.remote_user,
                    self.job_id,
                    minutes,
                    job_name(self.run_id),
                    self.job_shape,
                    timeout=self.ssh_command_timeout,
                )
            except SSHError as e:
                raise ExtendRefused(
                    503, f"{self.system_name} cannot be reached to extend your job: {e}"
                ) from e
            except (ExtendJobRefused, ValueError) as e:
                # The job is not the one the hub submitted (or the request could not be made):
                # the login node's (or the hub's) reason, for the user.
                self.log.warning("%s: %s of %s", self.system_name, e, self._log_name)
                raise ExtendRefused(409, str(e)) from e
            except RuntimeError as e:
                self.log.error("%s", claims.shown(str(e), claims.MAX_LOGGED))
                raise ExtendRefused(502, str(e)) from e
            self.time_limit = minutes * 60
            self.save_state_now()
        self.log.info(
            "%s: %s job %s of %s extended by %s to a time limit of %s min",
            self.system_name,
            self.scheduler.title,
            self.job_id,
            self._log_name,
            minutes_text(int(seconds)),
            minutes,
        )

    def node_address(self, nodes: str) -> tuple[str, str]:
        """(node, address) the proxy uses for a job's node list (hpchub.routing)."""
        batch = self.settings.batch
        return routing.node_address(
            self.system_name,
            nodes,
            pattern=batch.node_pattern,
            template=batch.node_address,
            first_host=self.scheduler.first_host,
            key=self.scheduler.values_key,
        )

    def forget_run(self) -> None:
        self.unwatch()
        super().forget_run()
        self.job_id = None
        self.node = None
        self.remote_port = None
        self.qos = ""
        self.job_shape = None

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.qos = str(state.get("qos") or "")
        # None in the state of a server an earlier hub started: Extend says to restart it.
        self.job_shape = JobShape.from_state(state.get("job_shape"))
        self.job_id = state.get("job_id")
        self.node = state.get("node")
        self.remote_port = state.get("port")
        try:
            self.watch()  # before the hub's start-up checks: their polls share one refresh
        except ClaimRefused as e:
            self.log.warning("%s: %s (kept in %s's state); poll ends it", self.system_name, e, self._log_name)

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.job_id:
            state.update(job_id=self.job_id, backend=self.backend_name)
            if self.run_id:
                state["run_id"] = self.run_id
            if self.node:
                state["node"] = self.node
            if self.remote_port:
                state["port"] = self.remote_port
        if self.qos and self.run_id:
            state["qos"] = self.qos
        if self.job_shape and self.run_id:
            state["job_shape"] = self.job_shape.to_state()
        return state


class SlurmSpawner(BatchSpawner):
    """A notebook as a Slurm job (the scheduler adapter: hpchub/schedulers/slurm.py)."""

    scheduler_name = "slurm"


_SPAWNERS: dict[str, type[BatchSpawner]] = {"slurm": SlurmSpawner}


def spawner_for(scheduler: str) -> type[BatchSpawner]:
    """The spawner class of a scheduler adapter: SlurmSpawner for Slurm; for an adapter
    without a class of its own, one made here and named after it (``PbsSpawner``), so a
    site configures it by name as it does ``c.SlurmSpawner``."""
    if scheduler not in _SPAWNERS:
        name = f"{SCHEDULERS[scheduler].title.capitalize()}Spawner"
        _SPAWNERS[scheduler] = type(name, (BatchSpawner,), {"scheduler_name": scheduler})
    return _SPAWNERS[scheduler]
