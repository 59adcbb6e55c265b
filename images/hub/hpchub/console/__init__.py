"""The console: /hub/home as a grid of systems x service levels, the configurable form,
the no-JavaScript stop and Extend, the admin view of every server, and the docs served before login.

`setup(c, values)` is the only thing the config loader calls; it sets the template path,
the extra handlers and the template variables the console's templates read.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jupyterhub.handlers.static import CacheControlStaticFilesHandler

from ..culling import CullPolicy
from ..grid import Grid
from ..values import ConfigError
from .admin import AdminServersHandler, AdminStopHandler
from .docs import DocsHandler
from .form import spawner_options_form, spawner_options_from_form
from .handlers import ConsoleExtendHandler, ConsoleOptionsHandler, ConsoleStopHandler
from .links import ConsoleOpenHandler, user_redirect_hook
from .page import build_page

PACKAGE = Path(__file__).resolve().parent.parent
TEMPLATES = PACKAGE / "templates"
STATIC = PACKAGE / "static"


def setup(c: Any, values: Mapping[str, Any], grid: Grid | None = None) -> None:
    """Wire the console into a JupyterHub config object `c`. Idempotent."""
    grid = grid or Grid.from_values(values)
    console = values.get("console") or {}
    culling = CullPolicy.from_values(values)  # a running cell says when it stops idle

    paths = list(c.JupyterHub.get("template_paths") or [])
    if str(TEMPLATES) not in paths:
        c.JupyterHub.template_paths = [str(TEMPLATES), *paths]

    handlers = [
        h
        for h in (c.JupyterHub.get("extra_handlers") or [])
        if not str(h[0]).startswith(("/console", "/docs"))
    ]
    c.JupyterHub.extra_handlers = handlers + [
        (r"/console/options/([^/]+)", ConsoleOptionsHandler, {"grid": grid}),
        (r"/console/stop/([^/]+)", ConsoleStopHandler, {"grid": grid}),
        (r"/console/extend/([^/]+)", ConsoleExtendHandler, {"grid": grid}),
        (r"/console/admin/?", AdminServersHandler, {"grid": grid}),
        (r"/console/admin/stop/([^/]+)/([^/]+)", AdminStopHandler, {"grid": grid}),
        (r"/console/open/(.*)", ConsoleOpenHandler),
        (r"/console/static/(.*)", CacheControlStaticFilesHandler, {"path": str(STATIC)}),
        (r"/docs/?", DocsHandler),
        (r"/docs/([a-z-]+)", DocsHandler),
    ]

    def console_for(user: Any):
        # JupyterHub calls template_vars callables with the current user (or None).
        def page(auth_state: Mapping[str, Any] | None, hub_base_url: str, open_path: str = ""):
            return build_page(grid, user, auth_state, hub_base_url, open_path, culling)

        return page

    # Links that name no server (/hub/user-redirect/<path>, nbgitpuller): hpchub.console.links.
    default_cell = str(console.get("defaultCell") or "")
    if default_cell and default_cell not in grid.cells:
        raise ConfigError(
            f'HPCHUB-R007 console.defaultCell: "{default_cell}" is not a cell; use <system>-<level> of a '
            f"systems.<system>.levels.<level>: {', '.join(sorted(grid.cells))}"
        )
    c.JupyterHub.user_redirect_hook = user_redirect_hook(grid, default_cell)

    # JupyterHub's own spawn page (the no-JavaScript path) shows the same form fields.
    c.DispatchSpawner.options_form = spawner_options_form
    c.DispatchSpawner.options_from_form = spawner_options_from_form

    tv = dict(c.JupyterHub.get("template_vars") or {})
    tv.update(
        hpchub_console=console_for,
        hpchub_title=console.get("title", "Jupyter"),
        hpchub_support_url=console.get("supportUrl", ""),
    )
    c.JupyterHub.template_vars = tv
