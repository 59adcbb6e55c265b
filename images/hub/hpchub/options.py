"""The one user-options validator.

Every place that accepts user options — the console's configurable form, the REST API
start call, and the spawners themselves — calls :func:`validate`. It takes the grid cell
(the system's limits from values plus the service level's fixed settings), the user's
``auth_state`` and the raw ``user_options`` and returns :class:`CleanOptions`, or raises
:class:`OptionsError` naming the offending field.

Stable API (issue 4's form and REST path rely on it):

- ``validate(cell, auth_state, raw) -> CleanOptions``
- ``OptionsError(field, message)`` with ``.field`` and ``.message``
- ``allowed_fields(cell) -> tuple[str, ...]``: the option names a cell accepts
- ``choices(cell, auth_state) -> dict``: what a form may offer (partitions with their
  limits, QOS, accounts from the allocations, versions, ...), JSON-able
- ``CleanOptions.as_dict()``: a JSON-able dict (what the spawner stores as user_options)

Accepted raw options (all optional; strings from HTML forms are accepted for numbers):

=================== ==================================================================
``version``         one of the cell's versions (default its default version):
                    ``singleuser.versions``/``defaultVersion`` on the supercomputer,
                    ``spin.versions``/``defaultVersion`` for Spin cells
``startup_script``  path of a script in the user's account, sourced before the server
                    starts (only with ``singleuser.allowStartupScript``)
``account``         Slurm account; must be one of ``auth_state.allocations`` when given
``qos``             one of ``slurm.qos`` (and of the allocation's qos list)
``partition``       one of ``slurm.partitions`` (and of the allocation's partitions)
``nodes``           integer, 1..partition.maxNodes
``time``            Slurm time (``MM``, ``HH:MM:SS``, ``D-HH:MM:SS``, ...) <= maxTime
``gpus``            GPUs per node, integer, 0..partition.maxGpus (``--gpus-per-node``)
``constraint``      one of ``slurm.constraints``
``reservation``     a reservation name (only with ``slurm.allowReservations``)
``licenses``        list of ``name`` or ``name:count``, names from ``slurm.licenses``
``extra_directives`` list of one-line ``--option=value`` from ``slurm.extraDirectivesAllowed``
``email_on_start``  boolean: Slurm mails the user when the job starts (``--mail-type=BEGIN``,
                    to the user's Slurm mail address); every Slurm level, unless
                    ``slurm.emailOnStart`` is false
=================== ==================================================================

Non-configurable Slurm levels fix partition/qos/nodes/time/... in values; there only
``account``, ``version``, ``reservation``, ``startup_script`` and ``email_on_start`` may
be chosen. Nothing a
user typed is returned unless it matched a strict pattern, so the clean values are safe
in an ``#SBATCH`` line; the spawners still ``shlex.quote`` everything they put in a shell.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .grid import Cell

# Names Slurm and sites use for accounts, QOS, reservations, licenses: conservative.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
# A directive's value: no whitespace, quotes, shell metacharacters or newlines.
_DIRECTIVE_VALUE = re.compile(r"^[A-Za-z0-9_.,:@%+/=-]{1,128}$")
_DIRECTIVE = re.compile(r"^(--[a-z][a-z0-9-]*)(?:[= ](.*))?$")
# A license request: a name, optionally ":count"; spaces around the parts, nothing else.
_LICENSE = re.compile(r" *([A-Za-z0-9][A-Za-z0-9_.+-]{0,63}) *(?:: *(\d{1,4}) *)?")
_SCRIPT_PATH = re.compile(r"^(~/|/)?[A-Za-z0-9_.][A-Za-z0-9_./-]{0,254}$")

SSH_FIELDS = ("version", "startup_script")
FIXED_SLURM_FIELDS = ("version", "startup_script", "account", "reservation", "email_on_start")
SLURM_FIELDS = (
    "version",
    "startup_script",
    "account",
    "qos",
    "partition",
    "nodes",
    "time",
    "gpus",
    "constraint",
    "reservation",
    "licenses",
    "extra_directives",
    "email_on_start",
)
# How HTML forms and JSON clients say yes and no.
_TRUE = (True, "on", "true", "1", "yes")
_FALSE = (False, "off", "false", "0", "no")


class OptionsError(ValueError):
    """A user option that is not allowed; ``field`` names it, ``message`` says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class CleanOptions:
    """Validated options. Slurm fields are None for the SSH and Kubernetes backends."""

    version: str | None = None
    startup_script: str | None = None
    account: str | None = None
    qos: str | None = None
    partition: str | None = None
    nodes: int | None = None
    time: str | None = None  # normalised to [D-]HH:MM:SS
    time_seconds: int | None = None
    gpus: int | None = None
    constraint: str | None = None
    reservation: str | None = None
    exclusive: bool = False
    email_on_start: bool = False
    licenses: tuple[str, ...] = ()
    extra_directives: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["licenses"] = list(self.licenses)
        d["extra_directives"] = list(self.extra_directives)
        return d


