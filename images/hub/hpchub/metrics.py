"""hpchub's own Prometheus metrics, served next to JupyterHub's at ``/hub/metrics``.

JupyterHub registers its metrics in prometheus_client's default registry and serves that
registry; so do we. The spawners and the SSH pool call the small functions below, one line
each, so their code stays about spawning:

- ``spawn_timer(cell, backend)`` when a start begins, then ``.running()`` when the Slurm
  job runs (the end of the queue wait) and ``.ready()`` when the server answers: the spawn
  time split into ``hpchub_spawn_queue_wait_seconds`` and
  ``hpchub_spawn_server_start_seconds`` (buckets up to 24 h: queues can be that long);
- ``scheduler_error(system, operation)`` for a failed squeue refresh (the status board:
  once per refresh, not once per waiting spawner), a refused sbatch or a failed scancel;
- ``ssh_error(system, kind)`` for a login host that could not be used or a command that
  broke; ``ssh_connected(system, conn)`` for every connection the pool opens;
- ``server_ended(system, level, cause)`` for every ending recorded (hpchub.ends): how many
  time limits, OOMs, culls per cell, ``hpchub_server_ends_total``.

Gauges are computed when Prometheus scrapes, from the live objects, so they are right
after a hub restart too: ``hpchub_servers{system,level,state}`` from the hub's servers
(hpchub.servers) and ``hpchub_ssh_connections{system}`` from the open connections.

Labels are system and level *names* (the keys in values), never user names: a metric
series per user would grow without bound.
"""

from __future__ import annotations

import logging
import math
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("hpchub.metrics")

# Seconds: a login-node server starts in seconds, a queued job may wait a day.
BUCKETS = (
    1,
    2,
    5,
    10,
    20,
    30,
    60,
    120,
    300,
    600,
    1200,
    1800,
    3600,
    7200,
    14400,
    28800,
    43200,
    86400,
    math.inf,
)
SCHEDULER_OPERATIONS = ("query", "submit", "cancel")
SSH_ERROR_KINDS = (
    "unreachable",
    "host_key",
    "auth",
    "timeout",
    "broken",
    "output_too_large",
    "session_refused",
)
SERVER_STATES = ("running", "queued", "starting", "stopping")

SPAWN_QUEUE_WAIT = Histogram(
    "hpchub_spawn_queue_wait_seconds",
    "Time a Slurm notebook job waited in the queue: from sbatch until the job ran.",
    ["system", "level"],
    buckets=BUCKETS,
)
SPAWN_SERVER_START = Histogram(
    "hpchub_spawn_server_start_seconds",
    "Time from the job running (Slurm) or the launch (SSH, Spin) until the notebook server answered.",
    ["system", "level", "backend"],
    buckets=BUCKETS,
)
SCHEDULER_ERRORS = Counter(
    "hpchub_scheduler_errors",
    "Slurm commands that failed for the scheduler's or the login node's reasons "
    "(operation: query = squeue/sacct, submit = sbatch, cancel = scancel).",
    ["system", "operation"],
)
SSH_ERRORS = Counter(
    "hpchub_ssh_errors",
    "SSH failures towards a system's login nodes (kind: unreachable, host_key, auth, "
    "timeout = a command did not finish, broken = a connection died under a command, "
    "output_too_large = a command printed more than ssh.maxOutputBytes, "
    "session_refused = sshd refused one more session on a connection).",
    ["system", "kind"],
)

SERVER_ENDS = Counter(
    "hpchub_server_ends",
    "Servers that ended or failed to start, by cause (time_limit, out_of_memory, node_failure, "
    "preempted, cancelled, idle, admin, lifetime, startup_script, start_failed, exited, user, "
    "unknown; the words are hpchub.endings.CAUSES).",
    ["system", "level", "cause"],
)

# Display name -> system key, for callers that only know the display name (the SSH pool's
# targets carry it for messages). Filled by the config loader.
_system_keys: dict[str, str] = {}
# The grid's cells (system, level), so every hpchub_servers series exists from the start.
_cells: set[tuple[str, str]] = set()
# Open connections per system; weak, so a closed and dropped connection just disappears.
_connections: dict[str, weakref.WeakSet[Any]] = {}


def system_label(system: str) -> str:
    """The values key of a system given its key or display name."""
    return _system_keys.get(system, system)


