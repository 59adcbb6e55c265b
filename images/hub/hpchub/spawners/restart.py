"""What a hub restart does to HPC servers that were not (yet) running: adoption.

JupyterHub 6.1 checks every server with a DB row at start-up (``init_spawners`` ->
``check_spawner``): ``poll()``, then ``get_url()``, then ``_wait_up`` on that URL for
``http_timeout`` — and stops the server when it does not answer. A Slurm job still queued
has no server to answer, so a plain restart cancelled it (its queue place lost), and any
check that failed for a passing reason stopped a live server.

Waiting inside ``get_url`` until the job runs would hold the check (``pending ==
"check"``) for hours: JupyterHub refuses a DELETE of a server pending a check (a 500), the
route of a late check is only added after *every* check finished, and OAuth client
clean-up waits with it. Instead, a run whose address cannot be confirmed is **adopted**:

1. ``get_url`` turns the spawner into a pending spawn, exactly what it was before the
   restart: ``_spawn_pending`` with ``_spawn_future`` = the adoption task. The REST model
   says ``pending: "spawn"``, ``/progress`` streams the queue state, the console shows
   "Queued" with reason and expected start, and a DELETE cancels the adoption and stops
   the run the way it stops any pending spawn.
2. ``get_url`` returns the URL of a placeholder on the hub's loopback that answers every
   request, so JupyterHub's ``_wait_up`` passes at once and the check ends: start-up is
   not held, polling starts. The placeholder is never routed to (the server is pending,
   and JupyterHub routes only ready servers).
3. The adoption task waits (backend ``wait_for_server``: squeue / the pid file, at the
   backend's pace, transient errors retried) until the server answers for this user's
   URL prefix, writes the real address into the DB row, adds the proxy route and clears
   the pending state. A run that ended first (or outlived its start timeout) is stopped
   and the failure is what the console and ``/progress`` show.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

from sqlalchemy.orm import object_session
from tornado import httpclient, httpserver, netutil, web

from .. import claims, routing
from ..serverstate import Phase, error_text


class RemoteSpawner(Protocol):
    """What adoption needs of a spawner (hpchub.spawners.remote.RemoteSpawner has it)."""

    name: str
    user: Any
    server: Any
    orm_spawner: Any
    log: Any
    pending: str | None
    run_id: str | None
    phase: Phase | None
    started: float | None
    start_timeout: float
    _adoption: asyncio.Future[Any] | None
    _spawn_pending: bool
    _spawn_future: asyncio.Future[Any] | None
    _events: list[dict[str, Any]]

    @property
    def system_name(self) -> str: ...

    @property
    def _log_name(self) -> str: ...

    def _event(self, message: str, progress: int | None = None) -> None: ...

    def set_phase(self, phase: Phase, save: bool = True) -> None: ...

    def url_for(self, host: str, port: int) -> str: ...

    async def wait_for_server(self, deadline: float | None) -> tuple[str, int]: ...

    def start_failure(self, e: BaseException) -> web.HTTPError: ...


class _PlaceholderHandler(web.RequestHandler):
    def get(self, *args: Any) -> None:
        import jupyterhub

        # Else JupyterHub warns of a "single-user server < 0.8".
        self.set_header("X-JupyterHub-Version", jupyterhub.__version__)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"hpchub": "adopting a server after a hub restart"}))


class Placeholder:
    """One loopback HTTP listener per hub process, started on first use."""

    def __init__(self) -> None:
        self.port: int | None = None
        self._server: httpserver.HTTPServer | None = None

    def url(self) -> str:
        if self.port is None:
            sockets = netutil.bind_sockets(0, "127.0.0.1")
            self._server = httpserver.HTTPServer(web.Application([(r"/(.*)", _PlaceholderHandler)]))
            self._server.add_sockets(sockets)
            self.port = sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
            self.port = None


placeholder = Placeholder()


def adopt(spawner: RemoteSpawner) -> str:
    """Hand the run to an adoption task; the URL JupyterHub's check may wait on."""
    task = asyncio.ensure_future(_adopt(spawner))
    spawner._adoption = task
    spawner._spawn_pending = True
    spawner._spawn_future = task

    def done(f: asyncio.Future[Any]) -> None:
        # As JupyterHub's own spawn future does: a cancelled or finished adoption clears
        # the future; a failed one keeps it, so the console and /progress show why.
        spawner._spawn_pending = False
        if f.cancelled() or f.exception() is None:
            spawner._spawn_future = None

    task.add_done_callback(done)
    assert spawner.server is not None
    return placeholder.url() + spawner.server.base_url


