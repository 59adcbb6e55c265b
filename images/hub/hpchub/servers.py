"""Every server the hub knows, one row each: for the admin view and the metrics.

A row says where a server is and what it is doing in the console's own terms (the state,
host, pending reason and job id come from serverstate.status_of, which draws the user's
cell too, so an admin and the user see the same thing). Rows come from the hub database (every spawner
with a server, running or pending) and the live Spawner objects JupyterHub holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jupyterhub import orm

from .serverstate import ServerStatus, status_of


@dataclass(frozen=True)
class ServerRow:
    user: str
    server: str
    system: str  # the system's key in values
    level: str
    backend: str  # ssh, slurm, kubernetes, or "" for a name outside the grid
    state: str  # running, queued, starting, stopping
    host: str  # login node (SSH), node list (Slurm) or pod address (Spin)
    job_id: str
    reason: str  # Slurm's pending reason
    expected_start: str
    started: datetime | None  # UTC, when the start began
    message: str  # progress text while starting
    status: ServerStatus | None = None

    def age_seconds(self, now: datetime | None = None) -> float | None:
        if self.started is None:
            return None
        now = now or datetime.now(UTC)
        started = self.started if self.started.tzinfo else self.started.replace(tzinfo=UTC)
        return max((now - started).total_seconds(), 0.0)


def row_for(user_name: str, spawner: Any) -> ServerRow:
    """One spawner as a row (the spawner of a DispatchSpawner cell, or any other)."""
    name = spawner.name
    cell = getattr(spawner, "cell", None)
    if cell is not None:
        system, level, backend = cell.system.name, cell.level.name, cell.backend
    else:
        system, _, level = name.partition("-")
        backend = ""
    status = status_of(spawner)
    state = status.state if status.state in ("running", "queued", "starting", "stopping") else "starting"
    orm_spawner = getattr(spawner, "orm_spawner", None)
    return ServerRow(
        user=user_name,
        server=name,
        system=system,
        level=level,
        backend=backend,
        state=state,
        host=status.host,
        job_id=status.job_id or str(getattr(spawner, "job_id", None) or ""),
        reason=status.reason,
        expected_start=status.expected_start,
        started=getattr(orm_spawner, "started", None),
        message=status.message,
        status=status,
    )


def server_rows(db: Any, users: Any) -> list[ServerRow]:
    """Every named or default server with a server record (running or pending), sorted by
    system, level and user. ``users`` is JupyterHub's UserDict (``app.users``)."""
    rows = []
    query = (
        db.query(orm.Spawner)
        .filter(orm.Spawner.server_id.isnot(None))
        .join(orm.User, orm.Spawner.user_id == orm.User.id)
    )
    for orm_spawner in query:
        user = users[orm_spawner.user]
        spawner = user.spawners[orm_spawner.name]
        rows.append(row_for(user.name, spawner))
    rows.sort(key=lambda r: (r.system, r.level, r.user, r.server))
    return rows


def hub_server_rows() -> list[ServerRow]:
    """The running hub's servers (for the metrics); none outside a hub process."""
    from jupyterhub.app import JupyterHub  # JupyterHub's app module, loaded when asked

    if not JupyterHub.initialized():
        return []
    app = JupyterHub.instance()
    if getattr(app, "db", None) is None or not getattr(app, "users", None):
        return []
    return server_rows(app.db, app.users)
