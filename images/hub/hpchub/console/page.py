"""The console's page model: what each cell of the grid shows for one user.

Built from the grid (values), the user's groups and allocations, and each of the user's
servers' ServerStatus (hpchub.serverstate.status_of: the one derivation every view uses).
Templates only draw this model; nothing here renders HTML, and the validation of options is
`hpchub.options`' job, not this module's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from sqlalchemy.orm import object_session

from ..access import refusal
from ..culling import CullPolicy, idle_note
from ..grid import Cell, Grid, ServiceLevel, System
from ..reaper_table import pending
from ..serverstate import ServerStatus, status_of
from ..settings import WalltimeSettings
from ..walltime import ExtendOffer, extend_offer, minutes_text, time_warning, warnings_passed
from .form import form_fields
from .links import open_url, with_next


@dataclass
class CellView:
    server_name: str
    level: ServiceLevel
    backend: str
    configurable: bool
    status: ServerStatus = field(default_factory=ServerStatus)
    # Why the cell cannot be used (groups, allocation, maintenance); empty if it can.
    disabled_reason: str = ""
    start_url: str = ""  # works without JavaScript
    options_url: str = ""  # the configurable form
    open_url: str = ""
    stop_url: str = ""  # POST target without JavaScript
    pending_url: str = ""
    # A fixed level that still lets the user choose something (version, start-up script,
    # one of several accounts, a reservation): the cell offers "Options…" besides Start.
    has_options: bool = False
    api_url: str = ""  # REST: POST to start, DELETE to stop, + /progress
    # Spin: whose account the notebook runs as and what HOME is (hpchub.grid.spin_runs_as).
    runs_as: str = ""
    # The walltime guard (hpchub.walltime): the cell's warning times, and what Extend
    # offers (None where the system does not extend); its no-JavaScript POST and the API.
    walltime: WalltimeSettings = field(default_factory=WalltimeSettings)
    extend: ExtendOffer | None = None
    extend_url: str = ""
    extend_api_url: str = ""
    # "Stops after 30 min idle" (hpchub.culling), shown while the server runs.
    idle_note: str = ""

    @property
    def time_warning(self) -> str:
        """The warning a running server past a warning time shows (else '')."""
        return time_warning(self.status, self.walltime)

    @property
    def warnings_passed(self) -> int:
        return warnings_passed(self.status, self.walltime)

    @property
    def ends_at(self) -> int | None:
        """When a running server ends (console.js redraws the cell at the warning times)."""
        return int(self.status.ends_at) if self.state == "running" and self.status.ends_at else None

    @property
    def extend_steps(self) -> list[tuple[int, str]]:
        """Extend's buttons: (seconds, "30 min")."""
        return [(s, minutes_text(s)) for s in self.extend.steps_seconds] if self.extend else []

    @property
    def notebook_missing(self) -> bool:
        """A running server whose notebook package never asked the hub: Lab shows no
        countdown or warnings there."""
        return self.state == "running" and not self.status.notebook_client

    @property
    def state(self) -> str:
        return self.status.state

    @property
    def label(self) -> str:
        return self.status.label

    @property
    def detail(self) -> str:
        return self.status.detail()

    @property
    def active(self) -> bool:
        return self.status.active

    @property
    def pending(self) -> bool:
        return self.state in ("starting", "queued", "stopping")


@dataclass
class RowView:
    system: System
    cells: list[CellView | None]

    @property
    def maintenance(self) -> bool:
        return self.system.maintenance


@dataclass
class ConsolePage:
    levels: tuple[ServiceLevel, ...]
    rows: list[RowView]
    banners: list[str] = field(default_factory=list)
    # A link into the user's notebook that named no server (hpchub.console.links): the
    # part after a server's prefix; every cell opens it, Start continues to it.
    open_path: str = ""

    @property
    def open_path_display(self) -> str:
        """The link's path as a person reads it (no query, decoded)."""
        return unquote(self.open_path.partition("?")[0]) or "/"

    def cell(self, server_name: str) -> CellView | None:
        for row in self.rows:
            for c in row.cells:
                if c is not None and c.server_name == server_name:
                    return c
        return None

    @property
    def any_pending(self) -> bool:
        return any(c is not None and c.pending for r in self.rows for c in r.cells)


def _has_choices(cell: Cell, auth_state: Mapping[str, Any] | None) -> bool:
    # The form knows which fields a cell offers.
    for f in form_fields(cell, auth_state):
        if f.name in ("version", "startup_script", "reservation", "email_on_start"):
            return True
        if f.name == "account" and len(f.choices) > 1:
            return True
    return False


