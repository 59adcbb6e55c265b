"""How a Spin server ended, read from its pod's status (spawners/spin.py pod_ending); the
shapes are Kubernetes' own (kubectl get pod -o json of an OOM-killed, an evicted and an
exited notebook)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hpchub import endings
from hpchub.spawners.spin import pod_ending, quantity_bytes


def pod(terminated: dict[str, Any] | None = None, **status: Any) -> dict[str, Any]:
    state = {"terminated": terminated} if terminated is not None else {"running": {"startedAt": "x"}}
    return {
        "spec": {"containers": [{"name": "notebook", "resources": {"limits": {"memory": "1073741824"}}}]},
        "status": {"phase": "Running", "containerStatuses": [{"name": "notebook", "state": state}], **status},
    }


def test_a_running_notebook_has_not_ended() -> None:
    assert pod_ending(pod()) is None
    assert pod_ending({"status": {"phase": "Pending"}}) is None


def test_oom_killed_is_out_of_memory_with_the_limit_as_the_request() -> None:
    cause, figures = pod_ending(
        pod(
            {
                "reason": "OOMKilled",
                "exitCode": 137,
                "startedAt": "2026-12-06T03:00:00Z",
                "finishedAt": "2026-12-06T03:01:30Z",
            },
            phase="Failed",
        )
    )
    assert cause == "out_of_memory"
    assert (figures["state"], figures["exit_code"], figures["elapsed_seconds"]) == ("OOMKilled", "137", 90)
    assert figures["requested_memory_bytes"] == 2**30
    assert endings.sentence(cause, endings.clean_details(figures)) == "ran out of memory (1.0 GiB requested)"


def test_evicted_and_exit_codes() -> None:
    evicted = {
        "spec": {"containers": []},
        "status": {
            "phase": "Failed",
            "reason": "Evicted",
            "message": "The node was low on resource: memory.",
        },
    }
    assert pod_ending(evicted)[0] == "evicted"
    cause, figures = pod_ending(pod({"reason": "Error", "exitCode": 1}))
    assert (cause, figures["exit_code"]) == ("exited", "1")
    assert endings.sentence(cause, endings.clean_details(figures)).endswith("with status 1")
    assert pod_ending(pod({"reason": "StartError", "exitCode": 128}))[0] == "start_failed"


def test_quantities() -> None:
    assert quantity_bytes("1Gi") == quantity_bytes("1073741824") == 2**30
    assert quantity_bytes("1G") == quantity_bytes("1e9") == 10**9
    assert quantity_bytes("512Mi") == 512 * 2**20
    for bad in ("", None, "1 G", "Gi", "-1Gi", "1Zi", "0", "999999999999999e99Ei"):
        assert quantity_bytes(bad) is None, bad


QUANTITY_SHAPED = st.from_regex(
    r"[0-9]{1,15}(\.[0-9]{1,6})?(e[0-9]{1,2})?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?", fullmatch=True
)


@settings(max_examples=300, deadline=200)
@given(st.text(max_size=80) | QUANTITY_SHAPED)
def test_any_quantity_text_gives_a_size_the_table_can_hold_or_none(text: str) -> None:
    # Past 2^63 no machine's memory: the cell's words would be nonsense ("8.6e+121 GiB").
    n = quantity_bytes(text)
    assert n is None or 0 < n < 2**63
