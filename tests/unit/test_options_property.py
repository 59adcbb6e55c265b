"""Property: whatever a user sends, every string the options validator returns matches its
field's strict pattern and holds no control character, so no value can end an ``#SBATCH``
line early or smuggle a second directive (issue 8, hole 6).

The patterns here are written independently of hpchub.options: they state what a Slurm
job header may receive, not what the validator happens to do.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hpchub.grid import Grid
from hpchub.options import CleanOptions, OptionsError, validate
from hpchub.schedulers.slurm import SlurmScheduler
from tests.harness.values import grid_values

VALUES = grid_values(
    {
        "pm": {
            "displayName": "Perlmutter",
            "singleuser": {
                "versions": {"2026.11": {}, "2026.05": {}},
                "allowStartupScript": True,
            },
            "slurm": {
                "partitions": {
                    "regular": {"maxNodes": 16, "maxTime": "12:00:00", "maxGpus": 4},
                    "gpu": {"maxNodes": 4, "maxTime": "06:00:00", "maxGpus": 4},
                },
                "qos": ["interactive", "regular"],
                "constraints": ["cpu", "gpu"],
                "licenses": ["scratch", "cfs"],
                "allowReservations": True,
                "extraDirectivesAllowed": ["--mem", "--mail-type", "--comment"],
            },
        }
    },
    cells={"pm-shared": "ssh", "pm-configurable": "slurm"},
    levels={"shared": "Shared", "configurable": {"title": "Configurable", "configurable": True}},
)
CELL = Grid.from_values(VALUES).cell("pm-configurable")
AUTH = {"allocations": [{"account": "m1234"}, {"account": "m5678", "partitions": ["regular"]}]}

NAME = r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}"
STRICT: dict[str, re.Pattern[str]] = {
    "version": re.compile(r"2026\.11|2026\.05"),
    "startup_script": re.compile(r"(~/|/)?[A-Za-z0-9_.][A-Za-z0-9_./-]{0,254}"),
    "account": re.compile(r"m1234|m5678"),
    "qos": re.compile(r"interactive|regular"),
    "partition": re.compile(r"regular|gpu"),
    "time": re.compile(r"(\d{1,3}-)?\d{2}:\d{2}:\d{2}"),
    "constraint": re.compile(r"cpu|gpu"),
    "reservation": re.compile(NAME),
    "licenses": re.compile(r"(scratch|cfs)(:[1-9]\d{0,3})?"),
    "extra_directives": re.compile(r"--(mem|mail-type|comment)(=[A-Za-z0-9_.,:@%+/=-]{1,128})?"),
}
DIRECTIVE = re.compile(r"--[a-z][a-z0-9-]*(=[A-Za-z0-9_.,:@%+/=-]{1,128})?")

# Text a hostile user would try: near-valid values with line breaks, NULs, tabs, Unicode
# line separators and shell/Slurm syntax mixed in.
HOSTILE = [
    "\n",
    "\r",
    "\r\n",
    "\x00",
    "\t",
    "\x0b",
    "\x0c",
    "\x85",
    "\u2028",
    "\u2029",
    "\x1b",
    " ",
    "#SBATCH ",
    ";",
    "$(id)",
    "`id`",
    "'",
    '"',
    ",",
    ":",
    "=",
    "--wrap=id",
]
# Per field, valid values: a hostile user starts from one and inserts HOSTILE text
# anywhere, so most examples pass the field's first checks, where a flaw would be.
VALID = {
    "version": ["2026.11", "2026.05"],
    "startup_script": ["~/start.sh", "/global/x/run.sh", "a"],
    "account": ["m1234", "m5678"],
    "qos": ["interactive", "regular"],
    "partition": ["regular", "gpu"],
    "time": ["01:00:00", "30", "1-00:00:00", "5:00"],
    "constraint": ["cpu", "gpu"],
    "reservation": ["res1", "a"],
    "licenses": ["scratch", "cfs:2", "scratch:7"],
    "extra_directives": ["--mem=4G", "--comment=x", "--mail-type=END", "--comment"],
    "nodes": ["1", "2"],
    "gpus": ["0", "1"],
}

SLURM = SlurmScheduler()


def insert(base: str, edits: list[tuple[int, str]]) -> str:
    for pos, bit in edits:
        pos %= len(base) + 1
        base = base[:pos] + bit + base[pos:]
    return base


def crafted(field: str) -> st.SearchStrategy[str]:
    edits = st.lists(st.tuples(st.integers(0, 40), st.sampled_from(HOSTILE)), max_size=3)
    return st.builds(insert, st.sampled_from(VALID[field]), edits)


def field_value(field: str) -> st.SearchStrategy[Any]:
    one = st.one_of(crafted(field), crafted(field), st.text(max_size=20), st.integers(-5, 100_000))
    return st.one_of(one, st.lists(one, min_size=1, max_size=3))


any_fields = st.dictionaries(
    st.sampled_from(sorted(VALID)), st.one_of(st.text(max_size=20), st.integers(), st.none()), max_size=6
)


def no_control(s: str) -> bool:
    # Category C*: control (\n, \x00, ...), format, surrogates, private use, unassigned;
    # plus the Unicode line and paragraph separators.
    return not any(unicodedata.category(ch).startswith("C") or ch in "\u2028\u2029" for ch in s)


def strings(clean: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name, v in clean.as_dict().items():
        if isinstance(v, str):
            out.append((name, v))
        elif isinstance(v, list):
            out.extend((name, item) for item in v)
    return out


def check(raw: dict[str, Any]) -> None:
    try:
        clean = validate(CELL, AUTH, raw)
    except OptionsError:
        return  # refused with a message naming the field: nothing reaches Slurm
    for name, s in strings(clean):
        assert no_control(s), f"{name}: {s!r} holds a control character"
        if name in STRICT:
            assert STRICT[name].fullmatch(s), f"{name}: {s!r} does not match {STRICT[name].pattern}"
    for line in SLURM.directives(clean, False):
        assert no_control(line) and DIRECTIVE.fullmatch(line), f"#SBATCH {line!r}"


# One field at a time, so each field's own checks get the examples (a flaw in one field
# is not hidden behind another field's refusal).
@pytest.mark.parametrize("field", sorted(VALID))
@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_returned_string_matches_its_strict_pattern(field: str, data: st.DataObject) -> None:
    check({field: data.draw(field_value(field))})


@settings(max_examples=150, deadline=None, database=None)
@given(any_fields)
@example({"licenses": ["scratch:\n7 "]})
@example({"licenses": "cfs:2\n#SBATCH --wrap=id"})
@example({"licenses": ["scratch:\u20287"]})
@example({"extra_directives": ["--comment=a\u2028#SBATCH --wrap=id"]})
def test_any_combination_of_fields_returns_only_strict_strings(raw: dict[str, Any]) -> None:
    check(raw)


def test_licenses_are_emitted_normalised() -> None:
    clean = validate(CELL, AUTH, {"licenses": ["scratch", " cfs : 02 "]})
    assert clean.licenses == ("scratch", "cfs:2")
    assert "--licenses=scratch,cfs:2" in SLURM.directives(clean, False)


# --- Acceptance: what the limits allow is accepted, and comes back normalised ------------
# Without this, a validator refusing everything would pass every test above (check()
# returns on any OptionsError).

PARTITIONS = VALUES["systems"]["pm"]["slurm"]["partitions"]


def hms(seconds: int) -> str:
    """Slurm's [D-]HH:MM:SS, written here independently of hpchub.options."""
    days, rest = divmod(seconds, 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{text}" if days else text


def time_spellings(seconds: int) -> st.SearchStrategy[Any]:
    """The ways `sbatch --time` takes a time (and a form or JSON client sends it)."""
    days, rest = divmod(seconds, 86400)
    h, m, s = rest // 3600, rest % 3600 // 60, rest % 60
    ways: list[Any] = [f"{h + 24 * days}:{m:02d}:{s:02d}", f"{days}-{h}:{m}:{s}", f" {hms(seconds)} "]
    if s == 0:
        ways += [seconds // 60, str(seconds // 60), f"{days}-{h}:{m}"]
        if m == 0:
            ways.append(f"{days}-{h}")
    if seconds < 3600:
        ways.append(f"{seconds // 60}:{s}")
    return st.sampled_from(ways)


@st.composite
def valid_options(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """(raw options a user may send, what the validator must return for them), drawn from
    the system's limits and the user's allocations."""
    raw: dict[str, Any] = {}
    want: dict[str, Any] = {}
    account = draw(st.sampled_from(["m1234", "m5678", None]))
    want["account"] = account or "m1234"  # the first allocation when none is named
    if account:
        raw["account"] = account
    # m5678 may use regular only; m1234 any. No partition: the loosest limits apply.
    usable = ["regular"] if want["account"] == "m5678" else sorted(PARTITIONS)
    partition = draw(st.sampled_from([*usable, None]))
    parts = [PARTITIONS[partition]] if partition else list(PARTITIONS.values())
    if partition:
        raw["partition"] = want["partition"] = partition
    limits = {k: max(p[k] for p in parts) for k in ("maxNodes", "maxGpus")}
    max_seconds = max(int(p["maxTime"].partition(":")[0]) for p in parts) * 3600  # whole hours here
    if draw(st.booleans()):
        nodes = draw(st.integers(1, limits["maxNodes"]))
        raw["nodes"] = draw(st.sampled_from([nodes, str(nodes)]))
        want["nodes"] = nodes
    if draw(st.booleans()):
        gpus = draw(st.integers(0, limits["maxGpus"]))
        raw["gpus"] = draw(st.sampled_from([gpus, str(gpus)]))
        want["gpus"] = gpus
    if draw(st.booleans()):
        seconds = draw(st.integers(1, max_seconds // 60)) * 60 + draw(st.sampled_from([0, 0, 30]))
        seconds = min(seconds, max_seconds)
        raw["time"] = draw(time_spellings(seconds))
        want["time"], want["time_seconds"] = hms(seconds), seconds
    for name, allowed in (("qos", ["interactive", "regular"]), ("constraint", ["cpu", "gpu"])):
        if draw(st.booleans()):
            raw[name] = want[name] = draw(st.sampled_from(allowed))
    if draw(st.booleans()):
        raw["version"] = want["version"] = draw(st.sampled_from(["2026.11", "2026.05"]))
    if draw(st.booleans()):
        raw["startup_script"] = want["startup_script"] = draw(
            st.from_regex(r"(~/|/)?[A-Za-z0-9_][A-Za-z0-9_-]{0,20}(\.sh)?", fullmatch=True)
        )
    if draw(st.booleans()):
        raw["reservation"] = want["reservation"] = draw(st.from_regex(NAME, fullmatch=True))
    if draw(st.booleans()):
        names = draw(st.lists(st.sampled_from(["scratch", "cfs"]), min_size=1, max_size=2))
        counts = [draw(st.one_of(st.none(), st.integers(1, 1000))) for _ in names]
        raw["licenses"] = [
            n if c is None else draw(st.sampled_from([f"{n}:{c}", f" {n} : {c:04d} "]))
            for n, c in zip(names, counts, strict=True)
        ]
        want["licenses"] = [n if c is None else f"{n}:{c}" for n, c in zip(names, counts, strict=True)]
    if draw(st.booleans()):
        lines = draw(
            st.lists(
                st.tuples(
                    st.sampled_from(["--mem", "--mail-type", "--comment"]),
                    st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_.,:@%+/=-]{1,40}", fullmatch=True)),
                ),
                min_size=1,
                max_size=3,
            )
        )
        raw["extra_directives"] = [
            opt if v is None else draw(st.sampled_from([f"{opt}={v}", f"#SBATCH {opt}={v}"]))
            for opt, v in lines
        ]
        want["extra_directives"] = [opt if v is None else f"{opt}={v}" for opt, v in lines]
    if draw(st.booleans()):
        flag = draw(st.sampled_from([True, False, "on", "true", "yes", "1", "off", "false", "no", "0"]))
        raw["email_on_start"] = flag
        want["email_on_start"] = flag in (True, "on", "true", "yes", "1")
    return raw, want


@settings(max_examples=300, deadline=None, database=None)
@given(valid_options())
@example(
    (
        {"partition": "gpu", "nodes": 4, "gpus": 4, "time": "6:00:00"},
        {
            "account": "m1234",
            "partition": "gpu",
            "nodes": 4,
            "gpus": 4,
            "time": "06:00:00",
            "time_seconds": 21600,
        },
    )
)
def test_options_within_the_limits_are_accepted_and_normalised(
    case: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    raw, want = case
    clean = validate(CELL, AUTH, raw)  # an OptionsError here fails the test
    # Every field as CleanOptions has it; what the options leave out keeps its default.
    assert clean.as_dict() == {**CleanOptions().as_dict(), **want}
    check(raw)  # and every string is strict