def parse_slurm_time(value: Any, field: str = "time") -> int:
    """Seconds in a Slurm time limit. Accepts the formats ``sbatch --time`` accepts."""
    if isinstance(value, bool):
        raise OptionsError(field, "must be a time such as 01:30:00")
    if isinstance(value, int):
        if value <= 0:
            raise OptionsError(field, "must be positive")
        return value * 60
    if not isinstance(value, str):
        raise OptionsError(field, "must be a time such as 01:30:00")
    text = value.strip()
    m = re.fullmatch(r"(?:(\d{1,3})-)?(\d{1,4})(?::(\d{1,2}))?(?::(\d{1,2}))?", text)
    if not m:
        raise OptionsError(field, f"{value!r} is not a Slurm time (use HH:MM:SS or D-HH:MM:SS)")
    days, a, b, c = m.groups()
    nums = [int(x) for x in (a, b, c) if x is not None]
    if days is not None:
        # D-H, D-H:M, D-H:M:S
        h, mi, s = (nums + [0, 0])[:3]
        seconds = int(days) * 86400 + h * 3600 + mi * 60 + s
    elif len(nums) == 1:
        seconds = nums[0] * 60  # minutes
    elif len(nums) == 2:
        seconds = nums[0] * 60 + nums[1]  # minutes:seconds
    else:
        seconds = nums[0] * 3600 + nums[1] * 60 + nums[2]
    if seconds <= 0:
        raise OptionsError(field, "must be positive")
    return seconds


