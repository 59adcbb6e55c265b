"""Console endpoints besides /hub/home (which is JupyterHub's, drawn by our home.html).

- ``/hub/console/options/<server>``: the configurable form. GET draws it pre-filled with the
  user's last options (an ended run's, while its cell shows it: Edit options); POST checks
  them with `hpchub.options.validate` and either draws the form again with the error next
  to its field (nothing is started) or starts the server exactly like JupyterHub's own
  spawn form does. Works without JavaScript.
- ``/hub/console/stop/<server>``: POST stops a server (the no-JavaScript Stop button).
- ``/hub/console/extend/<server>``: POST ``seconds`` raises the time limit of the user's own
  server's job within its cap (the no-JavaScript Extend buttons; console.js calls the API,
  hpchub.api). The server is always the signed-in user's: the path names no user.
- ``/hub/console/relaunch/<server>``: POST starts the server again with its ended run's
  options, checked again against what the user may use now (refused: the form, with why).
- ``/hub/console/dismiss/<server>``: POST forgets how the server ended (hpchub.endings.clear).

Every one acts on the signed-in user's own servers only: the URL names a cell, never a
user, and form fields name nothing either.
"""

from __future__ import annotations

from typing import Any

from jupyterhub.handlers.pages import SpawnHandler
from jupyterhub.utils import url_path_join
from tornado import web

from .. import ends
from ..access import refusal
from ..endings import Ending, clear
from ..grid import Cell, Grid, UnknownServer
from ..options import OptionsError, validate
from ..settings import ConsoleSettings
from ..walltime import ExtendRefused
from .ended import shown_ending
from .form import error_field, form_fields, options_from_form, render_fields
from .links import with_next


class _ConsoleMixin:
    grid: Grid
    console: ConsoleSettings

    def initialize(self, grid: Grid, console: ConsoleSettings | None = None) -> None:
        self.grid = grid
        self.console = console or ConsoleSettings()

    def _ending(self, user: Any, server_name: str) -> Ending | None:
        """The ending the signed-in user's cell shows (never another user's)."""
        return shown_ending(
            self.db.get_bind(),  # type: ignore[attr-defined]
            user.name,
            server_name,
            self.console.ended_retention_seconds,
        )

    def _cell(self, server_name: str):
        try:
            return self.grid.cell(server_name)
        except UnknownServer as e:
            raise web.HTTPError(404, str(e)) from None


class ConsoleOptionsHandler(_ConsoleMixin, SpawnHandler):
    async def _render(self, cell, auth_state, last, errors=None, message=""):
        fields = form_fields(cell, auth_state, last, errors)
        action = url_path_join(self.hub.base_url, "console/options", cell.server_name)
        next_url = self.get_argument("next", "")
        if next_url:
            # A link to follow once the server is ready (hpchub.console.links): the POST
            # keeps it, and JupyterHub's pending page continues to it.
            action = with_next(action, next_url)
        return await self.render_template(
            "console_options.html",
            cell=cell,
            fields_html=render_fields(fields),
            form_error=message,
            action=action,
            home_url=url_path_join(self.hub.base_url, "home"),
        )

    async def _usable_cell(self, server_name: str) -> tuple[Any, Cell, Any]:
        """The current user, the cell and auth_state; 403 with the reason if not usable."""
        user = self.current_user
        cell = self._cell(server_name)
        auth_state = await user.get_auth_state()
        refused = refusal(cell, user, auth_state)  # the rule the spawners enforce too
        if refused:
            raise web.HTTPError(403, "%s", refused.message)
        return user, cell, auth_state

    @web.authenticated
    async def get(self, server_name: str) -> None:
        user, cell, auth_state = await self._usable_cell(server_name)
        orm = user.orm_user.orm_spawners.get(server_name)
        spawner = user.spawners[server_name] if orm is not None else None
        if spawner is not None and spawner.active:
            self.redirect(self._get_pending_url(user, server_name))
            return
        ending = self._ending(user, server_name)
        if ending is not None:  # Edit options: the ended run's, as it was started
            last = ending.options
        else:
            last = (orm.user_options if orm is not None else None) or {}
        self.finish(await self._render(cell, auth_state, last))

    @web.authenticated
    async def post(self, server_name: str) -> None:
        user, cell, auth_state = await self._usable_cell(server_name)
        formdata = {k: [b.decode("utf8") for b in v] for k, v in self.request.body_arguments.items()}
        raw = options_from_form(formdata)
        await self._check_and_start(user, cell, auth_state, raw, "Nothing was started.")

    async def _check_and_start(
        self, user: Any, cell: Cell, auth_state: Any, raw: dict[str, Any], refused: str
    ) -> None:
        """Start the server with ``raw`` as JupyterHub's spawn form does (its pending page
        follows) once the one validator accepts them (the spawner checks them again);
        else the form, filled with them, the reason next to its field and ``refused``."""
        try:
            validate(cell, auth_state, raw)
        except OptionsError as e:
            self.set_status(400)
            self.finish(await self._render(cell, auth_state, raw, {error_field(e.field): e.message}, refused))
            return
        server_name = cell.server_name
        await self._check_named_server_request(user, server_name, server_name)
        spawner = user.get_or_create_spawner(server_name, server_name, replace_failed=True)
        pending_url = self._get_pending_url(user, server_name)
        if spawner.active:
            self.redirect(pending_url)
            return
        await self._wrap_spawn_single_user(user, server_name, server_name, spawner, pending_url, raw)


