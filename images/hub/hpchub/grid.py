"""The console grid: systems (rows) x service levels (columns), built once from values.

Both the dispatcher spawner (which backend serves a named server) and the console (what
to draw) read this model, so neither re-derives it from templates or raw values.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .schedulers import SCHEDULERS
from .settings import SystemSettings, WalltimeSettings, values_time
from .values import ConfigError


def backends() -> tuple[str, ...]:
    """Every backend a level may name: Spin, the login node, and each registered batch
    scheduler adapter (read when values are, so a new adapter needs no line here)."""
    return ("kubernetes", "ssh", *SCHEDULERS)


class UnknownServer(LookupError):
    """A named server that is not a cell of the grid."""


@dataclass(frozen=True)
class ServiceLevel:
    name: str
    title: str
    order: int
    resources: str
    use_cases: str
    configurable: bool


@dataclass(frozen=True)
class System:
    name: str
    display_name: str
    order: int
    maintenance: bool
    maintenance_message: str
    # The raw per-system values (ssh, singleuser, preSpawnChecks) for the backends.
    ssh: Mapping[str, Any] = field(default_factory=dict)
    singleuser: Mapping[str, Any] = field(default_factory=dict)
    # Each scheduler's block (``systems.<s>.slurm``), by the scheduler's values key.
    batch: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # The batch scheduler the system's levels use (one per system), or None.
    scheduler: str | None = None
    # What the spawners and the status board read, typed and defaulted (hpchub.settings).
    settings: SystemSettings = field(default_factory=SystemSettings)
    pre_spawn_checks: Mapping[str, Any] = field(default_factory=dict)
    # How job and process status is gathered (hpchub/status.py): identity, interval.
    status: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Cell:
    system: System
    level: ServiceLevel
    backend: str
    # Groups allowed to use this cell; empty means everyone who may log in.
    groups: tuple[str, ...]
    # A batch cell's scheduler settings: the system's (partitions, limits, defaults:
    # ``systems.<s>.slurm``) and the level's fixed ones (``levels.<l>.slurm``); empty else.
    limits: Mapping[str, Any]
    fixed: Mapping[str, Any]
    # Selectable environment versions: `systems.<s>.singleuser.versions` on the
    # supercomputer (modules), `spin.versions` in Spin (images).
    versions: Mapping[str, Any] = field(default_factory=dict)
    default_version: str = ""
    # Spin cells: whose account the notebook runs as and what HOME is (spin_runs_as).
    runs_as: str = ""
    # The system's walltime warnings and save, with the level's own over them.
    walltime: WalltimeSettings = field(default_factory=WalltimeSettings)
    # ``levels.<l>.extend.maxTime``: this level's cap on an extended job's time limit; 0:
    # not extendable here; None: the system's (``slurm.extend.maxTime``).
    extend_max_seconds: int | None = None

    @property
    def server_name(self) -> str:
        return server_name(self.system.name, self.level.name)

    @property
    def is_batch(self) -> bool:
        """A cell whose server is a batch job (its backend is a scheduler's name)."""
        return self.backend in SCHEDULERS

    def allowed_for(self, groups: Iterable[str]) -> bool:
        return not self.groups or bool(set(self.groups) & set(groups))


def covered(path: str, mount_paths: Iterable[str]) -> bool:
    """Whether ``path`` lies on one of the mounts (then it is not the image's directory)."""
    return any(path == m.rstrip("/") or path.startswith(m.rstrip("/") + "/") for m in mount_paths)


def spin_runs_as(values: Mapping[str, Any]) -> str:
    """What a Spin notebook runs as, in the console's words: the user's own uid/gid only
    with a trusted ``identity`` source, else every pod is ``spin.uid``; HOME is the user's
    home only where ``spin.volumes`` mount ``spin.homeDir``, else a scratch directory."""
    identity = values.get("identity") or {}
    own = bool(
        (identity.get("fromAuthState") or {}).get("uid") or (identity.get("lookup") or {}).get("system")
    )
    spin = values.get("spin") or {}
    home = str(spin.get("homeDir") or "/home/{username}")
    mounted = covered(home, (str(v.get("mountPath") or "") for v in (spin.get("volumes") or {}).values()))
    who = (
        "Runs as your own account"
        if own
        else f"Runs as a shared account (uid {int(spin.get('uid', 1000))}), not yours"
    )
    if mounted and own:
        return f"{who}, with your home directory mounted as HOME."
    if mounted:
        return f"{who}; HOME is {home}, a read-only mount."
    return f"{who}; HOME is a scratch directory, deleted when the server stops."


def server_name(system: str, level: str) -> str:
    """The named server of a cell. Names never contain '-', so this is reversible."""
    return f"{system}-{level}"


@dataclass(frozen=True)
class Grid:
    systems: tuple[System, ...]
    levels: tuple[ServiceLevel, ...]
    cells: Mapping[str, Cell]

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Grid:
        levels = {
            name: ServiceLevel(
                name=name,
                title=lv.get("title", name),
                order=int(lv.get("order", 0)),
                resources=lv.get("resources", ""),
                use_cases=lv.get("useCases", ""),
                configurable=bool(lv.get("configurable", False)),
            )
            for name, lv in (values.get("serviceLevels") or {}).items()
        }
        spin = values.get("spin") or {}
        spin_note = spin_runs_as(values)
        systems: list[System] = []
        cells: dict[str, Cell] = {}
        for name, sv in (values.get("systems") or {}).items():
            maintenance = sv.get("maintenance") or {}
            system = System(
                name=name,
                display_name=sv.get("displayName", name),
                order=int(sv.get("order", 0)),
                maintenance=bool(maintenance.get("enabled", False)),
                maintenance_message=maintenance.get("message", ""),
                ssh=sv.get("ssh") or {},
                singleuser=sv.get("singleuser") or {},
                batch={s.values_key: sv.get(s.values_key) or {} for s in SCHEDULERS.values()},
                pre_spawn_checks=sv.get("preSpawnChecks") or {},
                status=sv.get("status") or {},
            )
            batch_backends = {
                str(cv.get("backend"))
                for cv in (sv.get("levels") or {}).values()
                if cv.get("backend") in SCHEDULERS
            }
            if len(batch_backends) > 1:
                raise ValueError(
                    f"systems.{name}.levels: the levels use {len(batch_backends)} schedulers "
                    f"({', '.join(sorted(batch_backends))}); a system has one"
                )
            scheduler = next(iter(batch_backends), None)
            batch_key = SCHEDULERS[scheduler].values_key if scheduler else None
            system = replace(
                system, scheduler=scheduler, settings=SystemSettings.from_values(sv, batch_key, name)
            )
            systems.append(system)
            for level_name, cv in (sv.get("levels") or {}).items():
                if level_name not in levels:
                    raise ConfigError(
                        f'HPCHUB-R003 systems.{name}.levels.{level_name}: unknown service level "{level_name}"; '
                        f"define it under serviceLevels or use one of: {', '.join(sorted(levels))}"
                    )
                backend = cv.get("backend")
                if backend not in backends():
                    raise ValueError(
                        f"systems.{name}.levels.{level_name}.backend: {backend!r} is not one of {backends()}"
                    )
                env = spin if backend == "kubernetes" else system.singleuser
                key_path = f"systems.{name}.levels.{level_name}"
                extend = cv.get("extend") or {}
                if extend and backend not in SCHEDULERS:
                    raise ConfigError(
                        f"HPCHUB-R056 {key_path}.extend: only batch levels (a job's time limit) can be extended"
                    )
                cap = extend.get("maxTime")
                key = SCHEDULERS[backend].values_key if backend in SCHEDULERS else ""
                cell = Cell(
                    system=system,
                    level=levels[level_name],
                    backend=backend,
                    groups=tuple(cv.get("groups") or ()),
                    limits=system.batch.get(key) or {},
                    fixed=(cv.get(key) or {}) if key else {},
                    versions=dict(env.get("versions") or {}),
                    default_version=str(env.get("defaultVersion") or ""),
                    runs_as=spin_note if backend == "kubernetes" else "",
                    walltime=WalltimeSettings.from_values(
                        cv.get("walltime") or {}, f"{key_path}.walltime", system.settings.walltime
                    ),
                    extend_max_seconds=None
                    if cap is None
                    else 0
                    if str(cap) == "0"
                    else values_time(cap, f"{key_path}.extend.maxTime"),
                )
                cells[cell.server_name] = cell
        systems.sort(key=lambda s: (s.order, s.name))
        ordered_levels = sorted(levels.values(), key=lambda lv: (lv.order, lv.name))
        return cls(systems=tuple(systems), levels=tuple(ordered_levels), cells=cells)

    @classmethod
    def cached(cls, systems: Mapping[str, Any], levels: Mapping[str, Any], spin: Mapping[str, Any]) -> Grid:
        """The grid of these values, built once per distinct values (JupyterHub makes a
        spawner for every server it loads and every start: they share one grid)."""
        key = json.dumps([systems, levels, spin], sort_keys=True, default=str)
        return _cached_grid(key)

    def cell(self, name: str) -> Cell:
        """The cell behind a named server; UnknownServer for anything else."""
        try:
            return self.cells[name]
        except KeyError:
            raise UnknownServer(f"{name!r} is not a system and service level offered here") from None

    def row(self, system: System) -> list[Cell | None]:
        """One console row: the system's cell per level, None where it offers none."""
        return [self.cells.get(server_name(system.name, lv.name)) for lv in self.levels]


@functools.lru_cache(maxsize=8)
def _cached_grid(key: str) -> Grid:
    systems, levels, spin = json.loads(key)
    return Grid.from_values({"systems": systems, "serviceLevels": levels, "spin": spin})
