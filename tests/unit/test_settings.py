"""A system's settings are resolved once, typed, and every default is the schema's
(hpchub/settings.py against `default:` in values.schema.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from hpchub.grid import Grid
from hpchub.options import format_slurm_time
from hpchub.settings import (
    BATCH_START_TIMEOUT,
    SERVER_START_TIMEOUT,
    SystemSettings,
)
from tests.harness.values import grid_values

SCHEMA = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "chart" / "hpchub" / "values.schema.yaml").read_text()
)
SYSTEM = SCHEMA["properties"]["systems"]["additionalProperties"]["properties"]
DEFAULTS = SystemSettings()

# (path under systems.<s>, the default hpchub uses)
PAIRS: list[tuple[str, Any]] = [
    ("status.intervalSeconds", DEFAULTS.status.interval_seconds),
    ("singleuser.cmd", list(DEFAULTS.singleuser.cmd)),
    ("singleuser.ip", DEFAULTS.singleuser.ip),
    ("singleuser.maxLifetime", DEFAULTS.singleuser.max_lifetime),
    ("singleuser.portRange.min", DEFAULTS.singleuser.port_min),
    ("singleuser.portRange.max", DEFAULTS.singleuser.port_max),
    ("slurm.pollSeconds", DEFAULTS.batch.poll_seconds),
    ("slurm.requeue", DEFAULTS.batch.requeue),
    ("ssh.tunnel", DEFAULTS.tunnel.enabled),
    ("ssh.tunnelBindAddress", DEFAULTS.tunnel.bind_address),
    ("ssh.tunnelRemoteBind", DEFAULTS.tunnel.remote_bind),
    ("ssh.tunnelRemoteHost", DEFAULTS.tunnel.remote_host),
    ("ssh.tunnelRelayPython", DEFAULTS.tunnel.relay_python),
    ("walltime.warningsMinutes", list(DEFAULTS.walltime.warnings_minutes)),
    ("walltime.saveBeforeSeconds", DEFAULTS.walltime.save_before_seconds),
    ("slurm.extend.enabled", DEFAULTS.extend.enabled),
    ("slurm.extend.steps", [format_slurm_time(s) for s in DEFAULTS.extend.steps_seconds]),
]


def schema_default(path: str) -> Any:
    node: Any = {"properties": SYSTEM}
    for part in path.split("."):
        node = node["properties"][part]
    assert "default" in node, f"systems.<s>.{path} has no default in the schema"
    return node["default"]


@pytest.mark.parametrize(("path", "used"), PAIRS, ids=[p for p, _ in PAIRS])
def test_every_default_is_the_schemas(path: str, used: Any) -> None:
    assert schema_default(path) == used


def test_values_override_the_defaults_and_arrive_typed() -> None:
    s = SystemSettings.from_values(
        {
            "status": {"user": "stat", "forceCommand": "/x", "intervalSeconds": 45},
            "singleuser": {"startTimeoutSeconds": 300, "maxLifetime": "0", "portRange": {"min": 32768}},
            "slurm": {"pollSeconds": 2, "requeue": True, "nodePattern": "nid[0-9]+"},
            "ssh": {"tunnel": True, "tunnelRelayPython": "/usr/bin/python3"},
        },
        "slurm",
    )
    assert (s.status.user, s.status.force_command, s.status.interval_seconds) == ("stat", "/x", 45)
    assert (s.singleuser.server_start_timeout, s.singleuser.max_lifetime) == (300, "")
    assert (s.singleuser.port_min, s.singleuser.port_max) == (32768, 65535)
    assert (s.batch.poll_seconds, s.batch.requeue, s.batch.node_pattern) == (2.0, True, "nid[0-9]+")
    assert s.tunnel.enabled and s.tunnel.relay_python == "/usr/bin/python3"


def test_start_timeouts_have_one_rule() -> None:
    """The one place the start timeouts are resolved (they used to fall back to 120, to
    the hub's start_timeout and to 900 in three places)."""
    assert SystemSettings().singleuser.server_start_timeout == SERVER_START_TIMEOUT
    assert SystemSettings().batch_start_timeout == BATCH_START_TIMEOUT
    server = SystemSettings.from_values({"singleuser": {"startTimeoutSeconds": 200}}, "slurm")
    assert server.batch_start_timeout == 200 == server.singleuser.server_start_timeout
    both = SystemSettings.from_values(
        {"singleuser": {"startTimeoutSeconds": 200}, "slurm": {"startTimeoutSeconds": 3600}}, "slurm"
    )
    assert both.batch_start_timeout == 3600


def test_the_grid_resolves_them_once_per_values() -> None:
    values = grid_values(
        {"m": {"ssh": {"hosts": ["h"]}, "status": {"intervalSeconds": 7}}}, cells={"m-shared": "ssh"}
    )
    g = Grid.cached(values["systems"], values["serviceLevels"], {})
    assert g.cell("m-shared").system.settings.status.interval_seconds == 7
    assert Grid.cached(values["systems"], values["serviceLevels"], {}) is g
