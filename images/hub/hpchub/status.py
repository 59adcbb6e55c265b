"""The status board: what every batch job and login-node process the hub knows is doing,
with one scheduler query and one process listing per login node per interval.

Spawners never ask the scheduler or a login node about their own server in ``poll()`` or
while a job queues: they ``watch`` it here and read ``job()`` / ``process()``. A cached row
younger than ``max_age`` is returned at once; otherwise the caller waits for the next
refresh of its *scope*, which one caller starts and every other caller of that scope
shares. So 1,000 running servers cost the scheduler what one costs.

Why one generic board with thin adapters (kubespawner keeps one reflector per resource
kind the same way): schedulers have no watch API, so status is pulled — once, for many
readers, never reading an error as "gone". What differs per source is only the command and
how to read its answer: the job adapter is the system's scheduler (hpchub.schedulers: query,
accounting, "unknown id"), the process adapter is ``ps`` (below). The cache, the scopes,
the claims and the rules of belief are written once, here.

What is watched is a **claim**: a job id or PID that a user's shell printed at start
(hpchub/claims.py parses it), watched under (id, owner). Two users claiming one id are two
watches, and neither can change the other's row:

- ``status.user`` set: a site service account with a certificate from the hub's CA runs
  one job query (``squeue``) for all jobs (scope: the system) and one ``ps`` per login node (scope: the
  host). Its shell start-up files are the site's, so its output is believed; a row is
  served to an owner only when it names that owner (``%u`` / ``euser``). A row naming
  someone else is ``FOREIGN`` for the claimer, never shared, and once a job or process is
  confirmed as one user's, another user's claim of it is refused at once (ClaimRefused).
- not set: each owner is a scope of their own: one query per owner per interval through
  that owner's own connection, covering only their jobs and processes. Their shell may
  print anything, but what it prints is only ever read for them; a slow or failing shell
  delays and fails only them: their queries (a split of a refused list included) hold at
  most PER_USER_SLOTS of the board's PER_USER_CONCURRENCY slots at once. A claim is never refused because another user's shell said
  an id is theirs (that would let one user's shell block another's job).

A row whose owner field is empty, a line printed twice, a state word the board does not
know, a ``ps`` that failed: none of these is believed, and none is ever read as "gone"
(batchspawner #315) — the reader gets a transient error. A job is ``GONE`` only when the
scheduler answered and neither its query nor its accounting (``squeue``, ``sacct``) knows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from . import claims, metrics
from .claims import ClaimRefused
from .schedulers import SCHEDULERS
from .schedulers.base import UNKNOWN, JobStatus, Scheduler, TransientSchedulerError, gone
from .settings import StatusSettings
from .sshca import UserCredentials
from .sshpool import Result, SSHError, SSHPool, SSHTarget

log = logging.getLogger("hpchub.status")

MIN_GAP_SECONDS = 1.0  # refreshes of one scope never start closer together than this
PER_USER_CONCURRENCY = 8  # per-user mode: user queries run at most this many at once
# ... of which one user's hold at most this many: her shell that sleeps (up to the query
# timeout, for every leaf of a split) keeps her own queries waiting, never the others'.
PER_USER_SLOTS = 1
QUERY_TIMEOUT = 60.0  # one status command; a user's slow shell costs only that user this
# Ids (job ids, PIDs) per query: its command line stays far below Linux's 128 KiB per
# argument and within the status command's own caps (config/login-node/hpchub-status-command:
# at most 10,000 numbers in a request of at most 128 KiB), however many servers run.
MAX_IDS_PER_QUERY = 2000
# Login-node processes one owner may have watched on a system: a server watches its own
# PID and its hub-API relay's, and the grid bounds a user's servers; a shell that prints
# PID after PID cannot grow the board (or the status account's ps) past this.
MAX_PROCESSES_PER_OWNER = 64


class TransientProcessError(RuntimeError):
    """The login node did not answer (or not believably); the process's fate is unknown."""


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
class _Scope:
    """Refresh bookkeeping of one scope: the jobs of a system (or of one owner), the
    processes of one login host (or of one owner there)."""

    task: asyncio.Task[None] | None = None
    last_start: float = -1e9
    refreshes: int = 0


