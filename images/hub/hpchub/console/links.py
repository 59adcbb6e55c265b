"""Links into a user's notebook that name no server.

``/hub/user-redirect/<path>`` (what nbgitpuller links, course pages and center docs use)
and the unnamed default server (``/user/<name>/<path>``, ``/hub/spawn/<name>``) lead, in
plain JupyterHub, to the server named ``''`` -- which the grid does not offer. Instead:

- exactly one server of the user is running (or starting): the path opens there;
- else ``console.defaultCell``, when set: open there if it runs, start it if nothing runs;
- else the console, with the path kept (``/hub/console/open/<path>``): every cell's Open
  goes to the path in that server, and Start (or the form) continues to it once the
  server is ready.

The path and query are the link's own; they are only ever appended below
``/user/<name>/<server>/``, so a link cannot send anyone elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from jupyterhub.handlers.pages import HomeHandler
from tornado import web

from ..access import refusal
from ..grid import Grid
from ..urls import link_rest, open_url, with_next


def _active_cells(grid: Grid, user: Any) -> list[tuple[str, Any]]:
    """The user's servers that are cells and are running or starting (not stopping)."""
    names: Iterable[str] = getattr(getattr(user, "orm_user", None), "orm_spawners", None) or ()
    out = []
    for name in sorted(names):
        if name not in grid.cells:
            continue
        spawner = user.spawners[name]
        if spawner.active and spawner.pending != "stop":
            out.append((name, spawner))
    return out


def link_target(
    grid: Grid,
    user: Any,
    auth_state: Mapping[str, Any] | None,
    base_url: str,
    rest: str,
    default_cell: str = "",
) -> str:
    """Where a link into the user's notebook (``rest`` from :func:`link_rest`) goes."""
    hub = f"{base_url}hub/"
    escaped = quote(user.name, safe="")

    def to(name: str, spawner: Any) -> str:
        url = open_url(base_url, escaped, name, rest)
        # A starting server: its progress page, which continues to the link when ready.
        return url if spawner.ready else with_next(f"{hub}spawn-pending/{escaped}/{name}", url)

    active = _active_cells(grid, user)
    if len(active) == 1:
        return to(*active[0])
    if default_cell:
        for name, spawner in active:
            if name == default_cell:
                return to(name, spawner)
        cell = grid.cells.get(default_cell)
        if not active and cell is not None and refusal(cell, user, auth_state) is None:
            url = open_url(base_url, escaped, default_cell, rest)
            if cell.level.configurable:
                return with_next(f"{hub}console/options/{default_cell}", url)
            return with_next(f"{hub}spawn/{escaped}/{default_cell}", url)
    return f"{hub}console/open/{rest}"


def user_redirect_hook(grid: Grid, default_cell: str = "") -> Any:
    """``JupyterHub.user_redirect_hook``: /hub/user-redirect/<path> by :func:`link_target`."""

    async def hook(path: str, request: Any, user: Any, base_url: str) -> str:
        auth_state = await user.get_auth_state()
        return link_target(grid, user, auth_state, base_url, link_rest(path, request.query), default_cell)

    return hook


class ConsoleOpenHandler(HomeHandler):
    """``/hub/console/open/<path>``: the console, every cell pointing at ``<path>``."""

    def initialize(self, **kwargs: Any) -> None:
        super().initialize(**kwargs)
        self._open = ""

    @web.authenticated
    async def get(self, path: str) -> None:  # type: ignore[override]
        self._open = link_rest(path, self.request.query)
        await super().get()

    def render_template(self, name: str, sync: bool = False, **ns: Any) -> Any:
        # HomeHandler renders home.html with its usual namespace; the console reads the path.
        return super().render_template(name, sync=sync, hpchub_open=self._open, **ns)