class ConsoleRelaunchHandler(ConsoleOptionsHandler):
    """Relaunch: the ended run's options again, judged by what the user may use now."""

    @web.authenticated
    async def post(self, server_name: str) -> None:
        # 403 with the reason if the cell is no longer the user's (group, allocation, maintenance).
        user, cell, auth_state = await self._usable_cell(server_name)
        ending = self._ending(user, server_name)
        if ending is None:
            raise web.HTTPError(
                404, "%s", f"{cell.system.display_name} {cell.level.title}: no ended run to relaunch"
            )
        self.log.info("%s relaunches %s with its ended run's options", user.name, server_name)
        # Options no longer allowed: the form with them, to correct. A start clears the ending.
        await self._check_and_start(
            user,
            cell,
            auth_state,
            dict(ending.options),
            "The ended run's options are no longer allowed, so nothing was started.",
        )


class ConsoleDismissHandler(_ConsoleMixin, SpawnHandler):
    """Dismiss: the cell stops showing how its server ended."""

    @web.authenticated
    async def post(self, server_name: str) -> None:
        self._cell(server_name)  # 404 for a name outside the grid
        clear(self.db.get_bind(), self.current_user.name, server_name)
        self.redirect(url_path_join(self.hub.base_url, "home"))


class ConsoleStopHandler(_ConsoleMixin, SpawnHandler):
    @web.authenticated
    async def post(self, server_name: str) -> None:
        user = self.current_user
        self._cell(server_name)
        orm = user.orm_user.orm_spawners.get(server_name)
        if orm is not None:
            spawner = user.spawners[server_name]
            if spawner.active and spawner.pending != "stop":
                ends.requested(user.name, server_name, ends.Requester(user.name, "user"))  # "user"
                await self.stop_single_user(user, server_name)
        self.redirect(url_path_join(self.hub.base_url, "home"))


class ConsoleExtendHandler(_ConsoleMixin, SpawnHandler):
    @web.authenticated
    async def post(self, server_name: str) -> None:
        user = self.current_user
        self._cell(server_name)
        if server_name not in user.orm_user.orm_spawners:
            raise web.HTTPError(404, "%s", f"You have no server {server_name!r}")
        spawner = user.spawners[server_name]
        extend = getattr(spawner, "extend", None)
        try:
            seconds = int(self.get_body_argument("seconds", ""))
        except ValueError:
            raise web.HTTPError(400, "%s", "seconds: expected whole minutes in seconds (e.g. 1800)") from None
        if extend is None:
            raise web.HTTPError(400, "%s", "This server cannot be extended.")
        try:
            await extend(seconds)
        except ExtendRefused as e:
            raise web.HTTPError(e.status, "%s", e.message) from None
        self.redirect(url_path_join(self.hub.base_url, "home"))
