"""The status board: what every Slurm job and login-node process the hub knows is doing,
with one scheduler query and one process listing per login node per interval.

Spawners never ask the scheduler or a login node about their own server in ``poll()`` or
while a job queues: they ``watch`` it here and read ``job()`` / ``process()``. A cached row
younger than ``max_age`` is returned at once; otherwise the caller waits for the next
refresh, which one caller starts and every other caller shares (one refresh in flight per
kind). So 1,000 running servers cost the scheduler what one costs.

Who runs the queries (docs/design/state-and-status.md, section 4):

- ``status.user`` set: a site service account with a certificate from the hub's CA runs
  one ``squeue`` for all jobs and one ``ps`` per login node for all processes. Its shell
  start-up files are the site's, so its output is believed; each row must still name the
  user the hub expects (``%u`` / ``euser``), so a job id or PID a user's shell reported at
  start can never make another user's job or process look like theirs.
- not set: one query per user per interval through that user's own pooled connection,
  covering only that user's jobs and processes. A user's shell may print anything, but
  it is only ever asked about that user's own servers.

A failed refresh (slurmctld down, SSH trouble) is an error for the rows it covered, never
"gone" (batchspawner #315); a job is ``GONE`` only when the scheduler answered and neither
``squeue`` nor ``sacct`` knows it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import metrics
from .ssh import Result, SSHError, SSHPool, SSHTarget
from .sshca import UserCredentials

log = logging.getLogger("hpchub.status")

ACTIVE = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "SUSPENDED",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
        "RESV_DEL_HOLD",
    }
)
# Ending: not gone yet (stop waits for it), but the server is no longer usable.
ENDING = frozenset({"COMPLETING"})

# %u before nothing user-controlled: the job name (%j) and comment are left out on purpose,
# a user could put a newline and a forged line for another job in them.
SQUEUE_FORMAT = "%i|%T|%r|%S|%N|%u"
MIN_GAP_SECONDS = 1.0  # refreshes of one kind never start closer together than this
PER_USER_CONCURRENCY = 8  # per-user mode: user queries run at most this many at once


class TransientSchedulerError(RuntimeError):
    """slurmctld (or the login node) did not answer; the job's fate is unknown."""


class TransientProcessError(RuntimeError):
    """The login node did not answer; the process's fate is unknown."""


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    state: str  # Slurm state; "GONE" when neither squeue nor sacct know it
    reason: str = ""
    expected_start: str = ""
    nodes: str = ""
    address: tuple[str, int] | None = None  # filled in by the spawner, never by the board
    user: str = ""

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def gone(self) -> bool:
        return not self.active and self.state not in ENDING


@dataclass(frozen=True)
class ProcessStatus:
    pid: int
    alive: bool
    start: str = ""  # `ps -o lstart=` in the C locale, as the launcher recorded it
    user: str = ""


CredentialsFn = Callable[[], Awaitable[UserCredentials | None]]


@dataclass
class _Row:
    time: float  # monotonic start of the refresh that wrote it
    value: Any = None
    error: str | None = None


@dataclass
class _Kind:
    """Refresh bookkeeping of one kind (jobs, or the processes of one login host)."""

    rows: dict[Any, _Row] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    last_start: float = -1e9
    refreshes: int = 0


def parse_squeue_rows(stdout: str, asked: Iterable[str]) -> dict[str, JobStatus]:
    """Rows of ``squeue -o SQUEUE_FORMAT`` for the ids asked; everything else is ignored
    (a login banner, a shell's chatter, lines about jobs nobody asked for)."""
    wanted = set(asked)
    out: dict[str, JobStatus] = {}
    for line in stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 6 or fields[0] not in wanted:
            continue
        job_id, state, reason, start, nodes, user = fields
        if job_id in out:
            # The same id twice: someone is forging lines. Believe neither.
            out[job_id] = JobStatus(job_id, "UNKNOWN", "conflicting squeue lines", user="")
            wanted.discard(job_id)
            continue
        out[job_id] = JobStatus(
            job_id,
            state.split()[0] if state else "UNKNOWN",
            reason if reason not in ("None", "(null)") else "",
            start if start not in ("N/A", "Unknown", "None") else "",
            nodes if nodes not in ("(null)",) else "",
            user=user,
        )
    return out


