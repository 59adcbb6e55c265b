"""What would be left on the supercomputer and in Spin if the hub went away now.

- ``GET /hub/api/hpchub/leftovers``: ``{"servers": [...], "cancellations": [...]}`` — the
  servers the hub still has (running, starting or stopping; where they run) and the
  cancellations the reaper has not confirmed yet (hpchub/reaper.py: a stop that slurmctld
  or a login node could not confirm). Scope ``read:servers`` on every server.
- ``POST /hub/api/hpchub/leftovers/retry``: the reaper tries every pending cancellation now
  instead of at its next backoff. Scope ``delete:servers`` on every server.

The chart's uninstall hook (hpchub/uninstall.py) lets ``helm uninstall`` remove the hub only
once both lists are empty, and otherwise names each entry and how to cancel it by hand:
after the hub is gone nothing else knows these jobs and processes.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from jupyterhub.apihandlers import APIHandler
from jupyterhub.scopes import needs_scope

from . import reaper
from .reaper_table import Cancellation, pending
from .schedulers import SCHEDULERS
from .servers import ServerRow, server_rows


def cancellation_json(row: Cancellation) -> dict[str, Any]:
    out = asdict(row)
    out.update(what=row.what, by_hand=reaper.by_hand(row))
    return out


def server_by_hand(row: ServerRow) -> str:
    """How an operator ends a batch job of a server the hub still has (its scheduler's
    own cancel command); "" for the other backends (the hook words those itself: it knows
    the release's namespace)."""
    scheduler = SCHEDULERS.get(row.backend)
    if scheduler is None or not row.job_id:
        return ""
    command = scheduler.cancel_by_hand("", row.job_id, row.user)
    return f"{command}   (on a login node of {row.system}, as {row.user} or root)"


class LeftoversHandler(APIHandler):
    @needs_scope("read:servers")
    def get(self) -> None:
        servers = []
        for r in server_rows(self.db, self.users):
            d = asdict(r)
            d["started"] = r.started.isoformat() if r.started else None
            d["by_hand"] = server_by_hand(r)
            servers.append(d)
        held = [cancellation_json(r) for r in pending(self.db.get_bind())]
        self.write(json.dumps({"servers": servers, "cancellations": held}))


class RetryHandler(APIHandler):
    @needs_scope("delete:servers")
    def post(self) -> None:
        n = reaper.retry_now(self.db.get_bind())
        self.set_status(202)
        self.write(json.dumps({"retrying": n}))


HANDLERS = [
    (r"/api/hpchub/leftovers", LeftoversHandler),
    (r"/api/hpchub/leftovers/retry", RetryHandler),
]
