"""The idle culler service: jupyterhub-idle-culler, told each server's timeout, with its API
token kept out of its log.

Each server's timeout (hpchub.culling: its cell's, its level's or the global one) reaches the
upstream culler as its ``cull_arbiter_hook``; the loader passes the policy in $HPCHUB_CULLING
and ``--timeout`` as the shortest of them (the ``inactive_limit`` the hook is given, and
half of it is the culler's default ``cull_every``).

jupyterhub-idle-culler schedules ``functools.partial(cull_idle, ..., api_token=...)`` on
tornado's loop; when a run fails (the hub restarting, a timeout), tornado logs "Exception in
callback <that partial>" -- the token in clear text in the hub pod's log. Every log record
of this process is therefore built with the token replaced; the culler itself is unchanged.

Run by the hub as a managed service: ``python -m hpchub.culler <jupyterhub_idle_culler args>``.
"""

from __future__ import annotations

import logging
import os
import traceback
from datetime import timedelta
from typing import Any

from traitlets.config import Config

from .culling import ENV, CullPolicy

REDACTED = "[redacted]"


def redact_from_log_records(secret: str) -> None:
    """Build every log record of this process with ``secret`` replaced, in its message,
    arguments and formatted traceback alike."""
    if not secret:
        return
    make_record = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        message = record.getMessage()
        if secret in message:
            record.msg, record.args = message.replace(secret, REDACTED), ()
        if record.exc_info and record.exc_info[0] is not None:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text, record.exc_info = text.replace(secret, REDACTED), None
        return record

    logging.setLogRecordFactory(factory)


class CullArbiter:
    """jupyterhub-idle-culler's ``cull_arbiter_hook``: a server is culled when it has been
    idle for its own timeout (``server["name"]`` is the cell, ``<system>-<level>``)."""

    def __init__(self, policy: CullPolicy) -> None:
        self.policy = policy

    def __call__(
        self, *, inactive: timedelta | None, inactive_limit: int, server: dict[str, Any], **kwargs: Any
    ) -> bool:
        return self.policy.idle_too_long(str(server.get("name") or ""), inactive)


def culler_config(environ: dict[str, str] | os._Environ[str]) -> Config:
    """The culler's config: the hook with the policy the loader passed (none: upstream's own
    check against ``--timeout``)."""
    config = Config()
    if environ.get(ENV):
        config.IdleCuller.cull_arbiter_hook = CullArbiter(CullPolicy.from_json(environ[ENV]))
    return config


def main() -> None:
    redact_from_log_records(os.environ.get("JUPYTERHUB_API_TOKEN", ""))
    from jupyterhub_idle_culler import IdleCuller

    # IdleCuller.launch_instance, with a line saying which timeouts it applies.
    app = IdleCuller.instance(config=culler_config(os.environ))
    app.initialize()
    if isinstance(app.cull_arbiter_hook, CullArbiter):
        app.log.info("hpchub: %s", app.cull_arbiter_hook.policy.describe())
    app.start()


if __name__ == "__main__":
    main()