# --- parsers: text a login node printed -> bounded values -------------------------------


# Candidate lines of ps, found at C speed (re.M). The blanks before the start time are
# taken whole (possessive: never given back, so a long run of them is read once, not once
# per character a start time could begin at). A line ending in two or more blanks after
# the user is a candidate with an empty start time (which claims.pid_start refuses).
_PS_LINE = re.compile(
    r"^[ \t]*([0-9]{1,8})[ \t]+([^ \t\n]{1,64})[ \t]++([^ \t\n][^\n]{0,63}|(?<=[ \t]{2}))$", re.M
)


def candidate_cap(asked: int) -> int:
    """Most candidate lines an honest answer about ``asked`` processes can have (one each,
    and some slack for a banner that happens to look like one)."""
    return 2 * asked + 16


class Unbelievable(ValueError):
    """An answer with more candidate lines than any honest one (ps: the refusal type)."""


def parse_ps_rows(stdout: str, asked: Iterable[int]) -> dict[int, ProcessStatus | None]:
    """``ps -o pid=,euser:64=,lstart=`` rows (C locale) for the PIDs asked. A PID printed
    twice maps to None (forged lines: believe neither). Unbelievable: more candidate lines
    than any honest ``ps`` prints."""
    wanted = set(asked)
    out: dict[int, ProcessStatus | None] = {}
    for n, m in enumerate(_PS_LINE.finditer(stdout)):
        if n >= candidate_cap(len(wanted)):
            raise Unbelievable(f"more ps lines than processes asked about ({n})")
        pid = int(m.group(1))
        if pid not in wanted:
            continue
        if pid in out:
            out[pid] = None
            continue
        try:
            start = claims.pid_start("ps", m.group(3))
        except ClaimRefused:
            start = ""
        out[pid] = ProcessStatus(pid, True, start, claims.account(m.group(2)))
    return out


def ps_answer(result: Result, pids: Sequence[int]) -> dict[int, ProcessStatus | None]:
    """What ``ps -p <pids>`` said, told apart: some found (exit 0), none found (exit 1 with
    nothing on stdout or stderr), or an error (anything else, e.g. "process ID out of
    range" or a usage message, also exit 1): TransientProcessError, never "none alive"."""
    if result.exit_status == 0:
        try:
            return parse_ps_rows(result.stdout, pids)
        except Unbelievable as e:
            raise TransientProcessError(f"ps answer not believed: {e}") from e
    if result.exit_status == 1 and not result.stdout.strip() and not result.stderr.strip():
        return {}
    detail = (result.stderr or result.stdout)[-300:].strip() or f"exit status {result.exit_status}"
    raise TransientProcessError(f"ps failed: {claims.text(detail, 300)}")


def ps_argv(pids: Sequence[int]) -> list[str]:
    # The C locale makes lstart one fixed format ("Tue Nov 24 10:00:00 2026") everywhere.
    return ["env", "LC_ALL=C", "ps", "-o", "pid=,euser:64=,lstart=", "-p", ",".join(str(p) for p in pids)]


_NOT_WATCHED = object()


def jittered(interval: float, fraction: float = 0.2) -> float:
    return interval * (1 + random.uniform(-fraction, fraction))


