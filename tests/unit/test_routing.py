"""Where the proxy may send a user's URL (hpchub/routing.py): the host from the job's node
list as Slurm reports it, checked and mapped by values; the port only inside the range."""

from __future__ import annotations

import pytest

from hpchub import routing
from hpchub.routing import RouteRefused
from hpchub.settings import SingleuserSettings


@pytest.mark.parametrize(
    ("slurm", "nodes", "expected"),
    [
        ({}, "nid[001-004]", ("nid001", "nid001")),
        ({"nodeAddress": "{node}.hsn.example.org"}, "nid0042,login1", ("nid0042", "nid0042.hsn.example.org")),
        (
            {"nodePattern": r"r(?P<rack>\d+)n(?P<slot>\d+)", "nodeAddress": "10.100.{rack}.{slot}"},
            "r12n[07-08]",
            ("r12n07", "10.100.12.07"),
        ),
        (
            {"nodePattern": "(mini|gpu)[0-9]+", "nodeAddress": "127.0.0.1"},
            "gpu[01-02]",
            ("gpu01", "127.0.0.1"),
        ),
    ],
)
def test_the_host_is_the_first_node_mapped_by_values(
    slurm: dict[str, str], nodes: str, expected: tuple[str, str]
) -> None:
    assert (
        routing.node_address("pm", nodes, pattern=slurm.get("nodePattern"), template=slurm.get("nodeAddress"))
        == expected
    )


@pytest.mark.parametrize(
    ("slurm", "nodes", "error"),
    [
        # What a forged squeue answer (a user's shell function, per-user status mode) could name.
        ({"nodePattern": "nid[0-9]+"}, "hpchub-hub.hpchub.svc", "does not match slurm.nodePattern"),
        ({"nodePattern": "nid[0-9]+"}, "nid001x", "does not match slurm.nodePattern"),
        ({}, "10.0.0.1:8081", "cannot read"),  # ':' is no host name character
        ({}, "nid[1-", "cannot read"),
        ({}, "", "cannot read"),
        ({"nodeAddress": "{rack}.example.org"}, "nid001", "names 'rack'"),
        ({"nodePattern": "(?P<n>.+)", "nodeAddress": "{n}/x"}, "ab", "not a host name"),
        ({"nodePattern": "(?P<n>.+)", "nodeAddress": "{n}"}, "a/b", "cannot read"),
    ],
)
def test_node_names_that_are_not_compute_nodes_are_refused(
    slurm: dict[str, str], nodes: str, error: str
) -> None:
    with pytest.raises(RouteRefused, match=error):
        routing.node_address("pm", nodes, pattern=slurm.get("nodePattern"), template=slurm.get("nodeAddress"))


@pytest.mark.parametrize(
    ("singleuser", "port", "ok"),
    [
        ({}, 1024, True),
        ({}, 65535, True),
        ({}, 1023, False),
        ({}, 22, False),
        ({"portRange": {"min": 32768, "max": 60999}}, 32768, True),
        ({"portRange": {"min": 32768, "max": 60999}}, 60999, True),
        ({"portRange": {"min": 32768, "max": 60999}}, 8081, False),
        ({"portRange": {"min": 32768, "max": 60999}}, 61000, False),
    ],
)
def test_only_ports_in_the_range_are_taken(singleuser: dict[str, object], port: int, ok: bool) -> None:
    if ok:
        assert (
            routing.check_port("pm", SingleuserSettings.from_values(singleuser), port, "the address file")
            == port
        )
    else:
        with pytest.raises(RouteRefused, match=rf"the address file reported port {port}, outside"):
            routing.check_port("pm", SingleuserSettings.from_values(singleuser), port, "the address file")
