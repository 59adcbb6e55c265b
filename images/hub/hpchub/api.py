"""hpchub's own REST API next to JupyterHub's, for the notebook package and the console:

- ``GET  /hub/api/hpchub/servers/<user>/<server>``: a server's walltime status (the JSON
  hpchub-notebook parses: hpchub_notebook/status.py), from its one state value
  (hpchub.serverstate.status_of) and the cell's walltime settings;
- ``POST /hub/api/hpchub/servers/<user>/<server>/extend`` ``{"seconds": N}``: raise its
  job's time limit within the cap (hpchub.walltime); the new status, or the refusal as
  JupyterHub's error JSON ``{"status": code, "message": "..."}``.

Authenticated and scoped as JupyterHub's own API: ``access:servers`` on that server, which
the server's own API token has (role ``server``: ``access:servers!server=<user>/<name>``)
and the user's own tokens and cookie have (``self``). Another user's token gets 403 before
anything is looked up, so it cannot even learn whether the server exists. A cookie needs
the XSRF token, as for every JupyterHub API call. The job an extension applies to is the
server's own (its spawner's state); nothing in the request names it.

A view: it draws ServerStatus and calls the spawner's public ``extend`` and
``note_notebook_client``; it imports no spawner (docs/design/architecture.md).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.scopes import needs_scope
from tornado import web

from .culling import CullPolicy, cull_view
from .grid import Grid, UnknownServer
from .serverstate import ServerStatus, status_of
from .settings import WalltimeSettings
from .walltime import ExtendRefused, extend_offer


def iso8601(t: datetime | None) -> str | None:
    """JupyterHub keeps naive UTC times; the notebook package reads ISO 8601."""
    if t is None:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).isoformat().replace("+00:00", "Z")


def status_json(
    status: ServerStatus,
    walltime: WalltimeSettings,
    extend: dict[str, Any] | None,
    cull: dict[str, Any] | None,
) -> dict[str, Any]:
    """The status JSON of one server (the contract of hpchub_notebook/status.py)."""
    return {
        "phase": status.phase.value if status.phase else "stopped",
        "ends_at": status.ends_at if status.active else None,
        "time_limit_seconds": status.time_limit if status.active else None,
        "warnings_seconds": list(walltime.warnings_seconds),
        "save_before_seconds": walltime.save_before_seconds,
        "extend": extend,
        "cull": cull,
        "message": status.message,
    }


class _ServerAPIHandler(APIHandler):
    grid: Grid
    culling: CullPolicy

    def initialize(self, grid: Grid, culling: CullPolicy) -> None:
        self.grid = grid
        self.culling = culling

    def _spawner(self, user_name: str, server_name: str) -> Any:
        user = self.find_user(user_name)
        if user is None or server_name not in user.orm_user.orm_spawners:
            raise web.HTTPError(404, "%s", f"{user_name} has no server named {server_name!r}")
        return user.spawners[server_name]

    def _status(self, spawner: Any) -> dict[str, Any]:
        status = status_of(spawner)
        try:
            cell = self.grid.cell(spawner.name)
        except UnknownServer:
            cell = None
        walltime = cell.walltime if cell is not None else WalltimeSettings()
        offer = extend_offer(cell, status)
        orm = getattr(spawner, "orm_spawner", None)
        last = getattr(orm, "last_activity", None)
        # The cell's own timeout (per level and cell), the one the culler applies.
        cull = cull_view(self.culling, spawner.name, last) if status.active else None
        return status_json(status, walltime, offer.to_json() if offer else None, cull)

    def _note_client(self, spawner: Any) -> None:
        """The notebook package asks with ``?client=hpchub-notebook/<version>``: keep it in
        the server's state (once per run), so the console knows it is there."""
        client = self.get_argument("client", "")
        note = getattr(spawner, "note_notebook_client", None)
        if not client or note is None or not spawner.active or not note(client):
            return
        orm = getattr(spawner, "orm_spawner", None)
        if orm is not None:
            orm.state = spawner.get_state()
            self.db.commit()

    def _finish(self, data: dict[str, Any]) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(data))


class ServerStatusHandler(_ServerAPIHandler):
    @needs_scope("access:servers")
    async def get(self, user_name: str, server_name: str) -> None:
        spawner = self._spawner(user_name, server_name)
        self._note_client(spawner)
        self._finish(self._status(spawner))


class ServerExtendHandler(_ServerAPIHandler):
    @needs_scope("access:servers")
    async def post(self, user_name: str, server_name: str) -> None:
        body = self.get_json_body()
        if not isinstance(body, dict) or "seconds" not in body:
            raise web.HTTPError(400, "%s", 'expected {"seconds": N}: how many seconds to add (whole minutes)')
        spawner = self._spawner(user_name, server_name)
        self._note_client(spawner)
        extend = getattr(spawner, "extend", None)
        if extend is None:
            raise web.HTTPError(400, "%s", "This server cannot be extended.")
        try:
            await extend(body["seconds"])
        except ExtendRefused as e:
            raise web.HTTPError(e.status, "%s", e.message) from None
        self._finish(self._status(spawner))


def handlers(grid: Grid, culling: CullPolicy) -> list[tuple[str, Any, dict[str, Any]]]:
    """The routes, for ``c.JupyterHub.extra_handlers`` (JupyterHub prefixes them with
    the hub's base URL: ``/hub/api/hpchub/...``)."""
    kw: dict[str, Any] = {"grid": grid, "culling": culling}
    return [
        (r"/api/hpchub/servers/([^/]+)/([^/]+)/extend", ServerExtendHandler, kw),
        (r"/api/hpchub/servers/([^/]+)/([^/]+)", ServerStatusHandler, kw),
    ]
