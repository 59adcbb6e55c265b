"""Where the proxy may send a user's URL: a host from a source the user cannot write, a
port from the user's side only after it is checked and confirmed.

- Host: for the SSH backend the login host from values (or ``singleuser.connectHost``); for
  Slurm the first node of the job's node list as slurmctld reports it (``squeue %N``),
  checked against ``slurm.nodePattern`` and mapped by ``slurm.nodeAddress``. Never what a
  job or a shell start-up file wrote.
- Port: what the server reported through files the user can write (the job's address
  file, jupyter_server's runtime file), so it must lie in ``singleuser.portRange`` and a
  Jupyter server for this user's URL prefix must answer there (``GET <prefix>api`` returns
  jupyter_server's JSON) before start() returns and the proxy adds the route.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from . import hostlist
from .settings import SingleuserSettings

DEFAULT_NODE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"
DEFAULT_NODE_ADDRESS = "{node}"
_ADDRESS_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:_-]*$")
# The most the hub reads of any reply from a user-run server ("is it Jupyter?"): a
# jupyter_server /api answer is ~30 bytes. Tornado's default would be 100 MiB per check.
MAX_REPLY_BYTES = 64 * 1024


class RouteRefused(RuntimeError):
    """The server's reported address is not one the proxy may be sent to."""


def node_address(
    system: str,
    nodelist: str,
    *,
    pattern: str | None = None,
    template: str | None = None,
    first_host: Callable[[str], str] = hostlist.first,
    key: str = "slurm",
) -> tuple[str, str]:
    """(node, address) of a job from its node list: the first node (``first_host``, the
    scheduler's reading of its node lists), checked against ``pattern``
    (``<key>.nodePattern``, a full match), then ``template`` (``<key>.nodeAddress``) filled
    with ``{node}`` and the pattern's named groups."""
    try:
        node = first_host(nodelist)
    except hostlist.HostlistError as e:
        raise RouteRefused(f"{system}: the scheduler reported a node list hpchub cannot read ({e})") from e
    pattern = pattern or DEFAULT_NODE_PATTERN
    m = re.fullmatch(pattern, node)
    if not m:
        raise RouteRefused(f"{system}: node {node} does not match {key}.nodePattern {pattern!r}")
    template = template or DEFAULT_NODE_ADDRESS
    try:
        address = template.format(node=node, **m.groupdict())
    except (KeyError, IndexError, ValueError) as e:
        raise RouteRefused(
            f"{system}: {key}.nodeAddress {template!r} names {e}, which is neither {{node}} nor a "
            f"named group of {key}.nodePattern"
        ) from e
    if not _ADDRESS_OK.match(address):
        raise RouteRefused(f"{system}: {key}.nodeAddress made {address!r} of node {node}: not a host name")
    return node, address


def check_port(system: str, singleuser: SingleuserSettings, port: int, source: str) -> int:
    low, high = singleuser.port_min, singleuser.port_max
    if not low <= port <= high:
        raise RouteRefused(
            f"{system}: {source} reported port {port}, outside singleuser.portRange {low}-{high}; "
            "refusing to route there"
        )
    return port


# Every other HTTP client in the hub process: JupyterHub's own start-up check of a server
# (wait_for_http_server) reads the reply of a user-run program too. The largest legitimate
# reply is the proxy's route table (~200 bytes a route: 2 MiB at 10,000 servers).
HUB_CLIENT_MAX_BODY = 8 * 1024 * 1024


def cap_hub_clients() -> None:
    """Bound what any AsyncHTTPClient of the hub reads (tornado's default: 100 MiB)."""
    AsyncHTTPClient.configure(None, max_body_size=HUB_CLIENT_MAX_BODY)


class ReplyTooLarge(RuntimeError):
    """A user-run server answered with more than MAX_REPLY_BYTES."""


async def fetch_capped(url: str, timeout: float, connect_timeout: float | None = None) -> tuple[int, bytes]:
    """GET a URL on a user-run server: (status code, body). At most MAX_REPLY_BYTES of the
    body are ever held: a longer reply raises ReplyTooLarge, its rest never read. Other
    failures as tornado raises them (HTTPClientError for a code >= 400, OSError)."""
    chunks: list[bytes] = []
    seen = 0
    declared = 0

    def header(line: str) -> None:
        nonlocal declared
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length" and value.strip().isdigit():
            declared = int(value.strip()[:20])

    def body(chunk: bytes) -> None:
        nonlocal seen
        seen += len(chunk)
        if seen <= MAX_REPLY_BYTES:
            chunks.append(chunk)

    # max_body_size makes tornado close the connection past the cap (the rest unread).
    client = AsyncHTTPClient(force_instance=True, max_body_size=MAX_REPLY_BYTES)
    try:
        r = await client.fetch(
            HTTPRequest(
                url,
                follow_redirects=False,
                request_timeout=timeout,
                connect_timeout=connect_timeout or timeout,
                decompress_response=False,  # a small gzip bomb would undo the cap
                header_callback=header,
                streaming_callback=body,
            )
        )
    except HTTPClientError as e:
        if declared > MAX_REPLY_BYTES or seen > MAX_REPLY_BYTES:
            raise ReplyTooLarge(f"a reply of more than {MAX_REPLY_BYTES} bytes") from e
        raise
    finally:
        client.close()
    if seen > MAX_REPLY_BYTES:
        raise ReplyTooLarge(f"a reply of more than {MAX_REPLY_BYTES} bytes")
    return r.code, b"".join(chunks)


async def confirm_jupyter(
    system: str, host: str, port: int, base_url: str, source: str, timeout: float = 30.0
) -> None:
    """Wait until a Jupyter server for ``base_url`` answers at host:port; RouteRefused when
    something else answers there (or nothing does within ``timeout``)."""
    url = f"http://{host}:{port}{base_url.rstrip('/')}/api"
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            code, raw = await fetch_capped(url, 10)
            body = json.loads(raw or b"null")
            if code == 200 and isinstance(body, dict) and isinstance(body.get("version"), str):
                return
            last = f"HTTP {code} without jupyter_server's version"
            break  # something answers, and it is not this user's Jupyter server
        except ReplyTooLarge as e:
            last = str(e)
            break
        except HTTPClientError as e:
            last = f"HTTP {e.code}"
            if e.code < 500 or e.code == 599 and e.response is not None:
                break
        except (OSError, ValueError) as e:
            last = f"{type(e).__name__}: {e}"
            if isinstance(e, ValueError):
                break  # an answer that is not JSON
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    raise RouteRefused(
        f"{system}: no Jupyter server for {base_url} answers at {host}:{port}, the address {source} "
        f"reported ({last}); refusing to route there"
    )
