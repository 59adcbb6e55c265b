"""The hub's status of this server, parsed once at the boundary.

The hub answers ``GET {JUPYTERHUB_API_URL}/hpchub/servers/{user}/{server}`` with JSON; this
module turns that JSON into a validated, bounded :class:`HubStatus` or refuses it with a
:class:`StatusError` naming the field. Nothing else may escape: a hub of another version, a
proxy's error page or a truncated body must never break the notebook server. Unknown keys
are ignored, so a newer hub can add fields.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

# Bounds: a status is data from another process; nothing in it may be unbounded.
MAX_EPOCH = 1e11  # year ~5138: any real end time is below it
MAX_SECONDS = 10 * 365 * 24 * 3600
MAX_LIST = 16
MAX_TEXT = 1000
DEFAULT_WARNINGS = (1800, 300)
DEFAULT_SAVE_BEFORE = 120
DEFAULT_CULL_WARN_BEFORE = 600
MAX_CPU_PERCENT = 102400.0  # percent of one core: a 1024-core node


class StatusError(ValueError):
    """The hub's answer is not a status this package understands (the message names the field)."""


@dataclass(frozen=True)
class Extend:
    allowed: bool
    max_ends_at: float | None
    steps_seconds: tuple[int, ...]
    reason: str


@dataclass(frozen=True)
class Cull:
    timeout_seconds: int
    warn_before_seconds: int
    last_activity: float | None  # epoch seconds
    # The hub's thresholds for activity besides busy kernels (None: the hub sets none).
    busy_cpu_percent: float | None = None
    busy_gpu_percent: float | None = None


@dataclass(frozen=True)
class HubStatus:
    phase: str
    ends_at: float | None
    time_limit_seconds: int | None
    warnings_seconds: tuple[int, ...]
    save_before_seconds: int
    extend: Extend | None
    cull: Cull | None
    message: str


def _epoch(value: Any, field: str) -> float | None:
    if value is None:
        return None
    # bool is an int in Python; true is not a time.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StatusError(f"{field}: expected epoch seconds (a number) or null, got {type(value).__name__}")
    try:
        f = float(value)
    except OverflowError:  # an int beyond any float (and beyond repr's 4300 digits)
        raise StatusError(f"{field}: out of range (beyond any float)") from None
    if not math.isfinite(f) or not 0 < f < MAX_EPOCH:
        raise StatusError(f"{field}: {value!r} is not a time (epoch seconds)")
    return f


def _seconds(value: Any, field: str, *, allow_none: bool = False, minimum: int = 0) -> int | None:
    if value is None and allow_none:
        return None
    # JSON has no int type of its own: 1800.0 is accepted as 1800, 1800.5 is not.
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise StatusError(f"{field}: expected whole seconds, got {type(value).__name__}")
    if not minimum <= value <= MAX_SECONDS:
        raise StatusError(f"{field}: {value} is outside {minimum}..{MAX_SECONDS} seconds")
    return value


def _seconds_list(value: Any, field: str, default: tuple[int, ...]) -> tuple[int, ...]:
    if value is None:
        return default
    if not isinstance(value, list):
        raise StatusError(f"{field}: expected a list of seconds, got {type(value).__name__}")
    if len(value) > MAX_LIST:
        raise StatusError(f"{field}: more than {MAX_LIST} entries")
    out = {_seconds(v, f"{field}[{i}]", minimum=1) for i, v in enumerate(value)}
    return tuple(sorted(out, reverse=True))  # type: ignore[arg-type]


def _threshold(value: Any, maximum: float) -> float | None:
    """A percentage in 0..maximum; anything else (absent, or from a hub of another version)
    is None: ignored, never a reason to refuse the status and its walltime warnings."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        f = float(value)
    except OverflowError:
        return None
    return f if math.isfinite(f) and 0 <= f <= maximum else None


def _text(value: Any, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise StatusError(f"{field}: expected a string, got {type(value).__name__}")
    return value[:MAX_TEXT]


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise StatusError(f"{field}: expected true or false, got {type(value).__name__}")
    return value


def _iso8601(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise StatusError(f"{field}: expected an ISO 8601 time or null")
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        t = datetime.fromisoformat(text)
        if t.tzinfo is None:  # JupyterHub writes UTC; a naive time is UTC too
            t = t.replace(tzinfo=timezone.utc)
        epoch = t.timestamp()
    except (ValueError, OverflowError, OSError):
        raise StatusError(f"{field}: {value!r} is not an ISO 8601 time") from None
    return _epoch(epoch, field) if epoch > 0 else None


def _object(value: Any, field: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise StatusError(f"{field}: expected an object or null, got {type(value).__name__}")
    return value


def _extend(value: Any) -> Extend | None:
    d = _object(value, "extend")
    if d is None:
        return None
    return Extend(
        allowed=_bool(d.get("allowed", False), "extend.allowed"),
        max_ends_at=_epoch(d.get("max_ends_at"), "extend.max_ends_at"),
        steps_seconds=_seconds_list(d.get("steps_seconds"), "extend.steps_seconds", ()),
        reason=_text(d.get("reason"), "extend.reason"),
    )


def _cull(value: Any) -> Cull | None:
    d = _object(value, "cull")
    if d is None:
        return None
    warn = d.get("warn_before_seconds")
    return Cull(
        timeout_seconds=_seconds(d.get("timeout_seconds"), "cull.timeout_seconds", minimum=1),  # type: ignore[arg-type]
        warn_before_seconds=DEFAULT_CULL_WARN_BEFORE
        if warn is None
        else _seconds(warn, "cull.warn_before_seconds"),  # type: ignore[arg-type]
        last_activity=_iso8601(d.get("last_activity"), "cull.last_activity"),
        busy_cpu_percent=_threshold(d.get("busy_cpu_percent"), MAX_CPU_PERCENT),
        busy_gpu_percent=_threshold(d.get("busy_gpu_percent"), 100.0),
    )


def parse_status(data: Any) -> HubStatus:
    """The hub's JSON (already decoded) as a :class:`HubStatus`; raises only StatusError."""
    if not isinstance(data, dict):
        raise StatusError(f"status: expected a JSON object, got {type(data).__name__}")
    phase = data.get("phase")
    if not isinstance(phase, str) or not phase or len(phase) > 32:
        raise StatusError("phase: expected a short string such as 'running'")
    save_before = data.get("save_before_seconds")
    return HubStatus(
        phase=phase,
        ends_at=_epoch(data.get("ends_at"), "ends_at"),
        time_limit_seconds=_seconds(data.get("time_limit_seconds"), "time_limit_seconds", allow_none=True),
        warnings_seconds=_seconds_list(data.get("warnings_seconds"), "warnings_seconds", DEFAULT_WARNINGS),
        save_before_seconds=DEFAULT_SAVE_BEFORE
        if save_before is None
        else _seconds(save_before, "save_before_seconds"),  # type: ignore[arg-type]
        extend=_extend(data.get("extend")),
        cull=_cull(data.get("cull")),
        message=_text(data.get("message"), "message"),
    )


def parse_status_body(body: bytes) -> HubStatus:
    """parse_status of an HTTP body: bad UTF-8 or JSON is a StatusError too."""
    import json

    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise StatusError(f"status: not JSON ({type(e).__name__})") from None
    return parse_status(data)
