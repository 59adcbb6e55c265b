"""The dispatcher: one spawner class for JupyterHub that becomes the right backend.

JupyterHub builds a spawner per named server with ``spawner_class(**kwargs)``. Instead of
wrapping a child (wrapspawner keeps port, server and state on the wrapper — its bugs #24
and #26), ``DispatchSpawner.__new__`` looks the server name ``<system>-<level>`` up in the
grid and returns an instance of the backend class itself (SSH, Slurm or Spin). Those
classes subclass DispatchSpawner, so they share its configuration traits, and the object
the hub holds *is* the backend: its state, port and user_options go to the hub DB through
the normal ``get_state``/``orm_spawner`` paths with nothing in between.

The backends subclass DispatchSpawner and ``__new__`` returns them: the one place two
modules need each other. The dispatcher therefore reaches them through a registry of
dotted paths resolved at run time (``backend_class``), so no import runs back up, and a
new scheduler is an adapter and a registry line in hpchub.schedulers, not a branch here.

A name that is not a cell (or a cell removed from values while its server was running)
gets a RefusedSpawner: start answers 404, poll says "not running", so a stale DB row can
never crash the hub at start-up.
"""

from __future__ import annotations

import asyncio
import importlib
import re
from typing import Any
from urllib.parse import quote, urlencode

from jupyterhub.handlers.pages import SpawnHandler
from jupyterhub.spawner import Spawner
from jupyterhub.utils import url_path_join
from sqlalchemy.orm import object_session
from tornado import web
from traitlets import Dict, default

from .. import endings, ends
from ..access import refusal
from ..endings import Ending
from ..grid import Cell, Grid, UnknownServer
from ..options import CleanOptions, OptionsError, validate
from ..schedulers import SCHEDULERS
from ..serverstate import ServerStatus
from ..urls import unnamed_server_target

# What the notebook package says it is (``?client=`` of its status requests), bounded.
NOTEBOOK_CLIENT = re.compile(r"hpchub-notebook/[0-9A-Za-z.+-]{1,32}")


