"""The idle culler service: jupyterhub-idle-culler with its API token kept out of its log.

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


def main() -> None:
    redact_from_log_records(os.environ.get("JUPYTERHUB_API_TOKEN", ""))
    from jupyterhub_idle_culler import main as culler_main

    culler_main()


if __name__ == "__main__":
    main()
