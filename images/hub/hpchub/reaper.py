"""The reaper: cancellations that outlive the spawner (docs/design/state-and-status.md §3).

JupyterHub clears a spawner's state after ``stop()`` whatever happened, so a stop that
could not be confirmed (slurmctld down, the login node unreachable, the user's
credentials expired) or a start abandoned while ``sbatch`` or a launch was in flight
would forget the job or process: an orphan that keeps a node (and the user's allocation)
busy. Such a run is written to the reaper's table (hpchub/reaper_table.py) *before* the
spawner's state is cleared. A loop in the hub retries each row with backoff and jitter, a few at a time per
login host, until ``squeue``/``ps`` confirm the job or process is gone, and resumes after
a hub restart. A row is never dropped: only its confirmed end deletes it.

Fairness: the stop runs in the user's shell, which may sleep or fail (and a user can
cycle starts and stops, each unconfirmed stop a row). So each user's rows on a login host
form a *lane*, tried one at a time (oldest first), and lanes take the host's slots in
turn (FIFO); a pass starts a lane for every user with due rows whose lane is not running,
and never waits for a lane: a user whose rows hang (each up to ROW_TIMEOUT) holds at most
one slot per host and delays only their own rows.

Credentials, in order: the user's own (auth_state) when valid, the hub CA when enabled, a
connection of the user's that is still open; else the row waits for the user to sign in
again (the console says so).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.engine import Engine

from .launcher import stop_script
from .reaper_table import Cancellation, ensure_table, insert_row, pending, table
from .remoteops import RemoteOps, cancel_run, job_name, user_credentials
from .schedulers import SCHEDULERS
from .sshpool import SSHError, SSHTarget

# A child of JupyterHub's logger: the hub's handlers and format apply.
log = logging.getLogger("JupyterHub").getChild("reaper")

# A submission whose answer was lost may still create its job this long afterwards (sbatch
# retries slurmctld for minutes); until then "no such job" is no proof.
LATE_SUBMIT_SECONDS = 600.0
FIRST_RETRY = 15.0
# At most one attempt a minute per row: cheap for slurmctld, quick once it is back.
MAX_RETRY = 60.0
PER_HOST = 2
# One attempt at one row, whatever its commands' own timeouts add up to: a slot is held
# at most this long by one row.
ROW_TIMEOUT = 120.0


def add(engine: Engine, row: Cancellation) -> int:
    """Commit a pending cancellation; the loop takes it from there (now and after restarts)."""
    row_id = insert_row(engine, row, time.time() + FIRST_RETRY * random.uniform(0.8, 1.2))
    log.warning("reaper: %s of %s (%s) recorded: %s", row.what, row.username, row.server, row.reason)
    kick()
    return row_id


def by_hand(row: Cancellation) -> str:
    """How an operator cancels this run without the hub (the uninstall hook prints it):
    what the reaper's own scripts do, as one command and where to run it."""
    host = row.host.rpartition(":")[0] if row.host.count(":") == 1 else row.host
    if row.backend in SCHEDULERS:
        where = f"on a login node of {row.system}, as {row.username} or root"
        command = SCHEDULERS[row.backend].cancel_by_hand(job_name(row.run_id), row.job_id, row.username)
        return f"{command}   ({where})"
    where = f"on {host or 'the login node of ' + row.system}, as {row.username} or root"
    # The notebook leads its own process group: its kernels go with it. (No "--": dash's
    # kill refuses it, and a negative PID right after the signal works in every sh.)
    pid = str(row.pid) if row.pid else f"$(cat ~{row.username}/.hpchub/ssh/{row.run_id}/pid)"
    return f"kill -TERM -{pid}; sleep 5; kill -KILL -{pid}   ({where})"


def retry_now(engine: Engine) -> int:
    """Make every row due now and wake the loop (the uninstall hook asks this, so a
    cancellation that became possible is done before the hub goes); the number of rows."""
    ensure_table(engine)
    with engine.begin() as conn:
        n = conn.execute(update(table).values(next_try=time.time())).rowcount
    kick()
    return int(n or 0)


def _backoff(attempts: int) -> float:
    return min(FIRST_RETRY * 2**attempts, MAX_RETRY) * random.uniform(0.8, 1.2)


