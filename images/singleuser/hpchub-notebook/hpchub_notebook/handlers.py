"""The server extension's REST endpoints under ``<base_url>hpchub/`` (authenticated like
every jupyter_server API; POSTs are XSRF-checked by jupyter_server)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from jupyter_server.base.handlers import APIHandler
from tornado import web

from .hubclient import HubError
from .schedule import frontend_view

if TYPE_CHECKING:
    from .extension import HpchubNotebook


class _Base(APIHandler):
    @property
    def hpchub(self) -> HpchubNotebook:
        return self.settings["hpchub_notebook"]


class StatusHandler(_Base):
    # The browser polls this every few seconds: polling is not the user being active.
    _track_activity = False

    @web.authenticated
    async def get(self) -> None:
        self.finish(json.dumps(self.hpchub.view()))


class ExtendHandler(_Base):
    @web.authenticated
    async def post(self) -> None:
        try:
            seconds = json.loads(self.request.body or b"{}").get("seconds")
        except (ValueError, AttributeError):
            seconds = None
        if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 < seconds <= 366 * 86400:
            raise web.HTTPError(400, "seconds: expected a positive whole number of seconds")
        try:
            await self.hpchub.poller.extend(seconds)
        except HubError as e:
            # The hub's refusal, word for word, for the user; a 5xx of the hub is a bad gateway.
            self.set_status(e.code if 400 <= e.code < 500 else 502)
            self.finish(json.dumps({"message": e.message}))
            return
        self.finish(json.dumps(self.hpchub.view()))


class KernelDeathHandler(_Base):
    _track_activity = False

    @web.authenticated
    async def get(self, kernel_id: str) -> None:
        reason = self.hpchub.deaths.reason(kernel_id)
        if reason is None:
            raise web.HTTPError(404, "no recorded death of this kernel")
        reason["seconds_ago"] = time.time() - reason["at"]
        self.finish(json.dumps(reason))


def handlers(base_url: str) -> list[tuple[str, Any]]:
    from jupyter_server.utils import url_path_join as j

    return [
        (j(base_url, "hpchub", "status"), StatusHandler),
        (j(base_url, "hpchub", "extend"), ExtendHandler),
        (j(base_url, "hpchub", "kernels", r"(?P<kernel_id>[0-9a-fA-F-]{1,64})", "death"), KernelDeathHandler),
    ]


__all__ = ["handlers", "frontend_view"]
