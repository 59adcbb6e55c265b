"""The configurable form: which fields a cell offers, and form data -> raw user_options.

The fields come from the system's Slurm settings in values and the user's allocations;
`hpchub.options.allowed_fields` says which options a cell accepts. Checking the values is
`hpchub.options.validate`'s job alone -- this module never judges a value, it only maps
the validator's error (``OptionsError.field``) to the field it belongs next to.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from tornado import web

from ..access import refusal
from ..grid import Cell
from ..options import allowed_fields

# How 0.1.0's form stored "email me when the job starts"; still read to pre-fill the box.
MAIL_DIRECTIVE = "--mail-type=BEGIN"
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@dataclass
class Field:
    name: str
    label: str
    kind: str  # select | text | number | checkboxes | textarea | checkbox
    value: Any = ""
    choices: list[tuple[str, str]] = field(default_factory=list)
    help: str = ""
    error: str = ""
    min: int | None = None
    max: int | None = None
    placeholder: str = ""

    @property
    def input_id(self) -> str:
        return f"opt-{self.name.replace('_', '-')}"


def _partition_help(partitions: Mapping[str, Any]) -> str:
    parts = []
    for name, lim in sorted(partitions.items()):
        lim = lim or {}
        bits = []
        if lim.get("maxNodes"):
            bits.append(f"up to {lim['maxNodes']} nodes")
        if lim.get("maxTime"):
            bits.append(f"{lim['maxTime']} max")
        if lim.get("maxGpus"):
            bits.append(f"{lim['maxGpus']} GPUs per node")
        parts.append(f"{name}: {', '.join(bits)}" if bits else name)
    return "; ".join(parts)


def error_field(field_name: str) -> str:
    """The form field an OptionsError.field belongs to ("licenses[0]" -> "licenses")."""
    return re.sub(r"\[\d+\]$", "", field_name)


def form_fields(
    cell: Cell,
    auth_state: Mapping[str, Any] | None,
    last: Mapping[str, Any] | None = None,
    errors: Mapping[str, str] | None = None,
) -> list[Field]:
    """The form's fields, pre-filled from `last` (the user's previous raw options)."""
    last = dict(last or {})
    errors = {error_field(k): v for k, v in (errors or {}).items()}
    accepted = set(allowed_fields(cell))
    su = cell.system.singleuser
    limits = cell.limits
    defaults = dict(limits.get("defaults") or {})
    allocs = [a for a in (auth_state or {}).get("allocations") or () if isinstance(a, Mapping)]
    extra = last.get("extra_directives") or []
    extra = [extra] if isinstance(extra, str) else list(extra)
    mail = last.get("email_on_start") in (True, "on", "true") or MAIL_DIRECTIVE in extra
    extra = [line for line in extra if line != MAIL_DIRECTIVE]

    def val(name: str, default: Any = "") -> Any:
        return last.get(name, default)

    out: list[Field] = []
    if "account" in accepted:
        if allocs:
            choices = [(str(a.get("account")), str(a.get("account"))) for a in allocs]
            out.append(Field("account", "Account", "select", val("account", choices[0][0]), choices))
        else:
            out.append(
                Field("account", "Account", "text", val("account"), help="Your default account if empty.")
            )
    partitions = limits.get("partitions") or {}
    if "partition" in accepted and partitions:
        choices = [(p, p) for p in sorted(partitions)]
        default = defaults.get("partition") or choices[0][0]
        out.append(
            Field(
                "partition",
                "Partition",
                "select",
                val("partition", default),
                choices,
                _partition_help(partitions),
            )
        )
    if "qos" in accepted and limits.get("qos"):
        choices = [(q, q) for q in limits["qos"]]
        out.append(Field("qos", "QOS", "select", val("qos", defaults.get("qos", choices[0][0])), choices))
    if "nodes" in accepted:
        max_nodes = max([int((p or {}).get("maxNodes") or 1) for p in partitions.values()] or [1])
        out.append(
            Field("nodes", "Nodes", "number", val("nodes", defaults.get("nodes", 1)), min=1, max=max_nodes)
        )
    if "time" in accepted:
        out.append(
            Field(
                "time",
                "Time limit",
                "text",
                val("time", defaults.get("time", "01:00:00")),
                help="HH:MM:SS or D-HH:MM:SS, within the partition's limit.",
                placeholder="01:00:00",
            )
        )
    if "gpus" in accepted and any((p or {}).get("maxGpus") for p in partitions.values()):
        max_gpus = max(int((p or {}).get("maxGpus") or 0) for p in partitions.values())
        out.append(
            Field(
                "gpus",
                "GPUs per node",
                "number",
                val("gpus", defaults.get("gpus", 0)),
                min=0,
                max=max_gpus,
                help="On each of the job's nodes, within the partition's limit.",
            )
        )
    if "constraint" in accepted and limits.get("constraints"):
        choices = [("", "(none)")] + [(c, c) for c in limits["constraints"]]
        out.append(Field("constraint", "Constraint", "select", val("constraint", ""), choices))
    if "reservation" in accepted and limits.get("allowReservations"):
        out.append(
            Field("reservation", "Reservation", "text", val("reservation"), help="Leave empty for none.")
        )
    if "licenses" in accepted and limits.get("licenses"):
        chosen = val("licenses", [])
        chosen = [chosen] if isinstance(chosen, str) else list(chosen)
        out.append(
            Field(
                "licenses",
                "Licenses / file systems",
                "checkboxes",
                chosen,
                [(lic, lic) for lic in limits["licenses"]],
            )
        )
    versions = cell.versions
    if "version" in accepted and versions:
        choices = [
            (v, v + (" (default)" if v == cell.default_version else ""))
            for v in sorted(versions, reverse=True)
        ]
        if not cell.default_version:
            # What Start without options gives: the system's own environment (its
            # singleuser.modules, or spin.image), not the first label in the list.
            choices.insert(0, ("", "current environment (default)"))
        out.append(
            Field(
                "version",
                "Environment version",
                "select",
                val("version", cell.default_version),
                choices,
                "Earlier versions stay available for reproducibility.",
            )
        )
    if "startup_script" in accepted and su.get("allowStartupScript"):
        out.append(
            Field(
                "startup_script",
                "Start-up script",
                "text",
                val("startup_script"),
                help="Sourced before the server starts, e.g. ~/jupyter-start.sh.",
                placeholder="~/jupyter-start.sh",
            )
        )
    if "email_on_start" in accepted:
        out.append(
            Field(
                "email_on_start",
                "Email me when the job starts",
                "checkbox",
                mail,
                help="Slurm's mail to your account's address when the job leaves the queue.",
            )
        )
    allowed_dirs = list(limits.get("extraDirectivesAllowed") or [])
    if "extra_directives" in accepted and allowed_dirs:
        out.append(
            Field(
                "extra_directives",
                "Extra #SBATCH options",
                "textarea",
                "\n".join(extra),
                help="One per line; allowed: " + ", ".join(allowed_dirs) + ".",
                placeholder="--mem=64G",
            )
        )
    for f in out:
        f.error = errors.get(f.name, "")
    return out


def options_from_form(formdata: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Raw user_options from a submitted form (dict of lists, as JupyterHub passes it).

    Empty fields are left out (the validator applies defaults); no value is judged here.
    """
    out: dict[str, Any] = {}
    for key, values in formdata.items():
        if key == "_xsrf" or key.endswith("_file"):
            continue
        values = [v for v in values if v is not None]
        if key == "licenses":
            if values:
                out[key] = list(values)
        elif key == "extra_directives":
            lines = [ln.strip() for v in values for ln in v.splitlines() if ln.strip()]
            if lines:
                out[key] = lines
        elif key == "email_on_start":
            # A checked box sends "on"; an unchecked one sends nothing (the default, off).
            out[key] = bool(values) and values[0] not in ("", "off", "0")
        elif values and values[0].strip() != "":
            out[key] = values[0].strip()
    return out