Action = Callable[[Cancellation], Awaitable[bool]]


Lane = tuple[str, str, str]  # (system, login host, user): rows tried one at a time


class Reaper:
    """Retries the rows of one database with ``act`` (True: the run is confirmed gone)."""

    def __init__(self, engine: Engine, act: Action) -> None:
        self.engine = engine
        self.act = act
        self._hosts: dict[tuple[str, str], asyncio.Semaphore] = {}
        self._lanes: dict[Lane, asyncio.Task[int]] = {}

    def start_pass(self, now: float | None = None) -> list[asyncio.Task[int]]:
        """Start a lane for every user with due rows on a login host whose lane is not
        running (one that runs takes its user's rows due meanwhile on a later pass); the
        lanes started. Nothing here waits for a row."""
        now = time.time() if now is None else now
        due: dict[Lane, list[Cancellation]] = {}
        for row in pending(self.engine):  # oldest first
            lane = (row.system, row.host, row.username)
            if row.next_try <= now and lane not in self._lanes:
                due.setdefault(lane, []).append(row)
        started = []
        for lane, rows in due.items():
            task = asyncio.ensure_future(self._lane(rows))
            self._lanes[lane] = task
            task.add_done_callback(lambda t, lane=lane: self._lane_done(lane, t))
            started.append(task)
        return started

    def _lane_done(self, lane: Lane, task: asyncio.Task[int]) -> None:
        if self._lanes.get(lane) is task:
            del self._lanes[lane]
        if not task.cancelled() and task.exception() is not None:
            log.error("reaper: the rows of %s on %s failed: %s", lane[2], lane[1], task.exception())
        _wake.set()  # the user's rows that came due meanwhile: the next pass, now

    async def _lane(self, rows: list[Cancellation]) -> int:
        """One user's due rows on one login host, one after the other; the number gone."""
        gone = 0
        for row in rows:
            gone += await self._try(row)
        return gone

    async def run_once(self, now: float | None = None, timeout: float | None = None) -> int:
        """Start a pass and wait (at most ``timeout`` seconds) for the lanes it started;
        the number of rows those that ended confirmed gone (and deleted). Lanes still
        running go on."""
        started = self.start_pass(now)
        if not started:
            return 0
        done, _ = await asyncio.wait(started, timeout=timeout)
        return sum(t.result() for t in done if not t.cancelled() and t.exception() is None)

    async def close(self) -> None:
        """Stop every lane (a row in flight stays as it was: tried again later)."""
        lanes = list(self._lanes.values())
        for task in lanes:
            task.cancel()
        await asyncio.gather(*lanes, return_exceptions=True)

    async def _try(self, row: Cancellation) -> bool:
        sem = self._hosts.setdefault((row.system, row.host), asyncio.Semaphore(PER_HOST))
        async with sem:
            try:
                gone = await asyncio.wait_for(self.act(row), ROW_TIMEOUT)
                error = "" if gone else "still there (or a late submission is still possible)"
            except TimeoutError:
                gone, error = False, f"no answer within {ROW_TIMEOUT:.0f} s"
            except Exception as e:  # noqa: BLE001 - every failure is retried later
                gone, error = False, str(e) or type(e).__name__
        with self.engine.begin() as conn:
            if gone:
                conn.execute(delete(table).where(table.c.id == row.id))
            else:
                conn.execute(
                    update(table)
                    .where(table.c.id == row.id)
                    .values(
                        attempts=row.attempts + 1,
                        next_try=time.time() + _backoff(row.attempts + 1),
                        last_error=error[-2000:],
                    )
                )
        if gone:
            log.info("reaper: %s of %s (%s) is gone", row.what, row.username, row.server)
        else:
            log.warning(
                "reaper: %s of %s (%s) not confirmed gone (attempt %d): %s",
                row.what,
                row.username,
                row.server,
                row.attempts + 1,
                error,
            )
        return gone

    async def loop(self, interval: float = 5.0) -> None:
        while True:
            _wake.clear()  # before the pass: a new row or a lane's end meanwhile wakes the next
            try:
                self.start_pass()
            except Exception:  # noqa: BLE001 - the loop must outlive a bad row or a DB blip
                log.exception("reaper: pass failed")
            try:
                await asyncio.wait_for(_wake.wait(), interval)
            except TimeoutError:
                pass


