"""The admin view: every server the hub knows, by system, level, user, state, host or Slurm
job, queue reason and age, with Stop; and how servers ended, newest first.

- ``/hub/console/admin``: the list (scope ``admin-ui``, which JupyterHub gives admins; the
  same gate as JupyterHub's own admin page). ``?system=`` and ``?state=`` narrow it; the
  endings of ``console.endedRetentionDays`` (at most ADMIN_ENDINGS) follow, by system too.
- ``/hub/console/admin/stop/<user>/<server>``: POST stops that server (scope
  ``delete:servers`` on it: admins for anyone's, a user only for their own).

The rows come from hpchub.servers, the same rows the metrics count, in the console's terms.
Works without JavaScript.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jupyterhub.handlers import BaseHandler
from jupyterhub.scopes import needs_scope
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.escape import url_escape

from .. import ends
from ..endings import Ending, recent
from ..grid import Grid
from ..servers import ServerRow, server_rows
from ..serverstate import STATE_LABELS, interrupt_start
from ..settings import ConsoleSettings
from .ended import EndedView, ended_view, fmt_age

# Endings the admin view lists at most (the newest; the page stays one screenful of tables).
ADMIN_ENDINGS = 200


@dataclass(frozen=True)
class AdminEnding:
    ending: Ending
    view: EndedView
    system_title: str
    level_title: str


@dataclass(frozen=True)
class AdminRow:
    row: ServerRow
    system_title: str
    level_title: str
    state_label: str
    where: str
    age: str
    stop_url: str


class _AdminMixin:
    grid: Grid
    console: ConsoleSettings

    def initialize(self, grid: Grid, console: ConsoleSettings | None = None) -> None:
        self.grid = grid
        self.console = console or ConsoleSettings()

    def admin_url(self) -> str:
        return url_path_join(self.hub.base_url, "console/admin")  # type: ignore[attr-defined]


class AdminServersHandler(_AdminMixin, BaseHandler):
    def _view(self, row: ServerRow, now: datetime) -> AdminRow:
        systems = {s.name: s for s in self.grid.systems}
        levels = {lv.name: lv for lv in self.grid.levels}
        system = systems.get(row.system)
        level = levels.get(row.level)
        where = row.host
        if row.job_id:
            # Running: the job's nodes; before that the host is the login node it was sent from.
            where = f"job {row.job_id}"
            if row.host:
                where += f" on {row.host}" if row.state == "running" else f", sent from {row.host}"
        return AdminRow(
            row=row,
            system_title=system.display_name if system else row.system,
            level_title=level.title if level else row.level,
            state_label=STATE_LABELS.get(row.state, row.state),
            where=where,
            age=fmt_age(row.age_seconds(now)),
            stop_url=url_path_join(self.admin_url(), "stop", url_escape(row.user, plus=False), row.server),
        )

    def _endings(self, system: str) -> list[AdminEnding]:
        systems = {s.name: s for s in self.grid.systems}
        levels = {lv.name: lv for lv in self.grid.levels}
        now = time.time()
        rows = recent(self.db.get_bind(), now - self.console.ended_retention_seconds, ADMIN_ENDINGS)
        return [
            AdminEnding(
                ending=e,
                view=ended_view(e, now),
                system_title=systems[e.system].display_name if e.system in systems else e.system,
                level_title=levels[e.level].title if e.level in levels else e.level,
            )
            for e in rows
            if not system or e.system == system
        ]

    @web.authenticated
    @needs_scope("admin-ui")
    async def get(self) -> None:
        rows = server_rows(self.db, self.users)
        system = self.get_argument("system", "")
        state = self.get_argument("state", "")
        counts = Counter(r.system for r in rows)
        per_system = [(s.display_name, counts[s.name]) for s in self.grid.systems if counts[s.name]]
        shown = [r for r in rows if (not system or r.system == system) and (not state or r.state == state)]
        now = datetime.now(UTC)
        html = await self.render_template(
            "console_admin.html",
            rows=[self._view(r, now) for r in shown],
            total=len(rows),
            per_system=per_system,
            systems=self.grid.systems,
            states=[(k, STATE_LABELS[k]) for k in ("running", "queued", "starting", "stopping")],
            filter_system=system,
            filter_state=state,
            admin_url=self.admin_url(),
            endings=self._endings(system),
            endings_days=self.console.ended_retention_days,
            endings_limit=ADMIN_ENDINGS,
        )
        self.finish(html)


class AdminStopHandler(_AdminMixin, BaseHandler):
    @web.authenticated
    @needs_scope("delete:servers")
    async def post(self, user_name: str, server_name: str) -> None:
        user: Any = self.find_user(user_name)
        if user is None or server_name not in user.orm_user.orm_spawners:
            raise web.HTTPError(404, f"No server {server_name!r} of {user_name!r}")
        spawner = user.spawners[server_name]
        if spawner.active and spawner.pending not in ("stop", "rename"):
            self.log.info(
                "%s stops %s/%s from the admin view", self.current_user.name, user_name, server_name
            )
            requester = ends.requester_of(self.current_user)
            if requester is not None:  # recorded as "admin", naming them (hpchub.ends)
                ends.requested(user_name, server_name, requester)
            if await interrupt_start(spawner):
                # A queued or starting server: its start is interrupted as JupyterHub's REST
                # DELETE does; the spawner's stop then cancels the job or process it launched.
                await asyncio.sleep(1)
            if not spawner.pending:
                await self.stop_single_user(user, server_name)
        self.redirect(self.admin_url())