def _job_key(job_id: str) -> int:
    return int(job_id)  # ids are validated (hpchub/claims.py) before they are watched


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
        query_timeout: float = QUERY_TIMEOUT,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.system = system
        # The job adapter (hpchub.schedulers); the process adapter is ps, below.
        self.scheduler: Scheduler = scheduler or SCHEDULERS["slurm"]
        self.target = target
        self.pool = pool
        self.interval = float(interval)
        self.service_user = service_user
        self._service_credentials = service_credentials
        self.min_gap = min_gap
        self.query_timeout = query_timeout
        # Watched claims: (job id, owner); (host label, pid, owner) -> pid start.
        self._jobs: set[tuple[str, str]] = set()
        self._procs: dict[tuple[str, int, str], str | None] = {}
        # Indexes of _procs: owner -> how many are theirs; (host, pid) -> who claims it.
        self._procs_of: dict[str, int] = {}
        self._claimants: dict[tuple[str, int], set[str]] = {}
        self._creds: dict[str, CredentialsFn] = {}
        self._rows: dict[tuple[Any, ...], _Row] = {}
        self._scopes: dict[tuple[str, ...], _Scope] = {}
        self._limit = asyncio.Semaphore(PER_USER_CONCURRENCY)
        # Per-user mode: each runner's own slots, taken before the board's; held only while
        # a query of theirs runs or waits (bounded by the queries in flight).
        self._slots: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}
        self.queries = 0  # remote commands run, for tests and benchmarks

    # --- scopes: which watches one query answers -----------------------------------
    def _job_scope(self, owner: str) -> tuple[str, ...]:
        return ("jobs",) if self.service_user else ("jobs", owner)

    def _proc_scope(self, host: str, owner: str) -> tuple[str, ...]:
        return ("ps", host) if self.service_user else ("ps", host, owner)

    def _scope(self, key: tuple[str, ...]) -> _Scope:
        return self._scopes.setdefault(key, _Scope())

    # --- watching ----------------------------------------------------------------
    def watch_job(self, job_id: str, owner: str, credentials: CredentialsFn | None = None) -> None:
        """Watch a job id that ``owner``'s shell reported. ClaimRefused: not a job id, or
        (status account) a job already confirmed as another user's."""
        job_id = claims.job_id(self.system, job_id)
        if (job_id, owner) not in self._jobs and self.service_user:
            for other in self._owners_of_job(job_id):
                row = self._rows.get(("job", job_id, other))
                value = row.value if row is not None else None
                if other != owner and isinstance(value, JobStatus) and value.user == other:
                    raise ClaimRefused(self.system, "Slurm job", job_id, f"Slurm job {job_id} is not yours")
        self._jobs.add((job_id, owner))
        if credentials is not None:
            self._creds[owner] = credentials

    def _owners_of_job(self, job_id: str) -> list[str]:
        return [o for j, o in self._jobs if j == job_id]

    def unwatch_job(self, job_id: str, owner: str) -> None:
        self._jobs.discard((str(job_id), owner))
        self._rows.pop(("job", str(job_id), owner), None)
        self._forget_user(owner)

    def watch_process(
        self,
        host: str,
        pid: int | str,
        pid_start: str | None,
        owner: str,
        credentials: CredentialsFn | None = None,
    ) -> None:
        """Watch a login-node process that ``owner``'s shell reported. ClaimRefused: not a
        PID, more than MAX_PROCESSES_PER_OWNER of the owner's, or (status account) a process
        already confirmed as another user's."""
        pid = claims.pid(self.system, pid)
        start = claims.pid_start(self.system, pid_start) if pid_start else None
        key = (host, pid, owner)
        if key not in self._procs:
            if self._procs_of.get(owner, 0) >= MAX_PROCESSES_PER_OWNER:
                raise ClaimRefused(
                    self.system,
                    "process id",
                    pid,
                    f"{MAX_PROCESSES_PER_OWNER} processes of {owner} are watched already; "
                    f"process {pid} on {host} is not",
                )
            if self.service_user:
                for other in self._claimants.get((host, pid), ()):
                    row = self._rows.get(("ps", host, pid, other))
                    value = row.value if row is not None else None
                    if other != owner and isinstance(value, ProcessStatus) and value.alive:
                        raise ClaimRefused(
                            self.system, "process id", pid, f"process {pid} on {host} is not yours"
                        )
            self._procs_of[owner] = self._procs_of.get(owner, 0) + 1
            self._claimants.setdefault((host, pid), set()).add(owner)
        self._procs[key] = start
        if credentials is not None:
            self._creds[owner] = credentials

    def unwatch_process(self, host: str, pid: int, owner: str) -> None:
        pid = int(pid)
        if self._procs.pop((host, pid, owner), _NOT_WATCHED) is not _NOT_WATCHED:
            self._procs_of[owner] -= 1
            if not self._procs_of[owner]:
                del self._procs_of[owner]
            claimants = self._claimants[(host, pid)]
            claimants.discard(owner)
            if not claimants:
                del self._claimants[(host, pid)]
        self._rows.pop(("ps", host, pid, owner), None)
        self._forget_user(owner)

    def _forget_user(self, owner: str) -> None:
        # Credentials and per-owner scopes are held only while something is watched (bounded).
        if owner in self._procs_of or any(o == owner for _, o in self._jobs):
            return
        self._creds.pop(owner, None)
        if not self.service_user:
            for key in [k for k in self._scopes if k[-1] == owner and k[0] in ("jobs", "ps")]:
                scope = self._scopes[key]
                if scope.task is None or scope.task.done():
                    del self._scopes[key]

    @property
    def watched(self) -> tuple[int, int]:
        return len(self._jobs), len(self._procs)

    # --- reading -----------------------------------------------------------------
    async def job(self, job_id: str, owner: str, max_age: float | None = None) -> JobStatus:
        """The job as the scheduler sees it *for this owner*, at most ``max_age`` seconds
        old (default: the interval). Raises TransientSchedulerError when the refresh that
        should have answered failed or could not be believed."""
        job_id = str(job_id)
        if (job_id, owner) not in self._jobs:
            raise KeyError(f"job {job_id} of {owner} is not watched on {self.system}")
        scope_key = self._job_scope(owner)

        async def refresh() -> None:
            await self._refresh_jobs(scope_key)

        value = await self._read(scope_key, ("job", job_id, owner), max_age, refresh, TransientSchedulerError)
        if value is None:
            raise TransientSchedulerError(f"{self.system}: job {job_id} is no longer watched")
        return value

    async def process(self, host: str, pid: int, owner: str, max_age: float | None = None) -> ProcessStatus:
        """Whether the watched process still runs (same PID, start time and owner)."""
        key = (host, int(pid), owner)
        if key not in self._procs:
            raise KeyError(f"process {pid} of {owner} on {host} is not watched on {self.system}")
        scope_key = self._proc_scope(host, owner)

        async def refresh() -> None:
            await self._refresh_processes(scope_key, host)

        value = await self._read(
            scope_key, ("ps", host, int(pid), owner), max_age, refresh, TransientProcessError
        )
        if value is None:
            raise TransientProcessError(f"{self.system}: process {pid} on {host} is no longer watched")
        return value

    async def _read(
        self,
        scope_key: tuple[str, ...],
        row_key: tuple[Any, ...],
        max_age: float | None,
        refresh: Callable[[], Awaitable[None]],
        error: type[Exception],
    ) -> Any:
        scope = self._scope(scope_key)
        asked = time.monotonic()
        since = asked - (self.interval if max_age is None else max_age)
        for _ in range(3):
            row = self._rows.get(row_key)
            if row is not None and row.time >= since:
                if row.error is not None:
                    raise error(row.error)
                return row.value
            if scope.task is None or scope.task.done():
                scope.task = asyncio.ensure_future(self._run(scope, refresh))
            # shield: one waiter giving up (its own timeout) must not cancel the others'.
            await asyncio.shield(scope.task)
        row = self._rows.get(row_key)
        if row is None:
            return None
        if row.error is not None:
            raise error(row.error)
        return row.value

    async def _run(self, scope: _Scope, refresh: Callable[[], Awaitable[None]]) -> None:
        wait = scope.last_start + self.min_gap - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        scope.last_start = time.monotonic()
        scope.refreshes += 1
        try:
            await refresh()
        except Exception as e:  # noqa: BLE001 - a refresh failure is data for the waiters
            log.warning("%s: status refresh failed: %s", self.system, e)

    # --- refreshing --------------------------------------------------------------
    async def _as(self, runner: str, argv: Sequence[str], host: str | None = None) -> Result:
        """Run argv as the service account (when configured) or as the owner ``runner``."""
        self.queries += 1
        if self.service_user:
            assert self._service_credentials is not None
            creds = await self._service_credentials()
            return await self.pool.run(
                self.target, self.service_user, creds, argv, timeout=self.query_timeout, host=host
            )
        provider = self._creds.get(runner)
        creds = None
        if provider is not None:
            try:
                creds = await provider()
            except SSHError as e:
                # Expired credentials never block a poll: an open connection still serves.
                log.info(
                    "%s: no fresh credentials for %s (%s); using an open connection", self.system, runner, e
                )
        async with self._user_slot(runner), self._limit:
            return await self.pool.run(
                self.target, runner, creds, argv, timeout=self.query_timeout, host=host
            )

    @contextlib.asynccontextmanager
    async def _user_slot(self, runner: str) -> AsyncIterator[None]:
        """One of ``runner``'s PER_USER_SLOTS: what their queries may hold of the board's
        slots at once, whatever their shell does."""
        sem, users = self._slots.setdefault(runner, (asyncio.Semaphore(PER_USER_SLOTS), [0]))
        users[0] += 1
        try:
            async with sem:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._slots[runner]

    async def _refresh_jobs(self, scope_key: tuple[str, ...]) -> None:
        started = self._scope(scope_key).last_start
        pairs = [(j, o) for j, o in self._jobs if self._job_scope(o) == scope_key]
        if not pairs:
            return
        ids = sorted({j for j, _ in pairs}, key=_job_key)
        runner = self.service_user or scope_key[-1]
        try:
            found = await self._query_jobs(runner, ids)
        except (SSHError, TransientSchedulerError, OSError) as e:
            metrics.scheduler_error(self.system, "query")
            for pair in pairs:
                if pair in self._jobs:  # not unwatched meanwhile
                    self._rows[("job", *pair)] = _Row(started, error=str(e))
            return
        for job_id, owner in pairs:
            if (job_id, owner) not in self._jobs:
                continue  # unwatched while the query ran: no row to keep
            self._rows[("job", job_id, owner)] = self._job_row(started, found[job_id], owner)

    def _job_row(self, started: float, st: JobStatus, owner: str) -> _Row:
        """The row an owner is served: believed only when it names them."""
        if st.state == "GONE":
            return _Row(started, st)
        if st.kind == UNKNOWN:
            return _Row(
                started,
                error=f"{self.system}: the scheduler's answer for job {st.job_id} cannot be believed "
                f"({st.reason or 'state ' + claims.shown(st.state)})",
            )
        if not st.user:
            return _Row(
                started,
                error=f"{self.system}: the scheduler's answer for job {st.job_id} names no owner",
            )
        if st.user != owner:
            # Someone else's job (a start reported another user's id). Never their row, and
            # never their name: PrivateData=jobs may hide who owns an id.
            return _Row(
                started, gone(st.job_id, "FOREIGN", f"{self.scheduler.title} job {st.job_id} is not yours")
            )
        return _Row(started, st)

    async def _query_jobs(self, runner: str, ids: list[str]) -> dict[str, JobStatus]:
        if len(ids) > MAX_IDS_PER_QUERY:
            found: dict[str, JobStatus] = {}
            for i in range(0, len(ids), MAX_IDS_PER_QUERY):
                found.update(await self._query_jobs(runner, ids[i : i + MAX_IDS_PER_QUERY]))
            return found
        r = await self._as(runner, self.scheduler.query_argv(ids))
        text = (r.stdout + r.stderr).strip()
        if r.ok:
            found = self.scheduler.parse_query(r.stdout, ids)
        elif not self.scheduler.refuses_id(text):
            raise TransientSchedulerError(
                f"{self.system}: the job query failed: {claims.text(text[-300:], 300) or r.exit_status}"
            )
        elif len(ids) > 1:
            # An id slurmctld refuses fails the whole list: ask the halves, so one such id
            # (purged, or a claim that was never a job) costs log2(n) queries, never every
            # other job's status. One half after the other: a split runs within its
            # runner's own slots anyway.
            half = len(ids) // 2
            left = await self._query_jobs(runner, ids[:half])
            return {**left, **await self._query_jobs(runner, ids[half:])}
        else:
            found = {}  # one id slurmctld no longer knows: accounting may
        missing = [i for i in ids if i not in found]
        if missing:
            # Purged from slurmctld's memory: accounting may still know how it ended.
            try:
                a = await self._as(runner, self.scheduler.accounting_argv(missing))
                acct = self.scheduler.parse_accounting(a.stdout, missing) if a.ok else {}
            except SSHError:
                acct = {}
            for job_id in missing:
                found[job_id] = acct.get(job_id) or gone(job_id)
        return found

    async def _refresh_processes(self, scope_key: tuple[str, ...], host: str) -> None:
        started = self._scope(scope_key).last_start
        watched = {k: v for k, v in self._procs.items() if self._proc_scope(k[0], k[2]) == scope_key}
        if not watched:
            return
        pids = sorted({pid for _, pid, _ in watched})
        runner = self.service_user or scope_key[-1]
        rows: dict[int, ProcessStatus | None] = {}
        failed: dict[int, str] = {}
        # In batches, one after the other: one host's listing stays within what the status
        # command accepts however many servers run there; a batch that fails is unknown
        # for its own PIDs only.
        for i in range(0, len(pids), MAX_IDS_PER_QUERY):
            batch = pids[i : i + MAX_IDS_PER_QUERY]
            try:
                rows.update(ps_answer(await self._as(runner, ps_argv(batch), host=host), batch))
            except (SSHError, OSError, TransientProcessError) as e:
                failed.update(dict.fromkeys(batch, f"{self.system}: cannot list processes on {host}: {e}"))
        for (h, pid, owner), start in watched.items():
            if (h, pid, owner) not in self._procs:
                continue  # unwatched while ps ran
            key = ("ps", h, pid, owner)
            if pid in failed:
                self._rows[key] = _Row(started, error=failed[pid])
                continue
            if pid in rows and rows[pid] is None:
                self._rows[key] = _Row(started, error=f"{self.system}: ps printed process {pid} twice")
                continue
            seen = rows.get(pid)
            alive = seen is not None and seen.user == owner and (start is None or start == seen.start)
            self._rows[key] = _Row(
                started, ProcessStatus(pid, alive, seen.start if seen else "", seen.user if seen else "")
            )