_env: jinja2.Environment | None = None


def _environment() -> jinja2.Environment:
    global _env
    if _env is None:
        _env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATES)),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
    return _env


def render_fields(fields: list[Field]) -> str:
    """The fields as HTML (no <form> element): used by the console's form page and by the
    standard spawn page (the dispatcher's ``options_form``), so both look the same."""
    return _environment().get_template("console_fields.html").render(fields=fields)


async def spawner_options_form(spawner: Any) -> str:
    """``Spawner.options_form`` for JupyterHub's own spawn page (/hub/spawn/<user>/<server>):
    the same fields for configurable cells, no form (start at once) for the others."""
    cell = getattr(spawner, "cell", None)
    if cell is None:
        return ""
    auth_state = await spawner.user.get_auth_state()
    refused = refusal(cell, spawner.user, auth_state)
    if refused:  # no form for a cell the user may not start (its submit would be refused)
        raise web.HTTPError(403, "%s", refused.message)
    if not cell.level.configurable:
        return ""
    orm = getattr(spawner, "orm_spawner", None)
    last = (getattr(orm, "user_options", None) or {}) if orm is not None else {}
    return render_fields(form_fields(cell, auth_state, last))


def spawner_options_from_form(formdata: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """``Spawner.options_from_form``: the spawner's own validator then judges the result."""
    return options_from_form(formdata)