def format_slurm_time(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    hms = f"{h:02d}:{m:02d}:{s:02d}"
    return f"{days}-{hms}" if days else hms


def email_on_start_offered(cell: Cell) -> bool:
    """Slurm cells offer "email me when the job starts" unless the operator turned it off."""
    return cell.is_batch and bool(cell.limits.get("emailOnStart", True))


def allowed_fields(cell: Cell) -> tuple[str, ...]:
    """Option names the cell accepts (the console draws its form from this)."""
    if cell.is_batch:
        fields = SLURM_FIELDS if cell.level.configurable else FIXED_SLURM_FIELDS
        return fields if email_on_start_offered(cell) else tuple(f for f in fields if f != "email_on_start")
    return SSH_FIELDS if cell.backend == "ssh" else ("version",)


def choices(cell: Cell, auth_state: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the configurable form may offer for ``cell`` (JSON-able): the same limits
    :func:`validate` enforces, narrowed by the user's allocations. The form draws from
    this; the validator still has the last word."""
    su = cell.system.singleuser
    out: dict[str, Any] = {
        "fields": list(allowed_fields(cell)),
        "versions": sorted(cell.versions),
        "default_version": cell.default_version or None,
        "startup_script": bool(su.get("allowStartupScript", False)),
    }
    if cell.is_batch:
        out["email_on_start"] = email_on_start_offered(cell)
    if not cell.is_batch:
        return out
    limits = cell.limits
    allocs = _allocations(auth_state)
    partitions = dict(limits.get("partitions") or {})
    qos = list(limits.get("qos") or [])
    if allocs:
        allowed_parts = {p for a in allocs for p in (a.get("partitions") or partitions)}
        partitions = {k: v for k, v in partitions.items() if k in allowed_parts}
        allowed_qos = {q for a in allocs for q in (a.get("qos") or qos)}
        qos = [q for q in qos if q in allowed_qos]
    out.update(
        accounts=[str(a.get("account")) for a in allocs if a.get("account")],
        partitions={k: dict(v or {}) for k, v in partitions.items()},
        qos=qos,
        constraints=list(limits.get("constraints") or []),
        licenses=list(limits.get("licenses") or []),
        reservations=bool(limits.get("allowReservations", False)),
        extra_directives=list(limits.get("extraDirectivesAllowed") or []),
        defaults=dict(limits.get("defaults") or {}),
        fixed=dict(cell.fixed) if not cell.level.configurable else {},
    )
    return out


def _int(raw: Any, field: str, lo: int, hi: int | None) -> int:
    if isinstance(raw, bool):
        raise OptionsError(field, "must be a whole number")
    if isinstance(raw, str) and re.fullmatch(r"-?\d{1,6}", raw.strip()):
        raw = int(raw.strip())
    if not isinstance(raw, int):
        raise OptionsError(field, "must be a whole number")
    if raw < lo:
        raise OptionsError(field, f"must be at least {lo}")
    if hi is not None and raw > hi:
        raise OptionsError(field, f"must be at most {hi}")
    return raw


def _name(raw: Any, field: str) -> str:
    if not isinstance(raw, str) or not _NAME.fullmatch(raw):
        raise OptionsError(field, "contains characters that are not allowed (letters, digits, _ . + - only)")
    return raw


def _choice(raw: Any, field: str, allowed: Sequence[str], what: str) -> str:
    value = _name(raw, field)
    if allowed and value not in allowed:
        raise OptionsError(field, f"{value!r} is not an allowed {what} (choose from {', '.join(allowed)})")
    return value


def _loosest(partitions: Any) -> dict[str, Any]:
    loose: dict[str, Any] = {}
    for p in partitions:
        p = p or {}
        for key in ("maxNodes", "maxGpus"):
            if key in p and (key not in loose or (loose[key] is not None and p[key] > loose[key])):
                loose[key] = p[key]
        if "maxTime" in p and (
            "maxTime" not in loose
            or parse_slurm_time(p["maxTime"], "maxTime") > parse_slurm_time(loose["maxTime"])
        ):
            loose["maxTime"] = p["maxTime"]
    return loose


def _allocations(auth_state: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    allocs = (auth_state or {}).get("allocations")
    return [a for a in allocs if isinstance(a, Mapping)] if isinstance(allocs, list) else []


def _directive(raw: Any, field: str, allowed: Sequence[str]) -> str:
    if not isinstance(raw, str):
        raise OptionsError(field, "must be text such as --mem=4G")
    if "\n" in raw or "\r" in raw or "\x00" in raw:
        raise OptionsError(field, "must be a single line")
    text = raw.strip()
    if text.startswith("#SBATCH"):
        text = text[len("#SBATCH") :].strip()
    m = _DIRECTIVE.fullmatch(text)
    if not m:
        raise OptionsError(field, f"{raw!r} is not an option such as --mem=4G")
    opt, value = m.group(1), m.group(2)
    if opt not in allowed:
        raise OptionsError(
            field,
            f"{opt} is not allowed here (allowed: {', '.join(allowed) if allowed else 'none'})",
        )
    if value is None or value == "":
        return opt
    if not _DIRECTIVE_VALUE.fullmatch(value):
        raise OptionsError(field, f"the value of {opt} contains characters that are not allowed")
    return f"{opt}={value}"


def validate(cell: Cell, auth_state: Mapping[str, Any] | None, raw: Mapping[str, Any] | None) -> CleanOptions:
    """Check ``raw`` user options against ``cell``'s limits and the user's allocations.

    Raises OptionsError(field, message) for the first offending field; unknown fields are
    refused too, so a typo never silently falls back to a default.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise OptionsError("user_options", "must be an object")
    raw = dict(raw)
    allowed = allowed_fields(cell)
    for key in raw:
        if key not in allowed:
            if key == "email_on_start" and cell.is_batch:
                if raw[key] in _FALSE:
                    continue  # "no email" is what a system without job emails does anyway
                raise OptionsError(key, f"{cell.system.display_name} does not send job emails")
            if cell.is_batch and key in SLURM_FIELDS:
                raise OptionsError(key, f"is fixed by the service level {cell.level.title!r}")
            raise OptionsError(str(key), "is not an option of this server")
    # Empty strings and None mean "not set" (HTML forms send empty fields).
    raw = {k: v for k, v in raw.items() if v not in (None, "", []) and k in allowed}

    su = cell.system.singleuser
    out: dict[str, Any] = {}

    versions = cell.versions
    if "version" in raw:
        out["version"] = _choice(raw["version"], "version", sorted(versions), "version")
        if not versions:
            raise OptionsError("version", "this system offers no selectable versions")
    elif cell.default_version:
        out["version"] = cell.default_version

    if "startup_script" in raw:
        if not su.get("allowStartupScript", False):
            raise OptionsError(
                "startup_script", f"{cell.system.display_name} does not allow start-up scripts"
            )
        path = raw["startup_script"]
        if not isinstance(path, str) or not _SCRIPT_PATH.fullmatch(path) or ".." in path.split("/"):
            raise OptionsError("startup_script", "must be a plain path such as ~/jupyter-start.sh")
        out["startup_script"] = path

    if not cell.is_batch:
        return CleanOptions(**out)

    system = cell.limits  # the system's scheduler settings (systems.<s>.slurm)
    fixed = dict(cell.fixed)
    defaults = dict(system.get("defaults") or {})
    # Configurable levels take the user's value, else the system default; fixed levels
    # take the level's value and the user may not change it (checked above).
    merged = {**defaults, **fixed, **raw} if cell.level.configurable else {**defaults, **raw, **fixed}

    allocs = _allocations(auth_state)
    alloc: Mapping[str, Any] | None = None
    if "account" in merged:
        account = _name(merged["account"], "account")
        if allocs:
            matches = [a for a in allocs if a.get("account") == account]
            if not matches:
                names = ", ".join(str(a.get("account")) for a in allocs)
                raise OptionsError("account", f"you have no allocation {account!r} (yours: {names})")
            alloc = matches[0]
        out["account"] = account
    elif allocs and allocs[0].get("account"):
        alloc = allocs[0]
        out["account"] = _name(alloc["account"], "account")

    partitions: Mapping[str, Any] = system.get("partitions") or {}
    if "partition" in merged:
        part = _choice(merged["partition"], "partition", sorted(partitions), "partition")
        if not partitions:
            raise OptionsError("partition", f"{cell.system.display_name} lists no partitions")
        if alloc and alloc.get("partitions") and part not in alloc["partitions"]:
            raise OptionsError("partition", f"account {out['account']!r} may not use partition {part!r}")
        out["partition"] = part
    limits: Mapping[str, Any] = partitions.get(out.get("partition", ""), {}) or {}
    if "partition" not in out and partitions:
        # Slurm picks its default partition: hold the job to the most any partition allows.
        limits = _loosest(partitions.values())

    if "qos" in merged:
        qos = _choice(merged["qos"], "qos", list(system.get("qos") or []), "QOS")
        if alloc and alloc.get("qos") and qos not in alloc["qos"]:
            raise OptionsError("qos", f"account {out['account']!r} may not use QOS {qos!r}")
        out["qos"] = qos

    if "nodes" in merged:
        out["nodes"] = _int(merged["nodes"], "nodes", 1, limits.get("maxNodes"))
    if "gpus" in merged:
        out["gpus"] = _int(merged["gpus"], "gpus", 0, limits.get("maxGpus"))
    if "time" in merged:
        seconds = parse_slurm_time(merged["time"], "time")
        if limits.get("maxTime"):
            max_seconds = parse_slurm_time(limits["maxTime"], "maxTime")
            if seconds > max_seconds:
                raise OptionsError(
                    "time",
                    f"{merged['time']} is over the limit of partition {out.get('partition')!r} "
                    f"({limits['maxTime']})",
                )
        out["time"] = format_slurm_time(seconds)
        out["time_seconds"] = seconds
    if "constraint" in merged:
        out["constraint"] = _choice(
            merged["constraint"], "constraint", list(system.get("constraints") or []), "constraint"
        )
        if not system.get("constraints") and "constraint" not in fixed:
            raise OptionsError("constraint", f"{cell.system.display_name} offers no constraints")
    if "reservation" in merged:
        if not system.get("allowReservations", False):
            raise OptionsError("reservation", f"{cell.system.display_name} does not allow reservations")
        out["reservation"] = _name(merged["reservation"], "reservation")
    if "exclusive" in fixed:
        out["exclusive"] = bool(fixed["exclusive"])
    if "email_on_start" in raw:
        flag = raw["email_on_start"]
        flag = flag.strip().lower() if isinstance(flag, str) else flag
        if flag not in _TRUE and flag not in _FALSE:
            raise OptionsError("email_on_start", "must be true or false")
        out["email_on_start"] = flag in _TRUE

    if "licenses" in merged:
        lic = merged["licenses"]
        lic = [lic] if isinstance(lic, str) else lic
        if not isinstance(lic, list):
            raise OptionsError("licenses", "must be a list such as ['scratch']")
        allowed_lic = list(system.get("licenses") or [])
        clean: list[str] = []
        for i, item in enumerate(lic):
            f = f"licenses[{i}]"
            # Only the normalised "name" or "name:count" is emitted, never the user's text:
            # a line break kept from it would end the #SBATCH line (issue 8).
            m = _LICENSE.fullmatch(item) if isinstance(item, str) else None
            if m is None:
                raise OptionsError(f, "must be a license name such as scratch, or scratch:2")
            name = _choice(m.group(1), f, allowed_lic, "license")
            if not allowed_lic:
                raise OptionsError(f, f"{cell.system.display_name} offers no licenses")
            if m.group(2) is None:
                clean.append(name)
            else:
                clean.append(f"{name}:{_int(int(m.group(2)), f, 1, 1000)}")
        out["licenses"] = tuple(clean)

    if "extra_directives" in merged:
        extra = merged["extra_directives"]
        extra = [extra] if isinstance(extra, str) else extra
        if not isinstance(extra, list):
            raise OptionsError("extra_directives", "must be a list of lines such as --mem=4G")
        allowed_dir = list(system.get("extraDirectivesAllowed") or [])
        out["extra_directives"] = tuple(
            _directive(line, f"extra_directives[{i}]", allowed_dir) for i, line in enumerate(extra)
        )

    return CleanOptions(**out)