# --- one board per system per hub process -----------------------------------------
_boards: dict[str, tuple[Any, StatusBoard]] = {}


def board_for(
    system_key: str,
    target: SSHTarget,
    pool: SSHPool,
    status: StatusSettings,
    service_credentials: CredentialsFn | None,
    scheduler: Scheduler | None = None,
) -> StatusBoard:
    """The board of one system (made on first use; the same object for every spawner of
    the system; ``scheduler``: the one the system's batch levels use, hpchub.grid)."""
    key = system_key
    signature = (target, scheduler.name if scheduler else None, status)
    known = _boards.get(key)
    if known is not None and known[0] == signature:
        return known[1]
    board = StatusBoard(
        target.system,
        target,
        pool,
        interval=float(status.interval_seconds),
        service_user=status.user,
        service_credentials=service_credentials,
        scheduler=scheduler,
    )
    if known is not None:
        # Values changed under a running hub (tests): carry the watch lists over.
        board._jobs.update(known[1]._jobs)
        for (host, pid, owner), start in known[1]._procs.items():
            board._procs[(host, pid, owner)] = start
            board._procs_of[owner] = board._procs_of.get(owner, 0) + 1
            board._claimants.setdefault((host, pid), set()).add(owner)
        board._creds.update(known[1]._creds)
    _boards[key] = (signature, board)
    return board


def reset_boards() -> None:
    """Forget every board (tests: one hub process per test session)."""
    _boards.clear()
