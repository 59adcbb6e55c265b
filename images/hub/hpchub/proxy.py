"""The hub's proxy client: configurable-http-proxy, with a server's activity left to the
notebook server itself.

JupyterHub reads the proxy's routes every ``last_activity_interval`` and takes each route's
``last_activity`` (the last request the proxy carried for it) as activity of the server.
Every request counts there: JupyterLab left open in a background tab polls its server
(hpchub-notebook's status every few seconds) and so keeps an idle server, and its allocation
or GPU node, from ever being culled. The notebook server knows better, and reports it
(jupyterhub-singleuser, every ``hub.activityIntervalSeconds``): API calls, kernel messages,
terminals, busy kernels (hpchub-notebook), but not the polls that are no one's work. So
routes are read without the proxy's ``last_activity``; everything else (adding, checking,
removing routes) is JupyterHub's own.
"""

from __future__ import annotations

from typing import Any

from jupyterhub.proxy import ConfigurableHTTPProxy


class NotebookActivityProxy(ConfigurableHTTPProxy):
    """configurable-http-proxy whose routes carry no activity (configured as
    ``c.ConfigurableHTTPProxy.*``, like JupyterHub's own)."""

    async def get_all_routes(self) -> dict[str, Any]:
        routes = await super().get_all_routes()
        for route in routes.values():
            route["data"].pop("last_activity", None)
        return routes
