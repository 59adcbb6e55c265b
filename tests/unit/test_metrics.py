"""hpchub's own metrics: what the spawners' one-line calls record, and what a scrape shows.
(The integration test tests/integration/test_metrics.py scrapes a real hub.)"""

from __future__ import annotations

import math

from prometheus_client import REGISTRY, generate_latest

from hpchub import metrics
from hpchub.grid import Grid
from tests.harness.values import grid_values

VALUES = grid_values(
    {
        "perl": {"displayName": "Perlmutter", "ssh": {"hosts": ["login01"], "knownHosts": "x"}},
        "spin": {"displayName": "Spin"},
    },
    cells={"perl-shared": "ssh", "perl-gpu": "slurm", "spin-shared": "kubernetes"},
    levels={"shared": "Shared", "gpu": "GPU"},
)
SYSTEMS = VALUES["systems"]


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def cell(name: str):
    return Grid.from_values(VALUES).cell(name)


def test_buckets_reach_a_day_of_queue_wait() -> None:
    assert 86400 in metrics.BUCKETS and metrics.BUCKETS[-1] == math.inf
    assert list(metrics.BUCKETS) == sorted(metrics.BUCKETS)


def test_slurm_start_is_split_into_queue_wait_and_server_start() -> None:
    wait0 = value("hpchub_spawn_queue_wait_seconds_count", system="perl", level="gpu")
    start0 = value("hpchub_spawn_server_start_seconds_count", system="perl", level="gpu", backend="slurm")
    timer = metrics.spawn_timer(cell("perl-gpu"), "slurm")
    timer.began -= 7000  # the job queued almost two hours
    timer.running()
    timer.running()  # seen running on two polls: one observation
    timer.running_at -= 30  # the server took 30 s to answer
    timer.ready()
    assert value("hpchub_spawn_queue_wait_seconds_count", system="perl", level="gpu") == wait0 + 1
    assert (
        value("hpchub_spawn_server_start_seconds_count", system="perl", level="gpu", backend="slurm")
        == start0 + 1
    )
    # that lands above the 1 h bucket and within the 2 h one
    le1h = value("hpchub_spawn_queue_wait_seconds_bucket", system="perl", level="gpu", le="3600.0")
    le2h = value("hpchub_spawn_queue_wait_seconds_bucket", system="perl", level="gpu", le="7200.0")
    assert le2h - le1h >= 1
    assert value("hpchub_spawn_server_start_seconds_sum", system="perl", level="gpu", backend="slurm") >= 30


def test_ssh_start_has_no_queue_wait_and_times_the_server_from_the_launch() -> None:
    wait0 = value("hpchub_spawn_queue_wait_seconds_count", system="perl", level="shared")
    start0 = value("hpchub_spawn_server_start_seconds_count", system="perl", level="shared", backend="ssh")
    sum0 = value("hpchub_spawn_server_start_seconds_sum", system="perl", level="shared", backend="ssh")
    timer = metrics.spawn_timer(cell("perl-shared"), "ssh")
    timer.began -= 20  # launched 20 s ago
    timer.ready()
    assert value("hpchub_spawn_queue_wait_seconds_count", system="perl", level="shared") == wait0
    assert (
        value("hpchub_spawn_server_start_seconds_count", system="perl", level="shared", backend="ssh")
        == start0 + 1
    )
    # The 20 s from the launch, not 0 (it used to start the clock at ready()).
    taken = (
        value("hpchub_spawn_server_start_seconds_sum", system="perl", level="shared", backend="ssh") - sum0
    )
    assert taken >= 20, taken


def test_errors_are_counted_by_system_key_even_when_called_with_the_display_name() -> None:
    metrics.register_systems(SYSTEMS)
    # The series exist at 0 before anything failed (rate() is 0, not "no data").
    text = generate_latest(REGISTRY).decode()
    assert 'hpchub_ssh_errors_total{kind="host_key",system="perl"} 0.0' in text
    assert 'hpchub_scheduler_errors_total{operation="submit",system="perl"} 0.0' in text
    assert 'system="spin"' not in text.split("hpchub_ssh_errors_total")[1].split("# HELP")[0]
    before = value("hpchub_ssh_errors_total", system="perl", kind="unreachable")
    metrics.ssh_error("Perlmutter", "unreachable")
    assert value("hpchub_ssh_errors_total", system="perl", kind="unreachable") == before + 1
    before = value("hpchub_scheduler_errors_total", system="perl", operation="query")
    metrics.scheduler_error("Perlmutter", "query")
    assert value("hpchub_scheduler_errors_total", system="perl", operation="query") == before + 1


class Conn:
    """Only what the gauge reads of an asyncssh connection."""

    def __init__(self) -> None:
        self.closed = False

    def is_closed(self) -> bool:
        return self.closed


def test_ssh_connections_gauge_counts_open_connections_only() -> None:
    metrics.register_systems(SYSTEMS)
    metrics.install()
    metrics.install()  # idempotent: a second loader run does not register twice
    a, b = Conn(), Conn()
    base = value("hpchub_ssh_connections", system="perl")
    metrics.ssh_connected("Perlmutter", a)
    metrics.ssh_connected("perl", b)
    assert value("hpchub_ssh_connections", system="perl") == base + 2
    a.closed = True
    assert value("hpchub_ssh_connections", system="perl") == base + 1
    del b  # dropped by the pool: gone from the gauge too
    assert value("hpchub_ssh_connections", system="perl") == base


def test_servers_gauge_has_a_zero_series_per_cell_and_state_outside_a_hub() -> None:
    metrics.register_systems(SYSTEMS)
    metrics.install()
    for system, level in (("perl", "shared"), ("perl", "gpu"), ("spin", "shared")):
        for state in metrics.SERVER_STATES:
            assert (
                REGISTRY.get_sample_value(
                    "hpchub_servers", {"system": system, "level": level, "state": state}
                )
                == 0.0
            )