class DispatchSpawner(Spawner):
    """Routes ``<system>-<level>`` named servers to the backend chosen in values."""

    systems = Dict(
        config=True,
        help="The chart's `systems` map: login hosts, singleuser, Slurm limits and levels per system.",
    )
    service_levels = Dict(
        config=True,
        help="The chart's `serviceLevels` map: the grid's columns (title, configurable, ...).",
    )
    spin = Dict(
        config=True,
        help="The chart's `spin` map: image, versions, resources and volumes of in-cluster notebooks.",
    )
    identity = Dict(
        config=True,
        help=(
            "The chart's `identity` map: where users' uid/gid come from (`fromAuthState` keys, "
            "`lookup` on a system as a service account) and the floors `minUid`/`minGid`."
        ),
    )
    ssh_ca = Dict(
        config=True,
        help=(
            "The hub's SSH user CA: {'enabled': bool, 'certLifetimeMinutes': int, "
            "'privateKeyFile': path, 'denyPrincipals': [...], 'minUid': int, "
            "'sourceAddresses': [CIDR, ...]}. When enabled, users without SSH credentials in "
            "auth_state get a short-lived certificate (principal = username), never root or "
            "a system account."
        ),
    )

    # Set by __new__ for backend instances.
    cell: Cell | None = None
    clean_options: CleanOptions | None = None
    # How this start ended is recorded (hpchub.ends): a poll, a failed start or a stop
    # hpchub decided wrote it; the stop that follows does not write another.
    end_recorded = False
    # "hpchub-notebook/<version>" once this run's notebook package asked the hub for its
    # status (hpchub.api); the console says where it is missing.
    notebook_client: str = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls is not DispatchSpawner:  # a backend class being built directly
            return super().__new__(cls)
        orm_spawner = kwargs.get("orm_spawner")
        name = orm_spawner.name if orm_spawner is not None else kwargs.get("name", "")
        config = kwargs.get("config")
        section = config.DispatchSpawner if config is not None and "DispatchSpawner" in config else {}
        try:
            grid = Grid.cached(
                dict(section.get("systems", {})),
                dict(section.get("service_levels", {})),
                dict(section.get("spin", {})),
            )
            cell = grid.cell(name)
        except UnknownServer:
            obj = RefusedSpawner(*args, **kwargs)
            return obj
        backend = backend_class(cell.backend)
        obj = backend(*args, **kwargs)
        obj.cell = cell
        obj.configure_from_cell()
        return obj

    def configure_from_cell(self) -> None:
        """Set per-cell traits (timeouts, image, ...) once the cell is known."""

    async def run_auth_state_hook(self, auth_state: Any) -> None:
        """JupyterHub's ``GET /hub/spawn/<user>/<server>?<options>`` starts a server with
        options taken from the query (``options_from_query``), and JupyterHub checks no
        XSRF token on a top-level GET: a link in a mail could spend a victim's allocation
        on 16 nodes for 48 hours. Such a GET gets the cell's form instead (a POST with
        XSRF starts it); a GET without options starts the cell as it is, as JupyterHub's
        own does (the console's Start button without JavaScript)."""
        handler = getattr(self, "handler", None)
        if isinstance(handler, SpawnHandler) and handler.request.method == "GET" and self.cell is not None:
            asked = set(handler.request.query_arguments) - {"next", "display_name", "_xsrf"}
            if asked:
                self.log.warning(
                    "Not starting %s from a link with options %s: showing the form",
                    self._log_name,
                    ", ".join(sorted(asked))[:200],
                )
                form = url_path_join(handler.hub.base_url, "console/options", self.cell.server_name)
                next_url = handler.get_argument("next", "")
                self.handler = None
                handler.redirect(form + (f"?{urlencode({'next': next_url})}" if next_url else ""))
                raise web.Finish()
        await super().run_auth_state_hook(auth_state)

    def run_pre_spawn_hook(self) -> Any:
        """Every start (REST, /hub/spawn, the console, Relaunch) passes here once its options
        are accepted: how the server's last run ended is no longer its cell's news."""
        session = object_session(self.orm_spawner) if self.orm_spawner is not None else None
        if session is not None and self.user is not None:
            endings.clear(session.get_bind(), self.user.name, self.name)
        return super().run_pre_spawn_hook()

    @property
    def grid(self) -> Grid:
        return Grid.cached(self.systems, self.service_levels, self.spin)

    def get_env(self) -> dict[str, Any]:
        """JupyterHub's environment, plus HPCHUB_STATUS_URL: this server's status endpoint
        (hpchub.api) for hpchub-notebook. Built on JUPYTERHUB_API_URL, so the connect-back
        address and tunnel mode's relay (which rewrites that URL) apply to it too."""
        env = super().get_env()
        api = str(env.get("JUPYTERHUB_API_URL") or "").rstrip("/")
        if api and self.user is not None:
            env["HPCHUB_STATUS_URL"] = (
                f"{api}/hpchub/servers/{quote(self.user.name, safe='')}/{quote(self.name, safe='')}"
            )
        return env

    def note_notebook_client(self, client: str) -> bool:
        """Record the notebook package that asked for this server's status; True when that
        is news (the caller then stores the state). Anything but its own name is ignored."""
        if not NOTEBOOK_CLIENT.fullmatch(client) or client == self.notebook_client:
            return False
        self.notebook_client = client
        return True

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.notebook_client:
            state["notebook_client"] = self.notebook_client
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        client = str(state.get("notebook_client") or "")
        self.notebook_client = client if NOTEBOOK_CLIENT.fullmatch(client) else ""

    def clear_state(self) -> None:
        super().clear_state()
        self.notebook_client = ""

    @default("apply_user_options")
    def _default_apply_user_options(self) -> Any:
        # JupyterHub runs this hook before start and turns an HTTPError into the API
        # response: bad options are a 400 naming the field, before anything is sent.
        async def apply(spawner: DispatchSpawner, user_options: dict[str, Any]) -> None:
            await spawner.check_options(user_options)

        return apply

    async def check_options(self, user_options: dict[str, Any] | None) -> CleanOptions:
        """The check every start goes through (REST, /hub/spawn, the console): the cell's
        rules (maintenance, groups, allocations: 403 with the reason), then the options
        (400 naming the field). Runs before anything reaches a login node or Kubernetes."""
        if self.cell is None:
            raise self.refuse()
        auth_state = await self.user.get_auth_state() if self.user else None
        refused = refusal(self.cell, self.user, auth_state)
        if refused:
            raise web.HTTPError(403, "%s", refused.message)
        try:
            clean = validate(self.cell, auth_state, user_options or {})
        except OptionsError as e:
            # The message goes in as an argument: user text may contain '%'.
            raise web.HTTPError(400, "%s", f"Invalid option {e.field}: {e.message}") from e
        self.clean_options = clean
        return clean

    # What a name outside the grid does. The backends override all three; SpinSpawner
    # puts KubeSpawner first in its bases so KubeSpawner's versions win there.
    async def start(self) -> Any:
        raise self.refuse()

    async def poll(self) -> int | None:
        return 0  # nothing runs under an unknown name

    async def stop(self, now: bool = False) -> None:
        return None

    def refuse(self) -> web.HTTPError:
        return web.HTTPError(404, "%s", f"No server named {self.name!r} is offered here")

    def server_status(self) -> ServerStatus:
        """What the backend knows of its run beyond JupyterHub's own state (serverstate):
        for a backend that says nothing more (Spin), whether its notebook package called."""
        return ServerStatus(notebook_client=self.notebook_client)

    # --- how it ended (hpchub.endings, written through hpchub.ends) -------------------

    def ending(self, cause: str, details: dict[str, Any] | None = None, log_tail: str = "") -> Ending:
        """An ending of this server, with the options it was started with (Relaunch)."""
        assert self.cell is not None
        return Ending(
            username=self.user.name,
            server=self.name,
            system=self.cell.system.name,
            level=self.cell.level.name,
            backend=self.cell.backend,
            cause=cause,
            details=details or {},
            log_tail=log_tail,
            options=dict(self.user_options or {}),
        )

    @property
    def db_engine(self) -> Any:
        """The hub's database (the one JupyterHub keeps this server's row in)."""
        session = object_session(self.orm_spawner) if self.orm_spawner is not None else None
        return session.get_bind() if session is not None else None

    def record_end(self, cause: str, details: dict[str, Any] | None = None, log_tail: str = "") -> None:
        """Record how this start ended, once (the stop that follows a poll's end or a
        failed start writes nothing more)."""
        if self.end_recorded or self.cell is None:
            return
        self.end_recorded = True
        ends.record(self.db_engine, self.ending(cause, details, log_tail))

    def new_start(self) -> None:
        """A start begins: its ending is still to come."""
        self.end_recorded = False
        if self.user is not None:
            ends.forget(self.user.name, self.name)

    def stop_begins(self) -> None:
        """A stop begins that no poll, failed start or decision of hpchub explains: it was
        asked for. Its requester (hpchub.ends) gives the cause."""
        if self.end_recorded or self.cell is None or self.user is None:
            return
        self.end_recorded = True
        orm = self.orm_spawner
        ends.stopping(
            ends.PendingStop(
                self.db_engine,
                self.ending("unknown"),
                last_activity=ends.last_activity(orm.last_activity if orm is not None else None),
            )
        )

    async def rename(self, old_name: str, new_name: str) -> None:
        # The name *is* the system and level: renaming would move a running server.
        raise web.HTTPError(
            400, "Servers are named after their system and service level; they cannot be renamed"
        )