def build_page(
    grid: Grid,
    user: Any,
    auth_state: Mapping[str, Any] | None,
    hub_base_url: str = "/hub/",
    open_path: str = "",
    culling: CullPolicy | None = None,
) -> ConsolePage:
    """The console for `user` (a JupyterHub User, or None for a preview); ``open_path``
    (from :func:`hpchub.console.links.link_rest`) points every cell at a link's path."""
    name = getattr(user, "name", "")
    escaped = quote(name, safe="")
    orm_spawners: Mapping[str, Any] = getattr(getattr(user, "orm_user", None), "orm_spawners", None) or {}
    live: Mapping[str, Any] = getattr(user, "spawners", None) or {}
    base_url = hub_base_url.rsplit("hub/", 1)[0]
    rows: list[RowView] = []
    banners: list[str] = []
    for system in grid.systems:
        if system.maintenance:
            banners.append(system.maintenance_message or f"{system.display_name} is in maintenance.")
        views: list[CellView | None] = []
        for cell in grid.row(system):
            if cell is None:
                views.append(None)
                continue
            sn = cell.server_name
            target = open_url(base_url, escaped, sn, open_path)
            # With a link to follow, starting continues to it (JupyterHub keeps ?next=).
            start_url = f"{hub_base_url}spawn/{escaped}/{sn}"
            options_url = f"{hub_base_url}console/options/{sn}"
            if open_path:
                start_url, options_url = with_next(start_url, target), with_next(options_url, target)
            view = CellView(
                server_name=sn,
                level=cell.level,
                backend=cell.backend,
                configurable=cell.level.configurable,
                start_url=start_url,
                options_url=options_url,
                open_url=target,
                stop_url=f"{hub_base_url}console/stop/{sn}",
                pending_url=f"{hub_base_url}spawn-pending/{escaped}/{sn}",
                api_url=f"{hub_base_url}api/users/{escaped}/servers/{sn}",
                has_options=not cell.level.configurable and _has_choices(cell, auth_state),
                runs_as=cell.runs_as,
                walltime=cell.walltime,
                extend_url=f"{hub_base_url}console/extend/{sn}",
                extend_api_url=f"{hub_base_url}api/hpchub/servers/{escaped}/{sn}/extend",
                idle_note=idle_note(culling, sn) if culling else "",
            )
            # Live state first: a running server stays visible (and stoppable) even if the
            # user lost the group or the system went into maintenance meanwhile.
            if sn in orm_spawners and sn in live:
                view.status = status_of(live[sn])
                view.extend = extend_offer(cell, view.status)
            if not view.active:
                # The same rule the spawners enforce on every entry point (hpchub.access).
                refused = refusal(cell, user, auth_state)
                view.disabled_reason = refused.short if refused else ""
            views.append(view)
        rows.append(RowView(system=system, cells=views))
    banners.extend(_run_banners(user, live, grid))
    return ConsolePage(levels=grid.levels, rows=rows, banners=banners, open_path=open_path)


def _run_banners(user: Any, live: Mapping[str, Any], grid: Grid) -> list[str]:
    """What the user must know about runs the hub could not finish for them: a stop the
    reaper still holds, credentials that expired (sign in again)."""
    out: list[str] = []
    problems = {status_of(sp).credentials_problem for sp in live.values()} - {""}
    if problems:
        out.append(
            "Your sign-in has expired for the supercomputer: sign in again so the hub can check "
            "and stop your servers there. (" + "; ".join(sorted(problems)) + ")"
        )
    try:
        session = object_session(user.orm_user)
    except Exception:  # noqa: BLE001 - no DB behind this user (a preview)
        session = None
    if session is None:
        return out
    try:
        held = pending(session.get_bind(), user.name)
    except Exception:  # noqa: BLE001 - the console must render without the reaper's table
        return out
    titles = {c.server_name: f"{c.system.display_name} {c.level.title}" for c in grid.cells.values()}
    for row in held:
        out.append(
            f"Stopping your server {titles.get(row.server, row.server)} is not finished: "
            f"the hub keeps trying ({row.what}; last: {row.last_error or row.reason})."
            + (" Sign in again if your sign-in expired." if "expired" in (row.last_error or "") else "")
        )
    return out


def allowed_cells(page: ConsolePage) -> Iterable[CellView]:
    """Cells the user may start (for tests and the bench)."""
    for row in page.rows:
        for c in row.cells:
            if c is not None and not c.disabled_reason:
                yield c
