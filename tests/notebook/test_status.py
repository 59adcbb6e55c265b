"""The hub's status JSON, parsed at the boundary: a validated status or a StatusError naming
the field, never another exception (hypothesis feeds it arbitrary JSON and bytes)."""

from __future__ import annotations

import json
import math

import pytest
from hpchub_notebook.status import HubStatus, StatusError, parse_status, parse_status_body
from hypothesis import given, settings
from hypothesis import strategies as st

FULL = {
    "phase": "running",
    "ends_at": 1_900_000_000.5,
    "time_limit_seconds": 3600,
    "warnings_seconds": [300, 1800],
    "save_before_seconds": 120,
    "extend": {"allowed": True, "max_ends_at": 1_900_003_600, "steps_seconds": [1800, 3600], "reason": ""},
    "cull": {"timeout_seconds": 3600, "warn_before_seconds": 600, "last_activity": "2030-03-17T17:46:40Z"},
    "message": "",
}


def test_the_contracts_example_parses():
    s = parse_status(FULL)
    assert s.phase == "running" and s.ends_at == 1_900_000_000.5 and s.time_limit_seconds == 3600
    assert s.warnings_seconds == (1800, 300)  # sorted, latest warning last
    assert s.extend is not None and s.extend.allowed and s.extend.steps_seconds == (3600, 1800)
    assert s.cull is not None and s.cull.last_activity == 1_900_000_000.0


def test_unknown_keys_are_ignored_and_defaults_fill_in():
    s = parse_status({"phase": "running", "from_a_newer_hub": {"x": 1}, "ends_at": None})
    assert s == HubStatus("running", None, None, (1800, 300), 120, None, None, "")


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"phase": ""}, "phase"),
        ({"ends_at": True}, "ends_at"),
        ({"ends_at": "soon"}, "ends_at"),
        ({"ends_at": -5}, "ends_at"),
        ({"ends_at": 1e300}, "ends_at"),
        ({"warnings_seconds": [300, "x"]}, "warnings_seconds[1]"),
        ({"warnings_seconds": list(range(1, 40))}, "warnings_seconds"),
        ({"save_before_seconds": 1.5}, "save_before_seconds"),
        ({"extend": {"allowed": "yes"}}, "extend.allowed"),
        ({"extend": []}, "extend"),
        ({"cull": {"timeout_seconds": 0}}, "cull.timeout_seconds"),
        ({"cull": {"timeout_seconds": 60, "last_activity": "yesterday"}}, "cull.last_activity"),
        ({"ends_at": 10**5000}, "ends_at"),  # not even printable (Python's 4300-digit limit)
        ({"message": 5}, "message"),
    ],
)
def test_bad_fields_are_refused_by_name(patch, field):
    with pytest.raises(StatusError) as e:
        parse_status({**FULL, **patch})
    assert str(e.value).startswith(field + ":"), str(e.value)


@pytest.mark.parametrize("bad", [-1, 10**400, 100.5, "high", True, float("nan")])
def test_a_threshold_out_of_range_is_ignored_not_the_status(bad):
    """A hub of another version must not cost the user the walltime warnings."""
    cull = parse_status({**FULL, "cull": {"timeout_seconds": 60, "busy_gpu_percent": bad}}).cull
    assert cull is not None and cull.busy_gpu_percent is None and cull.timeout_seconds == 60
    cull = parse_status(
        {**FULL, "cull": {"timeout_seconds": 60, "busy_cpu_percent": 0, "busy_gpu_percent": 7}}
    ).cull
    assert cull is not None and (cull.busy_cpu_percent, cull.busy_gpu_percent) == (0.0, 7.0)


def test_long_texts_are_cut():
    assert len(parse_status({**FULL, "message": "x" * 10_000}).message) == 1000


def test_body_that_is_not_json_is_a_status_error():
    for body in (b"<html>502 Bad Gateway</html>", b"\xff\xfe", b"[" * 100_000, b""):
        with pytest.raises(StatusError):
            parse_status_body(body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=6)
    ),
    max_leaves=30,
)
# Objects shaped like the status, with each field sometimes wrong: reaches the deep checks.
keys = st.sampled_from(
    list(FULL)
    + [
        "allowed",
        "steps_seconds",
        "timeout_seconds",
        "last_activity",
        "busy_cpu_percent",
        "busy_gpu_percent",
        "x",
    ]
)
shaped = st.fixed_dictionaries(
    {},
    optional={k: st.one_of(st.just(v), json_values) for k, v in FULL.items()},
).map(lambda d: {"phase": "running", **d}) | st.dictionaries(keys, json_values, max_size=8)


def _checked(s: HubStatus) -> None:
    assert s.ends_at is None or (math.isfinite(s.ends_at) and 0 < s.ends_at < 1e11)
    if s.cull is not None:
        for percent, top in ((s.cull.busy_cpu_percent, 102400), (s.cull.busy_gpu_percent, 100)):
            assert percent is None or (isinstance(percent, float) and 0 <= percent <= top)
    assert all(isinstance(w, int) and w > 0 for w in s.warnings_seconds)
    assert len(s.message) <= 1000


@settings(max_examples=400, deadline=None)
@given(st.one_of(json_values, shaped))
def test_any_json_gives_a_status_or_a_refusal(data):
    try:
        s = parse_status(data)
    except StatusError:
        return
    _checked(s)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_body_gives_a_status_or_a_refusal(body):
    try:
        s = parse_status_body(body)
    except StatusError:
        return
    _checked(s)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=70))
def test_any_last_activity_text_gives_a_status_or_a_refusal(text):
    try:
        parse_status({"phase": "running", "cull": {"timeout_seconds": 60, "last_activity": text}})
    except StatusError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["busy_cpu_percent", "busy_gpu_percent"]), json_values, max_size=2))
def test_any_threshold_gives_a_bounded_percentage_or_a_refusal(thresholds):
    try:
        s = parse_status({"phase": "running", "cull": {"timeout_seconds": 60, **thresholds}})
    except StatusError:
        return
    _checked(s)
