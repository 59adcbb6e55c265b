"""The hub's status endpoint for this server: polled (every ~60 s, jittered, backing off on
errors) and asked to extend. Never from the browser: the server holds the API token."""

from __future__ import annotations

import asyncio
import json
import os
import random
import ssl
import time
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from .status import HubStatus, StatusError, parse_status_body

MAX_BACKOFF = 600.0


def status_url(env: dict[str, str] | None = None) -> str | None:
    """HPCHUB_STATUS_URL when the hub set it, else built from JupyterHub's own variables."""
    env = dict(os.environ) if env is None else env
    if env.get("HPCHUB_STATUS_URL"):
        return env["HPCHUB_STATUS_URL"]
    api, user = env.get("JUPYTERHUB_API_URL"), env.get("JUPYTERHUB_USER")
    if not api or not user:
        return None
    server = env.get("JUPYTERHUB_SERVER_NAME", "")
    return f"{api.rstrip('/')}/hpchub/servers/{quote(user, safe='')}/{quote(server, safe='')}"


def with_client(url: str, version: str, suffix: str = "") -> str:
    """``url`` + ``suffix`` (literally: "{status URL}/extend"), with
    ``client=hpchub-notebook/<version>`` in the query (the hub records the package's presence)."""
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, f"client=hpchub-notebook/{quote(version)}") if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path + suffix, query, ""))


def backoff(failures: int, interval: float) -> float:
    """Seconds to the next try after ``failures`` failures in a row (15 s, 30 s, ... 10 min)."""
    if failures <= 0:
        return interval
    return min(MAX_BACKOFF, 15.0 * 2 ** (failures - 1))


def jitter(seconds: float) -> float:
    """±10 %, so that a thousand notebooks started together do not poll together."""
    return seconds * random.uniform(0.9, 1.1)


def _ssl_context(env: dict[str, str]) -> ssl.SSLContext | None:
    # JupyterHub's internal_ssl: the hub's API wants this server's client certificate.
    cert, key, ca = (
        env.get(k) for k in ("JUPYTERHUB_SSL_CERTFILE", "JUPYTERHUB_SSL_KEYFILE", "JUPYTERHUB_SSL_CLIENT_CA")
    )
    if not (cert and key):
        return None
    ctx = ssl.create_default_context(cafile=ca or None)
    ctx.load_cert_chain(cert, key)
    return ctx


class HubError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class StatusPoller:
    """Keeps the last good status; a failed poll keeps it and retries later."""

    def __init__(
        self,
        url: str | None,
        token: str,
        version: str,
        interval: float,
        log: Any,
        env: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self.token = token
        self.version = version
        self.interval = interval
        self.log = log
        self.status: HubStatus | None = None
        self.error: str | None = None if url else "no hub to ask (JUPYTERHUB_API_URL is not set)"
        self.failures = 0
        self.fetched_at: float | None = None
        self._wake = asyncio.Event()
        self._ssl = _ssl_context(dict(os.environ) if env is None else env)
        self._task: asyncio.Task[None] | None = None

    def _request(self, url: str, method: str = "GET", body: bytes | None = None) -> HTTPRequest:
        return HTTPRequest(
            url,
            method=method,
            body=body,
            headers={
                "Authorization": f"token {self.token}",
                "User-Agent": f"hpchub-notebook/{self.version}",
                "Accept": "application/json",
                **({"Content-Type": "application/json"} if body is not None else {}),
            },
            connect_timeout=10,
            request_timeout=20,
            ssl_options=self._ssl,
        )

    async def fetch(self) -> HubStatus:
        """One GET of the status; raises HubError (with the hub's message) or StatusError."""
        assert self.url
        try:
            resp = await AsyncHTTPClient().fetch(self._request(with_client(self.url, self.version)))
        except HTTPClientError as e:
            raise HubError(e.code, _hub_message(e)) from None
        except (OSError, asyncio.TimeoutError) as e:
            raise HubError(599, f"the hub could not be reached ({e})") from None
        return parse_status_body(resp.body)

    async def poll_once(self) -> bool:
        try:
            self.status = await self.fetch()
        except (HubError, StatusError) as e:
            self.failures += 1
            self.error = str(e)
            # 404 is what a hub without hpchub's endpoint says: quietly, at debug level.
            level = self.log.debug if isinstance(e, HubError) and e.code == 404 else self.log.warning
            level("hpchub: status from %s failed (%s); keeping the last known", self.url, e)
            return False
        self.failures, self.error, self.fetched_at = 0, None, time.time()
        return True

    async def extend(self, seconds: int) -> HubStatus:
        """POST {url}/extend; the new status, or HubError with the hub's refusal."""
        if not self.url:
            raise HubError(503, self.error or "no hub")
        body = json.dumps({"seconds": seconds}).encode()
        try:
            resp = await AsyncHTTPClient().fetch(
                self._request(with_client(self.url, self.version, "/extend"), "POST", body)
            )
        except HTTPClientError as e:
            raise HubError(e.code, _hub_message(e)) from None
        except (OSError, asyncio.TimeoutError) as e:
            raise HubError(502, f"the hub could not be reached ({e})") from None
        try:
            self.status = parse_status_body(resp.body)
        except StatusError as e:
            raise HubError(502, f"the hub's answer was not understood ({e})") from None
        self.fetched_at = time.time()
        self.wake()  # and poll again at once, as the hub may have more to say
        return self.status

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while self.url:
            await self.poll_once()
            delay = jitter(backoff(self.failures, self.interval))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except asyncio.TimeoutError:
                pass

    def start(self) -> None:
        if self.url and self._task is None:
            self._task = asyncio.ensure_future(self.run())


def _hub_message(e: HTTPClientError) -> str:
    """JupyterHub's error JSON is {"status": code, "message": "..."}: its message, else the
    HTTP reason. Bounded: the text goes to the user's screen."""
    body = e.response.body if e.response is not None else b""
    try:
        message = json.loads(body.decode("utf-8")).get("message")
    except (ValueError, AttributeError, UnicodeDecodeError):
        message = None
    if not isinstance(message, str) or not message.strip():
        message = f"HTTP {e.code}: {e.message}" if e.code != 599 else f"the hub could not be reached ({e})"
    return message.strip()[:1000]
