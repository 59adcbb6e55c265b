"""A failed start's message may quote what the user's shell or job printed: the hub's log
lines (hpchub's and JupyterHub's, which logs the HTTPError's text) quote it escaped, on one
line; the user reads it as written."""

from __future__ import annotations

import logging

import pytest
from tornado import web

from hpchub.serverstate import error_text

from .test_spawners_dispatch import make

# A start-up script's output forging a second log line, then a terminal escape.
OUTPUT = "ok\n[E 2026-11-24 10:00:00.000 JupyterHub app:1] alice is an admin now\r\x1b[2K\x1b[31mred"
MESSAGE = (
    f"Perlmutter: the start-up script ~/s.sh failed with exit code 1. Last lines of its output:\n{OUTPUT}"
)


def one_escaped_line(text: str) -> None:
    assert not any(ch in text for ch in "\n\r\x1b"), text
    assert "\\n[E 2026-11-24" in text and "\\r\\x1b[2K\\x1b[31mred" in text, text


async def test_the_users_output_is_one_escaped_log_line_and_reads_as_written(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    spawner = make("pm-shared")
    recorded: list[dict] = []

    async def start_remote() -> tuple[str, int]:
        raise RuntimeError(MESSAGE)

    monkeypatch.setattr(spawner, "start_remote", start_remote)
    monkeypatch.setattr(
        spawner, "record_end", lambda cause, details=None, log_tail="": recorded.append(details)
    )
    spawner.log = logging.getLogger("hpchub.test_start_failure")
    with caplog.at_level(logging.ERROR, "hpchub.test_start_failure"), pytest.raises(web.HTTPError) as e:
        await spawner.start()

    (record,) = caplog.records
    one_escaped_line(logging.Formatter("[%(levelname)s] %(message)s").format(record))
    # JupyterHub logs "Error starting alice's server: {e}" (and tornado the same text).
    one_escaped_line(str(e.value))
    assert e.value.status_code == 500
    # What the user reads (JupyterHub's pages and progress, the console) and what is
    # recorded of the ending keep the lines.
    assert e.value.jupyterhub_message == error_text(e.value) == MESSAGE
    assert recorded == [{"message": MESSAGE}]


def test_an_http_error_keeps_its_status_and_its_words() -> None:
    refused = web.HTTPError(403, "%s", f"Perlmutter: a pre-spawn check refused ({OUTPUT})")
    failure = make("pm-shared").start_failure(refused)
    assert failure.status_code == 403
    one_escaped_line(str(failure))
    assert error_text(failure) == error_text(refused)