def register_systems(systems: Mapping[str, Mapping[str, Any]], end_causes: Iterable[str] = ()) -> None:
    """Called by the config loader: learn the systems' names and create their series at 0,
    so a rate() over a counter that has never moved is 0, not "no data" (``end_causes``:
    hpchub.endings.CAUSES, which this leaf does not import)."""
    causes = tuple(end_causes)
    for key, spec in systems.items():
        _system_keys[str(spec.get("displayName") or key)] = key
        _system_keys[key] = key
        levels = spec.get("levels") or {}
        _cells.update((key, level) for level in levels)
        for level in levels:
            for cause in causes:
                SERVER_ENDS.labels(system=key, level=level, cause=cause)
        backends = {str(c.get("backend")) for c in levels.values()}
        # Every backend but Spin reaches the supercomputer over SSH; every one but Spin and
        # the login node is a batch scheduler.
        if backends - {"kubernetes"}:
            for kind in SSH_ERROR_KINDS:
                SSH_ERRORS.labels(system=key, kind=kind)
        if backends - {"kubernetes", "ssh"}:
            for op in SCHEDULER_OPERATIONS:
                SCHEDULER_ERRORS.labels(system=key, operation=op)


@dataclass
class SpawnTimer:
    """The clock of one start: created when the start begins."""

    system: str
    level: str
    backend: str
    began: float = field(default_factory=time.monotonic)
    running_at: float | None = None

    def running(self) -> None:
        """The job runs (the queue wait ends). Idempotent; SSH and Spin have no queue."""
        if self.running_at is not None:
            return
        self.running_at = time.monotonic()
        if self.backend not in ("ssh", "kubernetes"):  # a batch job: it queued
            SPAWN_QUEUE_WAIT.labels(self.system, self.level).observe(self.running_at - self.began)

    def ready(self) -> None:
        """The server answers: observe the server-start time, from the job running (Slurm)
        or from the launch (SSH, Spin: no queue, the timer starts with the launch)."""
        if self.backend != "slurm" and self.running_at is None:
            self.running_at = self.began
        self.running()
        assert self.running_at is not None
        SPAWN_SERVER_START.labels(self.system, self.level, self.backend).observe(
            time.monotonic() - self.running_at
        )


def spawn_timer(cell: Any, backend: str) -> SpawnTimer:
    """A timer for a start of ``cell`` (a grid Cell)."""
    return SpawnTimer(cell.system.name, cell.level.name, backend)


def scheduler_error(system: str, operation: str) -> None:
    SCHEDULER_ERRORS.labels(system_label(system), operation).inc()


def ssh_error(system: str, kind: str) -> None:
    SSH_ERRORS.labels(system_label(system), kind).inc()


def server_ended(system: str, level: str, cause: str) -> None:
    SERVER_ENDS.labels(system_label(system), level, cause).inc()


def ssh_connected(system: str, conn: Any) -> None:
    _connections.setdefault(system_label(system), weakref.WeakSet()).add(conn)


def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    conns = GaugeMetricFamily(
        "hpchub_ssh_connections",
        "SSH connections the hub holds open to each system's login nodes.",
        labels=["system"],
    )
    servers = GaugeMetricFamily(
        "hpchub_servers",
        "Notebook servers by system, service level and state (running, queued = a "
        "Slurm job waiting in the queue, starting, stopping).",
        labels=["system", "level", "state"],
    )
    return conns, servers


class HubCollector(Collector):
    """Gauges read from the live hub at scrape time."""

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # Without describe(), registering would call collect() under the registry's lock,
        # and collect() may import jupyterhub.app, whose metrics register themselves.
        return _families()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        conns, servers = _families()
        for system, held in sorted(_connections.items()):
            conns.add_metric([system], sum(1 for c in list(held) if not c.is_closed()))
        yield conns
        counts = {(s, lvl, state): 0 for s, lvl in _cells for state in SERVER_STATES}
        try:
            rows = _hub_rows()
        except Exception:  # noqa: BLE001 - a bug here must not take JupyterHub's metrics down
            log.exception("hpchub_servers: cannot list the hub's servers")
            rows = []
        for row in rows:
            k = (row.system, row.level, row.state)
            counts[k] = counts.get(k, 0) + 1
        for (system, level, state), n in sorted(counts.items()):
            servers.add_metric([system, level, state], n)
        yield servers


# Where the hpchub_servers gauge reads the hub's servers (the loader registers
# hpchub.servers.hub_server_rows): metrics imports nothing of hpchub.
_rows: Callable[[], list[Any]] = list


def _hub_rows() -> list[Any]:
    return _rows()


_collector: HubCollector | None = None


def install(rows: Callable[[], list[Any]] | None = None) -> None:
    """Register the gauges' collector once per process (the loader calls this), reading the
    hub's servers with ``rows`` (rows with system, level and state)."""
    global _collector, _rows
    if rows is not None:
        _rows = rows
    if _collector is None:
        _collector = HubCollector()
        REGISTRY.register(_collector)