def parse_sacct_rows(stdout: str, asked: Iterable[str]) -> dict[str, JobStatus]:
    """``sacct -X -n -P -o JobID,State,Reason,User`` rows for the ids asked."""
    wanted = set(asked)
    out: dict[str, JobStatus] = {}
    for line in stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 4 or fields[0] not in wanted:
            continue
        job_id, state, reason, user = fields
        # "CANCELLED by 1234" -> CANCELLED
        out[job_id] = JobStatus(job_id, state.split()[0] if state else "UNKNOWN", reason, user=user)
    return out


def parse_ps_rows(stdout: str, asked: Iterable[int]) -> dict[int, ProcessStatus]:
    """``ps -o pid=,euser:64=,lstart=`` rows (C locale) for the PIDs asked."""
    wanted = set(asked)
    out: dict[int, ProcessStatus] = {}
    for line in stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) != 3 or not parts[0].isdigit() or int(parts[0]) not in wanted:
            continue
        pid = int(parts[0])
        out[pid] = ProcessStatus(pid, True, " ".join(parts[2].split()), parts[1])
    return out


def squeue_argv(job_ids: Sequence[str]) -> list[str]:
    return ["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", SQUEUE_FORMAT]


def sacct_argv(job_ids: Sequence[str]) -> list[str]:
    return ["sacct", "-X", "-n", "-P", "-j", ",".join(job_ids), "-o", "JobID,State,Reason,User"]


def ps_argv(pids: Sequence[int]) -> list[str]:
    # The C locale makes lstart one fixed format ("Tue Nov 24 10:00:00 2026") everywhere.
    return ["env", "LC_ALL=C", "ps", "-o", "pid=,euser:64=,lstart=", "-p", ",".join(str(p) for p in pids)]


def jittered(interval: float, fraction: float = 0.2) -> float:
    return interval * (1 + random.uniform(-fraction, fraction))