class RefusedSpawner(DispatchSpawner):
    """Stands in for a name that is not (or no longer) a cell of the grid.

    JupyterHub creates the server's DB row before the spawner can refuse, and such rows
    count against ``named_server_limit_per_user``; after refusing, the row is removed
    again once the hub has finished with the request.
    """

    def refuse(self) -> web.HTTPError:
        # Remove the row the hub made for this name once the failed spawn has unwound.
        if self.user is not None and self.orm_spawner is not None and self.name:
            asyncio.ensure_future(self._forget())
        if not self.name:
            return web.HTTPError(
                404, "%s", "Every server here is named <system>-<level>; choose one in the console"
            )
        return web.HTTPError(404, "%s", f"No server named {self.name!r} is offered here")

    async def run_auth_state_hook(self, auth_state: Any) -> None:
        """JupyterHub's spawn page for the unnamed default server (``/hub/spawn/<name>``,
        the "Launch server" button of ``/user/<name>/<path>``) calls this first, with its
        request as ``self.handler``: send the browser to the console instead, with the
        link's path kept (hpchub.urls, as hpchub.console.links does). Other callers (the REST API) get the 404."""
        handler = getattr(self, "handler", None)
        if (
            not self.name
            and isinstance(handler, SpawnHandler)
            and handler.request.method == "GET"
            and not handler._finished
        ):
            self.handler = None
            handler.redirect(
                unnamed_server_target(handler.base_url, self.user, handler.get_argument("next", ""))
            )
            raise web.Finish()
        await super().run_auth_state_hook(auth_state)

    async def _forget(self) -> None:
        for _ in range(100):
            await asyncio.sleep(0.1)
            if not self.pending:
                break
        if self.active or self.orm_spawner is None or self.user.spawners.get(self.name) is not self:
            return
        session = object_session(self.orm_spawner)
        if session is None:
            return
        self.user.spawners.pop(self.name, None)
        session.delete(self.orm_spawner)
        session.commit()
        self.log.info("Removed the refused server name %r of %s", self.name, self.user.name)


# The backends that are not batch schedulers, by dotted path (a batch scheduler's spawner
# comes from hpchub.spawners.batch.spawner_for). Resolved when a server of the backend is
# first made: Spin's class pulls in kubernetes_asyncio, which sites without Spin never load.
BACKENDS = {
    "kubernetes": "hpchub.spawners.spin:SpinSpawner",
    "ssh": "hpchub.spawners.loginnode:SSHSpawner",
}


def backend_class(backend: str) -> type[DispatchSpawner]:
    """The spawner class serving ``backend`` (a registry lookup, not an if-chain)."""
    if backend in SCHEDULERS:
        batch = importlib.import_module("hpchub.spawners.batch")
        return batch.spawner_for(backend)
    try:
        module, _, name = BACKENDS[backend].partition(":")
    except KeyError:
        raise ValueError(f"unknown backend {backend!r}") from None
    return getattr(importlib.import_module(module), name)