async def _adopt(spawner: RemoteSpawner) -> str:
    spawner.log.info(
        "%s: adopting %s (run %s, %s) after the hub restart",
        spawner.system_name,
        spawner._log_name,
        spawner.run_id,
        spawner.phase,
    )
    spawner._events = []
    spawner._event(f"The hub restarted; finding your server on {spawner.system_name} again", 5)
    deadline = None
    if spawner.phase != "running" and spawner.started:
        deadline = float(spawner.started) + float(spawner.start_timeout)
    try:
        host, port = await spawner.wait_for_server(deadline)
    except asyncio.CancelledError:
        raise
    except Exception as e:
        spawner.log.error(
            "%s: %s could not be adopted: %s",
            spawner.system_name,
            spawner._log_name,
            claims.shown(error_text(e), claims.MAX_LOGGED),
        )
        # Stopped as a failed spawn is: the run (if any) is cancelled, the row cleared;
        # the message stays with the spawn future for the console.
        try:
            await spawner.user.stop(spawner.name)
        except Exception:
            spawner.log.exception("%s: stopping %s failed", spawner.system_name, spawner._log_name)
        raise spawner.start_failure(e) from e
    spawner.set_phase(Phase.RUNNING)
    await move_route(spawner, host, port)
    spawner._event(f"Server ready on {spawner.system_name}", 100)
    spawner.log.info("%s: adopted %s at %s:%s", spawner.system_name, spawner._log_name, host, port)
    return spawner.url_for(host, port)


async def server_answers(spawner: RemoteSpawner, host: str, port: int, timeout: float) -> bool:
    """A Jupyter server for this user's URL prefix answers at host:port (its /api). What
    answers there is the user's (or anyone's) program: its reply is read capped."""
    assert spawner.server is not None
    h = f"[{host}]" if ":" in host else host
    url = f"http://{h}:{port}{spawner.server.base_url}api"
    try:
        code, body = await routing.fetch_capped(url, timeout)
    except (OSError, httpclient.HTTPClientError, TimeoutError, routing.ReplyTooLarge):
        return False
    if code != 200:
        return False
    try:
        answer = json.loads(body or b"{}")
    except ValueError:
        return False
    return isinstance(answer, dict) and "version" in answer


async def move_route(spawner: RemoteSpawner, host: str, port: int) -> None:
    """Point the server's DB row, and the proxy route, at host:port."""
    server = spawner.server
    if server is None:
        return
    if server.ip != host or server.port != port:
        server.ip = host
        server.port = port
        session = object_session(spawner.orm_spawner) if spawner.orm_spawner is not None else None
        if session is not None:
            session.commit()
    elif spawner.pending != "spawn":
        return  # the route already points here (an adoption always adds its route)
    if spawner.pending not in (None, "spawn"):
        # JupyterHub's own start-up check (or a stop) is under way: the check's end, and
        # its route check, take the new address from the DB row.
        return
    proxy = spawner.user.settings.get("proxy") if spawner.user is not None else None
    if proxy is not None:
        # JupyterHub adds routes for checks that finish late only after every check has
        # finished, and never for a spawn it did not start itself.
        await proxy.add_user(spawner.user, spawner.name)