class StatusBoard:
    """One system's coalesced job and process status."""

    def __init__(
        self,
        system: str,
        target: SSHTarget,
        pool: SSHPool,
        *,
        interval: float = 30.0,
        service_user: str | None = None,
        service_credentials: CredentialsFn | None = None,
        min_gap: float = MIN_GAP_SECONDS,
    ) -> None:
        self.system = system
        self.target = target
        self.pool = pool
        self.interval = float(interval)
        self.service_user = service_user
        self._service_credentials = service_credentials
        self.min_gap = min_gap
        # Watched: job id -> user; (host label, pid) -> (pid start, user)
        self._jobs: dict[str, str] = {}
        self._procs: dict[tuple[str, int], tuple[str | None, str]] = {}
        self._creds: dict[str, CredentialsFn] = {}
        self._job_kind = _Kind()
        self._proc_kinds: dict[str, _Kind] = {}
        self.queries = 0  # remote commands run, for tests and benchmarks

    # --- watching ----------------------------------------------------------------
    def watch_job(self, job_id: str, user: str, credentials: CredentialsFn | None = None) -> None:
        self._jobs[str(job_id)] = user
        if credentials is not None:
            self._creds[user] = credentials

    def unwatch_job(self, job_id: str) -> None:
        user = self._jobs.pop(str(job_id), None)
        self._job_kind.rows.pop(str(job_id), None)
        self._forget_user(user)

    def watch_process(
        self,
        host: str,
        pid: int,
        pid_start: str | None,
        user: str,
        credentials: CredentialsFn | None = None,
    ) -> None:
        self._procs[(host, int(pid))] = (pid_start, user)
        if credentials is not None:
            self._creds[user] = credentials

    def unwatch_process(self, host: str, pid: int) -> None:
        entry = self._procs.pop((host, int(pid)), None)
        kind = self._proc_kinds.get(host)
        if kind is not None:
            kind.rows.pop(int(pid), None)
            if not any(h == host for h, _ in self._procs):
                self._proc_kinds.pop(host, None)
        self._forget_user(entry[1] if entry else None)

    def _forget_user(self, user: str | None) -> None:
        # The credentials map holds only users with something watched (bounded).
        if user is None:
            return
        if user not in self._jobs.values() and all(u != user for _, u in self._procs.values()):
            self._creds.pop(user, None)

    @property
    def watched(self) -> tuple[int, int]:
        return len(self._jobs), len(self._procs)

    # --- reading -----------------------------------------------------------------
    async def job(self, job_id: str, max_age: float | None = None) -> JobStatus:
        """The job's status, at most ``max_age`` seconds old (default: the interval).

        Raises TransientSchedulerError when the refresh that should have answered failed.
        """
        job_id = str(job_id)
        if job_id not in self._jobs:
            raise KeyError(f"job {job_id} is not watched on {self.system}")
        value = await self._read(self._job_kind, job_id, max_age, self._refresh_jobs)
        if value is None:
            raise TransientSchedulerError(f"{self.system}: job {job_id} is no longer watched")
        return value

    async def process(self, host: str, pid: int, max_age: float | None = None) -> ProcessStatus:
        """Whether the watched process still runs (same PID, start time and owner)."""
        key = (host, int(pid))
        if key not in self._procs:
            raise KeyError(f"process {pid} on {host} is not watched on {self.system}")
        kind = self._proc_kinds.setdefault(host, _Kind())

        async def refresh() -> None:
            await self._refresh_processes(host, kind)

        value = await self._read(kind, int(pid), max_age, refresh, TransientProcessError)
        if value is None:
            raise TransientProcessError(f"{self.system}: process {pid} on {host} is no longer watched")
        return value

    async def _read(
        self,
        kind: _Kind,
        key: Any,
        max_age: float | None,
        refresh: Callable[[], Awaitable[None]],
        error: type[Exception] = TransientSchedulerError,
    ) -> Any:
        asked = time.monotonic()
        since = asked - (self.interval if max_age is None else max_age)
        for _ in range(3):
            row = kind.rows.get(key)
            if row is not None and row.time >= since:
                if row.error is not None:
                    raise error(row.error)
                return row.value
            if kind.task is None or kind.task.done():
                kind.task = asyncio.ensure_future(self._run(kind, refresh))
            # shield: one waiter giving up (its own timeout) must not cancel the others'.
            await asyncio.shield(kind.task)
        row = kind.rows.get(key)
        if row is None:
            return None
        if row.error is not None:
            raise error(row.error)
        return row.value

    async def _run(self, kind: _Kind, refresh: Callable[[], Awaitable[None]]) -> None:
        wait = kind.last_start + self.min_gap - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        kind.last_start = time.monotonic()
        kind.refreshes += 1
        try:
            await refresh()
        except Exception as e:  # noqa: BLE001 - a refresh failure is data for the waiters
            log.warning("%s: status refresh failed: %s", self.system, e)

    # --- refreshing --------------------------------------------------------------
    async def _service_creds(self) -> UserCredentials | None:
        assert self._service_credentials is not None
        return await self._service_credentials()

    async def _as(
        self, user: str, argv: Sequence[str], host: str | None = None, timeout: float = 60
    ) -> Result:
        """Run argv as the service account (when configured) or as ``user``."""
        self.queries += 1
        if self.service_user:
            creds = await self._service_creds()
            return await self.pool.run(
                self.target, self.service_user, creds, argv, timeout=timeout, host=host
            )
        provider = self._creds.get(user)
        creds = None
        if provider is not None:
            try:
                creds = await provider()
            except SSHError as e:
                # Expired credentials never block a poll: an open connection still serves.
                log.info(
                    "%s: no fresh credentials for %s (%s); using an open connection", self.system, user, e
                )
        return await self.pool.run(self.target, user, creds, argv, timeout=timeout, host=host)

    async def _refresh_jobs(self) -> None:
        kind = self._job_kind
        started = kind.last_start
        by_user: dict[str, list[str]] = {}
        for job_id, user in self._jobs.items():
            by_user.setdefault(user, []).append(job_id)
        if not by_user:
            return
        if self.service_user:
            groups = [(self.service_user, sorted(self._jobs, key=_id_key))]
        else:
            groups = [(u, sorted(ids, key=_id_key)) for u, ids in by_user.items()]
        limit = asyncio.Semaphore(PER_USER_CONCURRENCY)

        async def one(runner: str, ids: list[str]) -> None:
            async with limit:
                try:
                    rows = await self._query_jobs(runner, ids)
                except (SSHError, TransientSchedulerError, OSError) as e:
                    metrics.scheduler_error(self.system, "query")
                    for job_id in ids:
                        if job_id in self._jobs:  # not unwatched meanwhile
                            kind.rows[job_id] = _Row(started, error=str(e))
                    return
            for job_id in ids:
                st = rows[job_id]
                expected = self._jobs.get(job_id)
                if expected is None:
                    continue  # unwatched while the query ran: no row to keep
                if st.user and expected and st.user != expected:
                    # A job id that is not this user's (a start reported someone else's).
                    st = JobStatus(job_id, "FOREIGN", f"job {job_id} belongs to {st.user}", user=st.user)
                kind.rows[job_id] = _Row(started, st)

        await asyncio.gather(*(one(r, ids) for r, ids in groups))

    async def _query_jobs(self, runner: str, ids: list[str]) -> dict[str, JobStatus]:
        r = await self._as(runner, squeue_argv(ids))
        text = (r.stdout + r.stderr).strip()
        if not r.ok:
            # One id that slurmctld purged: squeue says "Invalid job id" (exit 1); with a
            # list it just leaves the id out. Anything else: the scheduler did not answer.
            if "Invalid job id" not in text:
                raise TransientSchedulerError(f"{self.system}: squeue failed: {text[-300:] or r.exit_status}")
            found: dict[str, JobStatus] = {}
        else:
            found = parse_squeue_rows(r.stdout, ids)
        missing = [i for i in ids if i not in found]
        if missing:
            # Purged from slurmctld's memory: accounting may still know how it ended.
            try:
                a = await self._as(runner, sacct_argv(missing))
                acct = parse_sacct_rows(a.stdout, missing) if a.ok else {}
            except SSHError:
                acct = {}
            for job_id in missing:
                found[job_id] = acct.get(job_id) or JobStatus(job_id, "GONE")
        return found

    async def _refresh_processes(self, host: str, kind: _Kind) -> None:
        started = kind.last_start
        watched = {pid: v for (h, pid), v in self._procs.items() if h == host}
        if not watched:
            return
        if self.service_user:
            groups = [(self.service_user, sorted(watched))]
        else:
            by_user: dict[str, list[int]] = {}
            for pid, (_, user) in watched.items():
                by_user.setdefault(user, []).append(pid)
            groups = [(u, sorted(p)) for u, p in by_user.items()]
        limit = asyncio.Semaphore(PER_USER_CONCURRENCY)

        async def one(runner: str, pids: list[int]) -> None:
            async with limit:
                try:
                    r = await self._as(runner, ps_argv(pids), host=host)
                except (SSHError, OSError) as e:
                    for pid in pids:
                        kind.rows[pid] = _Row(started, error=str(e))
                    return
            # ps exits 1 when none of the PIDs exists; it still answered.
            if r.exit_status not in (0, 1):
                err = f"{self.system}: ps failed on {host}: {(r.stderr or r.stdout).strip()[-300:]}"
                for pid in pids:
                    kind.rows[pid] = _Row(started, error=err)
                return
            rows = parse_ps_rows(r.stdout, pids)
            for pid in pids:
                if (host, pid) not in self._procs:
                    continue  # unwatched while ps ran
                start, user = watched[pid]
                seen = rows.get(pid)
                alive = (
                    seen is not None
                    and seen.user == user
                    and (start is None or " ".join(start.split()) == seen.start)
                )
                kind.rows[pid] = _Row(
                    started, ProcessStatus(pid, alive, seen.start if seen else "", seen.user if seen else "")
                )

        await asyncio.gather(*(one(r, p) for r, p in groups))


def _id_key(job_id: str) -> tuple[int, str]:
    return (int(job_id), job_id) if job_id.isdigit() else (1 << 62, job_id)


# --- one board per system per hub process -----------------------------------------
_boards: dict[str, tuple[Any, StatusBoard]] = {}


def board_for(
    system_key: str,
    target: SSHTarget,
    pool: SSHPool,
    status: Mapping[str, Any] | None,
    service_credentials: CredentialsFn | None,
) -> StatusBoard:
    """The board of one system (made on first use; the same object for every spawner)."""
    status = dict(status or {})
    signature = (target, tuple(sorted((k, repr(v)) for k, v in status.items())))
    known = _boards.get(system_key)
    if known is not None and known[0] == signature:
        return known[1]
    board = StatusBoard(
        target.system,
        target,
        pool,
        interval=float(status.get("intervalSeconds", 30)),
        service_user=str(status["user"]) if status.get("user") else None,
        service_credentials=service_credentials,
    )
    if known is not None:
        # Values changed under a running hub (tests): carry the watch lists over.
        board._jobs.update(known[1]._jobs)
        board._procs.update(known[1]._procs)
        board._creds.update(known[1]._creds)
    _boards[system_key] = (signature, board)
    return board
