"""Who may start which cell: maintenance, groups and allocations, decided in one place.

The spawners' option check (``DispatchSpawner.check_options``, which JupyterHub runs for
the REST API, ``/hub/spawn`` and the console alike), the console's form handlers and the
console page all ask :func:`refusal`, so the console is a view of the rule, not the gate:
a user who skips it and calls the REST API meets the same rule.

Only *starting* is refused: a server that runs when its user loses a group, or its system
goes into maintenance, can still be opened, polled and stopped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .grid import Cell


@dataclass(frozen=True)
class Refusal:
    """Why a user may not start a cell: ``message`` for the 403 answer, ``short`` for the
    console's disabled cell."""

    message: str
    short: str


def user_groups(user: Any, auth_state: Mapping[str, Any] | None) -> set[str]:
    """The user's groups: the IdP's or key service's (auth_state ``groups``) plus the
    user's JupyterHub groups (oauthenticator's manage_groups puts the IdP's groups there)."""
    groups = {str(g) for g in (auth_state or {}).get("groups") or () if isinstance(g, str)}
    orm_user = getattr(user, "orm_user", user)
    groups.update(g.name for g in getattr(orm_user, "groups", None) or ())
    return groups


def allocation_refusal(cell: Cell, auth_state: Mapping[str, Any] | None) -> Refusal | None:
    """Why the user's allocations rule this Slurm cell out; None when they do not.

    Absent allocations mean "not provided" (the site does not tell us): allowed; the
    options validator still checks a chosen account against them.
    """
    if not cell.is_batch or auth_state is None or "allocations" not in auth_state:
        return None
    allocs = [a for a in auth_state.get("allocations") or () if isinstance(a, Mapping)]
    if not allocs:
        text = f"You have no allocation to charge on {cell.system.display_name}."
        return Refusal(text, text)
    partition = cell.fixed.get("partition")
    if partition and not any(not a.get("partitions") or partition in a["partitions"] for a in allocs):
        text = f"None of your allocations may use the {partition} partition."
        return Refusal(f"{cell.level.title} on {cell.system.display_name}: {text}", text)
    return None


def refusal(cell: Cell, user: Any, auth_state: Mapping[str, Any] | None) -> Refusal | None:
    """Why ``user`` may not start ``cell`` now (maintenance, then groups, then allocations);
    None when they may."""
    system = cell.system
    if system.maintenance:
        return Refusal(
            system.maintenance_message or f"{system.display_name} is in maintenance.",
            system.maintenance_message or "In maintenance.",
        )
    if not cell.allowed_for(user_groups(user, auth_state)):
        needed = " or ".join(cell.groups)
        return Refusal(
            f"{cell.level.title} on {system.display_name} needs membership in {needed}.",
            f"Needs membership in {needed}.",
        )
    return allocation_refusal(cell, auth_state)
