"""Idle culling: the one place that answers "after how long idle is this server stopped,
and how long before is its user warned".

Values: ``culling.timeout`` and ``culling.warnBeforeSeconds`` for every server; a service
level may set its own (``serviceLevels.<level>.culling``, e.g. a GPU level shorter than a
shared one), and one system's cell of a level its own again
(``systems.<system>.levels.<level>.culling``). A server's rule is its cell's, else its
level's, else the global one, key by key.

Who asks:

- the loader (hpchub.config): the rules values must keep, and the culler's command (its
  ``--timeout`` is the shortest timeout, the ``inactive_limit`` the hook is given);
- the culler (hpchub.culler): jupyterhub-idle-culler's ``cull_arbiter_hook`` asks
  :meth:`CullPolicy.idle_too_long` with the server's name;
- the status API: :func:`cull_view` is the ``cull`` object JupyterLab's warning reads
  (hpchub_notebook/status.py);
- the console: :func:`idle_note` ("Stops after 30 min idle").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .grid import server_name
from .values import ConfigError

DEFAULT_TIMEOUT = 3600
DEFAULT_WARN_BEFORE = 600
MIN_TIMEOUT = 60  # the schema's minimum
# The culler process gets its policy in this variable (JSON, CullPolicy.to_json).
ENV = "HPCHUB_CULLING"


@dataclass(frozen=True)
class CullRule:
    timeout_seconds: int
    warn_before_seconds: int  # as configured
    # Optional activity the notebook side reports besides busy kernels: the server's
    # processes above this CPU (percent of one core), its GPUs above this use. 0: off;
    # None: the hub sets none (the notebook environment's own setting applies).
    busy_cpu_percent: float | None = None
    busy_gpu_percent: float | None = None

    @property
    def warn_lead_seconds(self) -> int:
        """How long before the cull Lab warns: the configured lead, at most half the timeout
        (so a short timeout does not warn an active user all the time; the notebook side
        applies the same cap, hpchub_notebook.schedule.cull_plan)."""
        return min(self.warn_before_seconds, self.timeout_seconds // 2)


@dataclass(frozen=True)
class CullPolicy:
    enabled: bool = True
    default: CullRule = CullRule(DEFAULT_TIMEOUT, DEFAULT_WARN_BEFORE)
    # Named servers (cells, ``<system>-<level>``) whose rule is not the default.
    servers: Mapping[str, CullRule] = field(default_factory=dict)
    # The values key each server's timeout comes from (for messages that name it).
    timeout_keys: Mapping[str, str] = field(default_factory=dict)

    def rule(self, name: str) -> CullRule:
        """The rule of the named server ``name`` (the default server, "", and any name that
        is not a cell get the global rule)."""
        return self.servers.get(name, self.default)

    @property
    def shortest_timeout(self) -> int:
        return min([self.default.timeout_seconds, *(r.timeout_seconds for r in self.servers.values())])

    @property
    def shortest_source(self) -> str:
        """The values key that sets the shortest timeout (``culling.timeout`` on a tie)."""
        if self.default.timeout_seconds == self.shortest_timeout:
            return "culling.timeout"
        return min(
            (r.timeout_seconds, self.timeout_keys.get(n, "culling.timeout")) for n, r in self.servers.items()
        )[1]

    def idle_too_long(self, name: str, inactive: timedelta | None) -> bool:
        """Whether the server ``name``, idle for ``inactive`` (None: unknown), is to be culled."""
        if not self.enabled or inactive is None:
            return False
        return inactive.total_seconds() >= self.rule(name).timeout_seconds

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> CullPolicy:
        """The policy of the chart's values; ConfigError naming the key for a bad value
        (the schema refuses the same at install)."""
        cull = values.get("culling") or {}
        default = _rule(cull, "culling", CullRule(DEFAULT_TIMEOUT, DEFAULT_WARN_BEFORE))
        levels: dict[str, tuple[CullRule, str]] = {}
        for name, lv in (values.get("serviceLevels") or {}).items():
            own = (lv or {}).get("culling") or {}
            key = f"serviceLevels.{name}.culling"
            levels[name] = (
                _rule(own, key, default),
                f"{key}.timeout" if own.get("timeout") is not None else "culling.timeout",
            )
        servers: dict[str, CullRule] = {}
        keys: dict[str, str] = {}
        for system, sv in (values.get("systems") or {}).items():
            for level, cv in ((sv or {}).get("levels") or {}).items():
                parent, parent_key = levels.get(level, (default, "culling.timeout"))
                own = (cv or {}).get("culling") or {}
                key = f"systems.{system}.levels.{level}.culling"
                rule = _rule(own, key, parent)
                if rule != default:
                    name = server_name(system, level)
                    servers[name] = rule
                    keys[name] = f"{key}.timeout" if own.get("timeout") is not None else parent_key
        return cls(
            enabled=bool(cull.get("enabled", True)), default=default, servers=servers, timeout_keys=keys
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "enabled": self.enabled,
                "default": _rule_list(self.default),
                "servers": {n: _rule_list(r) for n, r in sorted(self.servers.items())},
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> CullPolicy:
        data = json.loads(text)
        return cls(
            enabled=bool(data["enabled"]),
            default=_rule_of_list(data["default"]),
            servers={str(n): _rule_of_list(r) for n, r in data["servers"].items()},
        )

    def describe(self) -> str:
        """One line for the culler's log: what it will do."""
        parts = [f"{self.default.timeout_seconds} s idle"]
        parts += [f"{n}: {r.timeout_seconds} s" for n, r in sorted(self.servers.items())]
        return "servers are stopped after " + "; ".join(parts)