# --- the hub's reaper ---------------------------------------------------------------------

_wake = asyncio.Event()
_task: asyncio.Task[None] | None = None


def kick() -> None:
    """Wake the loop (a new row), starting it if the hub has none running yet."""
    _wake.set()
    ensure_running()


def _hub_app() -> Any:
    try:
        from jupyterhub.app import JupyterHub
    except ImportError:  # pragma: no cover - the hub image always has it
        return None
    return JupyterHub.instance() if JupyterHub.initialized() else None


def ensure_running() -> None:
    """Start the hub's loop once (from a spawner, or when the hub has started)."""
    global _task
    if _task is not None and not _task.done():
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    _task = asyncio.ensure_future(_run_with_hub())


async def _run_with_hub() -> None:
    app = _hub_app()
    if app is None:
        return
    # Configuration is loaded inside JupyterHub's initialize(); the DB comes a bit later.
    started = getattr(app, "_start_future", None)
    if started is not None:
        await asyncio.shield(started)
    engine = app.db.get_bind()
    ensure_table(engine)
    section = app.config.DispatchSpawner if "DispatchSpawner" in app.config else {}
    act = HubActions(
        systems=dict(section.get("systems", {})),
        ssh_ca=dict(section.get("ssh_ca", {})),
        auth_state=lambda name: _auth_state(app, name),
        identity=dict(section.get("identity", {})),
    )
    rows = pending(engine)
    if rows:
        log.warning("reaper: resuming %d pending cancellation(s)", len(rows))
    await Reaper(engine, act).loop()


async def _auth_state(app: Any, username: str) -> dict[str, Any] | None:
    from jupyterhub import orm

    orm_user = orm.User.find(app.db, username)
    if orm_user is None:
        return None
    return await app.users[orm_user].get_auth_state()


def start_with_hub() -> None:
    """Called by the config loader while JupyterHub loads its configuration: the loop
    starts once the hub runs, so rows left by an earlier hub process are resumed even
    when no server is active."""
    ensure_running()


class HubActions:
    """How the hub's reaper stops a run: the same scripts and scheduler adapters the
    spawners use (hpchub.remoteops, hpchub.launcher, hpchub.schedulers), never a spawner."""

    def __init__(
        self,
        systems: Mapping[str, Any],
        ssh_ca: Mapping[str, Any],
        auth_state: Callable[[str], Awaitable[Mapping[str, Any] | None]],
        identity: Mapping[str, Any] | None = None,
    ) -> None:
        self.systems = systems
        self.ssh_ca = ssh_ca
        self.auth_state = auth_state
        # The same trusted uid source the spawners use before the CA signs (issue 8, hole 7).
        self.identity = identity

    async def credentials(self, display: str, username: str) -> Any:
        """The user's SSH credentials as a spawner gets them; None once expired (then an
        open connection of theirs serves, else the row waits for them to sign in)."""
        try:
            return await user_credentials(
                display, username, self.ssh_ca, await self.auth_state(username), self.identity, self.systems
            )
        except SSHError:
            return None

    async def __call__(self, row: Cancellation) -> bool:
        system = self.systems.get(row.system)
        if not system:
            raise RuntimeError(f"system {row.system!r} is no longer configured")
        display = system.get("displayName", row.system)
        target = SSHTarget.from_values(display, system.get("ssh") or {})

        async def creds() -> Any:
            return await self.credentials(display, row.username)

        ops = RemoteOps(target, row.username, creds)
        if row.backend in SCHEDULERS:
            scheduler = SCHEDULERS[row.backend]
            gone = await cancel_run(ops, scheduler, row.run_id or None, row.job_id, prefer=row.host or None)
            if gone and not row.job_id and time.time() - row.created < LATE_SUBMIT_SECONDS:
                return False  # the submission may still create the job: keep watching its name
            return gone
        result = await ops.script(stop_script(row.pid, 2.0, row.run_id or None), timeout=60, host=row.host)
        return result.ok
