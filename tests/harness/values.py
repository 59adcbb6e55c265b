"""Values for a test, built from what the test is about: systems, service levels and the
cells between them. The layout of values (``serviceLevels``, ``systems.<s>.levels.<l>``)
is written here once, so a test names cells ("pm-exclusive") and their settings, and a
change of the layout is a change of this file.

    grid_values({"pm": {"slurm": {...}}}, cells={"pm-shared": "ssh", "pm-gpu": "slurm"})

Also the chart's defaults with values files on them, as Helm merges them (``site_values``),
the NERSC-like example's systems on the chart's service levels (``nersc_values``), and the
spawner a hub on such values makes for a cell (``dispatcher``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_VALUES = REPO / "chart" / "hpchub" / "values.yaml"
NERSC_EXAMPLE = REPO / "config" / "values-nersc-example.yaml"

# A cell: its backend ("ssh", "slurm", "kubernetes", ...), or the level's settings under its
# system, backend included. A level: its title, or its settings.
Spec = str | Mapping[str, Any]


def grid_values(
    systems: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    cells: Mapping[str, Spec] | None = None,
    levels: Mapping[str, Spec] | None = None,
    **more: Any,
) -> dict[str, Any]:
    """A values dict: ``systems`` (name -> the system's settings, its levels aside),
    ``cells`` ("<system>-<level>" -> :data:`Spec`; a system a cell names and ``systems``
    does not gets no settings but its levels) and ``levels`` (the service levels, exactly:
    name -> title or settings; without it, each level a cell uses, titled by its name
    capitalized). ``more``: other top-level keys as they are (auth, spin, identity, ...).
    A new dict on every call: tests may change it."""
    values: dict[str, Any] = copy.deepcopy(dict(more))
    values["systems"] = copy.deepcopy({name: dict(sv) for name, sv in (systems or {}).items()})
    values["serviceLevels"] = {name: _level(spec) for name, spec in (levels or {}).items()}
    for name, spec in (cells or {}).items():
        system, level = _split(name)
        values["systems"].setdefault(system, {}).setdefault("levels", {})[level] = _cell(spec)
        if levels is None:
            values["serviceLevels"].setdefault(level, {"title": level.capitalize()})
    return values


def add_cell(values: dict[str, Any], name: str, spec: Spec, level: Spec | None = None) -> dict[str, Any]:
    """Add cell ``name`` to ``values`` (changed in place, and returned): the level under its
    system, and the service level if ``level`` is given (its title or settings) or it is not
    defined yet (titled by its name capitalized)."""
    system, lv = _split(name)
    values.setdefault("systems", {}).setdefault(system, {}).setdefault("levels", {})[lv] = _cell(spec)
    levels = values.setdefault("serviceLevels", {})
    if level is not None:
        levels[lv] = _level(level)
    else:
        levels.setdefault(lv, {"title": lv.capitalize()})
    return values


def set_level(values: dict[str, Any], name: str, **settings: Any) -> dict[str, Any]:
    """Set these settings (title, order, resources, useCases, configurable) of service level
    ``name`` of ``values``; returns the level's settings."""
    level = values.setdefault("serviceLevels", {}).setdefault(name, {})
    level.update(settings)
    return level


def chart_values() -> dict[str, Any]:
    """The chart's defaults (chart/hpchub/values.yaml); a new dict on every call."""
    return yaml.safe_load(CHART_VALUES.read_text())


def chart_levels() -> dict[str, Any]:
    """The chart's default service levels."""
    return chart_values()["serviceLevels"]


def helm_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on ``base`` as Helm merges values files: maps key by key, anything else
    replaced, a null deleting the key."""
    out = dict(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = helm_merge(out[key], value)
        else:
            out[key] = value
    return out


def site_values(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """What the hub gets from an install with these values files, in order: the chart's
    defaults with each layer merged on as Helm merges them."""
    values = chart_values()
    for layer in layers:
        values = helm_merge(values, layer)
    return values


def nersc_values() -> dict[str, Any]:
    """The NERSC-like example (config/values-nersc-example.yaml) with two of the chart's
    defaults under it: its service levels, and its spin settings under the example's (the
    grid, console and options tests' values; :func:`site_values` gives the whole install)."""
    values = yaml.safe_load(NERSC_EXAMPLE.read_text())
    chart = chart_values()
    return {**values, "serviceLevels": chart["serviceLevels"], "spin": {**chart["spin"], **values["spin"]}}


def dispatcher(
    values: Mapping[str, Any], name: str, traits: Mapping[str, Any] | None = None, **kw: Any
) -> Any:
    """What JupyterHub gets for server ``name`` (no state yet) when the hub runs on ``values``:
    hpchub's DispatchSpawner, which becomes the cell's backend spawner. Its traits are the
    ones the loader (hpchub.config) sets from the systems, service levels and spin (if
    given), and ``traits`` besides (e.g. ssh_ca); ``kw`` go to the spawner (e.g. _mock)."""
    from traitlets.config import Config

    from hpchub.spawners.dispatch import DispatchSpawner

    c = Config()
    c.DispatchSpawner.systems = values.get("systems") or {}
    c.DispatchSpawner.service_levels = values.get("serviceLevels") or {}
    if "spin" in values:
        c.DispatchSpawner.spin = values["spin"]
    for trait, value in (traits or {}).items():
        setattr(c.DispatchSpawner, trait, value)
    return DispatchSpawner(config=c, orm_spawner=SimpleNamespace(name=name, state=None, server=None), **kw)


def _split(name: str) -> tuple[str, str]:
    # Cell names never hold a '-' but the one between system and level (hpchub.grid).
    system, sep, level = name.partition("-")
    if not sep or not system or not level or "-" in level:
        raise ValueError(f"{name!r}: a cell is named <system>-<level>")
    return system, level


def _cell(spec: Spec) -> dict[str, Any]:
    return {"backend": spec} if isinstance(spec, str) else copy.deepcopy(dict(spec))


def _level(spec: Spec) -> dict[str, Any]:
    return {"title": spec} if isinstance(spec, str) else copy.deepcopy(dict(spec))