def _rule_list(r: CullRule) -> list[float | None]:
    return [r.timeout_seconds, r.warn_before_seconds, r.busy_cpu_percent, r.busy_gpu_percent]


def _rule_of_list(r: list[Any]) -> CullRule:
    return CullRule(int(r[0]), int(r[1]), *(None if x is None else float(x) for x in r[2:4]))


# The schema's bounds: percent of one core (up to a 1024-core node), a GPU's utilization.
MAX_CPU_PERCENT = 102400.0
MAX_GPU_PERCENT = 100.0


def _percent(block: Mapping[str, Any], key: str, where: str, maximum: float) -> float | None:
    value = block.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= maximum:
        raise ConfigError(f"{where}.{key}: expected a percentage from 0 (off) to {maximum:g}; got {value!r}")
    return float(value)


def _seconds(block: Mapping[str, Any], key: str, where: str, minimum: int) -> int | None:
    value = block.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}.{key}: expected whole seconds, at least {minimum}; got {value!r}")
    return value


def _rule(block: Mapping[str, Any], where: str, parent: CullRule) -> CullRule:
    if not isinstance(block, Mapping):
        raise ConfigError(
            f"{where}: expected a mapping (timeout, warnBeforeSeconds, busyCpuPercent, busyGpuPercent)"
        )
    timeout = _seconds(block, "timeout", where, MIN_TIMEOUT)
    warn = _seconds(block, "warnBeforeSeconds", where, 0)
    cpu = _percent(block, "busyCpuPercent", where, MAX_CPU_PERCENT)
    gpu = _percent(block, "busyGpuPercent", where, MAX_GPU_PERCENT)
    return CullRule(
        timeout_seconds=parent.timeout_seconds if timeout is None else timeout,
        warn_before_seconds=parent.warn_before_seconds if warn is None else warn,
        busy_cpu_percent=parent.busy_cpu_percent if cpu is None else cpu,
        busy_gpu_percent=parent.busy_gpu_percent if gpu is None else gpu,
    )


def iso8601(when: datetime | None) -> str | None:
    """``2026-12-01T10:00:00.000000Z``; JupyterHub's database keeps naive UTC times."""
    if when is None:
        return None
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return when.isoformat(timespec="microseconds") + "Z"


def cull_view(policy: CullPolicy, name: str, last_activity: datetime | None) -> dict[str, Any] | None:
    """The ``cull`` object of the status JSON for the named server ``name``: its timeout,
    how long before the cull Lab warns, and its last activity as the hub knows it (the
    culler reads the same); None when the hub culls nothing."""
    if not policy.enabled:
        return None
    rule = policy.rule(name)
    view: dict[str, Any] = {
        "timeout_seconds": rule.timeout_seconds,
        "warn_before_seconds": rule.warn_lead_seconds,
        "last_activity": iso8601(last_activity),
    }
    # Only when set (0 included: off): a site's own setting in its notebook environment
    # (HPCHUB_BUSY_CPU_PERCENT) stays in force where the hub sets none.
    if rule.busy_cpu_percent is not None:
        view["busy_cpu_percent"] = rule.busy_cpu_percent
    if rule.busy_gpu_percent is not None:
        view["busy_gpu_percent"] = rule.busy_gpu_percent
    return view


def duration_words(seconds: int) -> str:
    """``30 min``, ``90 min``, ``2 h``, ``2.5 h``."""
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    return f"{round(seconds / 3600, 1):g} h"


def idle_note(policy: CullPolicy, name: str) -> str:
    """What a console cell says about culling: "Stops after 30 min idle" (empty: no culling)."""
    if not policy.enabled:
        return ""
    return f"Stops after {duration_words(policy.rule(name).timeout_seconds)} idle"
