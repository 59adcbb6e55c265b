"""A system's settings as the spawners and the status board read them: typed, defaulted,
resolved once when the grid is built from values (hpchub.grid), so every key has one
default, here, and it is the schema's (``default:`` in values.schema.yaml; checked by
tests/unit/test_settings.py).

What is not here on purpose: the SSH connection's own settings (hosts, timeouts, limits)
are the SSH layer's (hpchub.sshpool.SSHTarget.from_values, one place too), and the batch
limits the options validator checks (partitions, QOS, licenses) stay tables of values
(hpchub.options reads them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .endings import RETENTION_DAYS
from .values import ConfigError

# Seconds a login-node server may take to answer, when values name none.
SERVER_START_TIMEOUT = 120
# Seconds a batch job may queue and start, when values name none for the scheduler nor
# for the server.
BATCH_START_TIMEOUT = 900
DEFAULT_MAX_LIFETIME = "12:00:00"
# The schema's slurmTime: [D-]HH:MM:SS or MM:SS (values the chart already checked).
_VALUES_TIME = re.compile(r"(?:([0-9]+)-)?(?:([0-9]{1,2}):)?([0-9]{1,2}):([0-9]{2})")


def values_time(value: Any, key: str) -> int:
    """Seconds of a time written in values (``slurmTime`` in the schema); ConfigError
    naming ``key`` for anything else, as the chart's schema refuses it."""
    m = _VALUES_TIME.fullmatch(str(value).strip())
    if not m:
        raise ConfigError(f"{key}: {value!r} is not a time such as 01:30:00 or 1-00:00:00")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


@dataclass(frozen=True)
class StatusSettings:
    """``systems.<s>.status``: who runs the status queries, and how often."""

    user: str | None = None
    force_command: str | None = None
    interval_seconds: int = 30

    @classmethod
    def from_values(cls, v: Mapping[str, Any]) -> StatusSettings:
        return cls(
            user=str(v["user"]) if v.get("user") else None,
            force_command=str(v["forceCommand"]) if v.get("forceCommand") else None,
            interval_seconds=int(v.get("intervalSeconds") or cls.interval_seconds),
        )


@dataclass(frozen=True)
class SingleuserSettings:
    """``systems.<s>.singleuser``: how the notebook server starts on the system."""

    cmd: tuple[str, ...] = ("jupyterhub-singleuser",)
    ip: str = "0.0.0.0"
    connect_host: str | None = None  # login-node servers: the address the proxy uses
    start_timeout_seconds: int | None = None  # None: SERVER_START_TIMEOUT (and see BatchSettings)
    max_lifetime: str = DEFAULT_MAX_LIFETIME  # "" or "0": no limit
    modules: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    port_min: int = 1024
    port_max: int = 65535

    @property
    def server_start_timeout(self) -> int:
        return self.start_timeout_seconds or SERVER_START_TIMEOUT

    @classmethod
    def from_values(cls, v: Mapping[str, Any]) -> SingleuserSettings:
        ports = v.get("portRange") or {}
        lifetime = v.get("maxLifetime", DEFAULT_MAX_LIFETIME)
        return cls(
            cmd=tuple(str(a) for a in v.get("cmd") or cls.cmd),
            ip=str(v.get("ip") or cls.ip),
            connect_host=str(v["connectHost"]) if v.get("connectHost") else None,
            start_timeout_seconds=int(v["startTimeoutSeconds"]) if v.get("startTimeoutSeconds") else None,
            max_lifetime="" if lifetime in (None, "", 0, "0") else str(lifetime),
            modules=tuple(str(m) for m in v.get("modules") or ()),
            environment={str(k): str(x) for k, x in (v.get("environment") or {}).items()},
            port_min=int(ports.get("min", cls.port_min)),
            port_max=int(ports.get("max", cls.port_max)),
        )


@dataclass(frozen=True)
class BatchSettings:
    """``systems.<s>.slurm`` (any scheduler's block): what the batch lifecycle reads."""

    start_timeout_seconds: int | None = None  # None: the server's, else BATCH_START_TIMEOUT
    poll_seconds: float = 5.0
    requeue: bool = False
    job_template: str | None = None
    node_pattern: str | None = None  # None: routing's default (any plain host name)
    node_address: str | None = None  # None: "{node}"

    @classmethod
    def from_values(cls, v: Mapping[str, Any]) -> BatchSettings:
        return cls(
            start_timeout_seconds=int(v["startTimeoutSeconds"]) if v.get("startTimeoutSeconds") else None,
            poll_seconds=float(v.get("pollSeconds") or cls.poll_seconds),
            requeue=bool(v.get("requeue", False)),
            job_template=str(v["jobTemplate"]) if v.get("jobTemplate") else None,
            node_pattern=str(v["nodePattern"]) if v.get("nodePattern") else None,
            node_address=str(v["nodeAddress"]) if v.get("nodeAddress") else None,
        )


@dataclass(frozen=True)
class TunnelSettings:
    """``systems.<s>.ssh.tunnel*``: SSH tunnel mode, for compute nodes the cluster cannot route to."""

    enabled: bool = False
    bind_address: str = "0.0.0.0"  # in the hub pod: where the forwarded notebook port listens
    connect_host: str | None = None  # the proxy's way to the hub pod; None: the pod's IP
    remote_bind: str = "127.0.0.1"  # on the login node: where the hub-API relay listens
    remote_host: str = "127.0.0.1"  # the notebooks' way to the relay
    relay_python: str = "python3"

    @classmethod
    def from_values(cls, ssh: Mapping[str, Any]) -> TunnelSettings:
        return cls(
            enabled=bool(ssh.get("tunnel", False)),
            bind_address=str(ssh.get("tunnelBindAddress") or cls.bind_address),
            connect_host=str(ssh["tunnelConnectHost"]) if ssh.get("tunnelConnectHost") else None,
            remote_bind=str(ssh.get("tunnelRemoteBind") or cls.remote_bind),
            remote_host=str(ssh.get("tunnelRemoteHost") or cls.remote_host),
            relay_python=str(ssh.get("tunnelRelayPython") or cls.relay_python),
        )


@dataclass(frozen=True)
class WalltimeSettings:
    """``systems.<s>.walltime`` (and a level's ``walltime`` over it): when a server that
    ends at a known time (a job's time limit, a login-node lifetime) warns its user, and
    how long before the end open documents are saved (Slurm's ``--signal`` and the SSH
    watchdog send SIGUSR1 then)."""

    warnings_minutes: tuple[int, ...] = (30, 5)
    save_before_seconds: int = 120

    @property
    def warnings_seconds(self) -> tuple[int, ...]:
        """Largest first, as the notebook package and the console read them."""
        return tuple(sorted({m * 60 for m in self.warnings_minutes}, reverse=True))

    @classmethod
    def from_values(
        cls, v: Mapping[str, Any], key: str, base: WalltimeSettings | None = None
    ) -> WalltimeSettings:
        base = base or cls()
        warnings = v.get("warningsMinutes")
        if warnings is not None and (
            not isinstance(warnings, list)
            or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in warnings)
        ):
            raise ConfigError(
                f"{key}.warningsMinutes: expected a list of whole minutes (at least 1), e.g. [30, 5]"
            )
        save = v.get("saveBeforeSeconds", base.save_before_seconds)
        if isinstance(save, bool) or not isinstance(save, int) or not 10 <= save <= 3600:
            raise ConfigError(f"{key}.saveBeforeSeconds: expected 10 to 3600 seconds, got {save!r}")
        return cls(
            warnings_minutes=base.warnings_minutes if warnings is None else tuple(int(m) for m in warnings),
            save_before_seconds=int(save),
        )


@dataclass(frozen=True)
class ExtendSettings:
    """``systems.<s>.slurm.extend``: users may raise their running job's time limit up to
    a cap, through a site account on the login nodes (operator guide, "Extending a
    running job"). Off by default."""

    enabled: bool = False
    user: str | None = None  # the site account whose forced command runs scontrol
    force_command: str | None = None  # written into its certificate
    max_seconds: int | None = None  # the cap on a job's whole time limit (levels may set theirs)
    steps_seconds: tuple[int, ...] = (1800, 3600)
    qos_max_seconds: Mapping[str, int] = field(default_factory=dict)  # a QOS's own cap

    @classmethod
    def from_values(cls, v: Mapping[str, Any], key: str) -> ExtendSettings:
        steps = v.get("steps")
        out = cls(
            enabled=bool(v.get("enabled", False)),
            user=str(v["user"]) if v.get("user") else None,
            force_command=str(v["forceCommand"]) if v.get("forceCommand") else None,
            max_seconds=values_time(v["maxTime"], f"{key}.maxTime") if v.get("maxTime") else None,
            steps_seconds=cls.steps_seconds
            if steps is None
            else tuple(sorted({values_time(t, f"{key}.steps") for t in steps})),
            qos_max_seconds={
                str(q): values_time(t, f"{key}.qos.{q}") for q, t in (v.get("qos") or {}).items()
            },
        )
        if out.enabled and not out.user:
            raise ConfigError(
                f"HPCHUB-R053 {key}.user: required with {key}.enabled (the site account that runs scontrol)"
            )
        if out.enabled and not out.max_seconds:
            raise ConfigError(
                f"HPCHUB-R054 {key}.maxTime: required with {key}.enabled "
                "(the longest time limit a job may be extended to)"
            )
        if any(s < 60 or s % 60 for s in out.steps_seconds) or not out.steps_seconds:
            raise ConfigError(f'{key}.steps: expected whole minutes, e.g. ["00:30:00", "01:00:00"]')
        return out


@dataclass(frozen=True)
class SystemSettings:
    status: StatusSettings = field(default_factory=StatusSettings)
    singleuser: SingleuserSettings = field(default_factory=SingleuserSettings)
    batch: BatchSettings = field(default_factory=BatchSettings)
    tunnel: TunnelSettings = field(default_factory=TunnelSettings)
    walltime: WalltimeSettings = field(default_factory=WalltimeSettings)
    extend: ExtendSettings = field(default_factory=ExtendSettings)

    @property
    def batch_start_timeout(self) -> int:
        """Seconds a batch job may queue and start: the scheduler's setting, else the
        server's, else BATCH_START_TIMEOUT."""
        return (
            self.batch.start_timeout_seconds or self.singleuser.start_timeout_seconds or BATCH_START_TIMEOUT
        )

    @classmethod
    def from_values(
        cls, system: Mapping[str, Any], batch_key: str | None, name: str = "<s>"
    ) -> SystemSettings:
        batch = (system.get(batch_key) or {}) if batch_key else {}
        return cls(
            status=StatusSettings.from_values(system.get("status") or {}),
            singleuser=SingleuserSettings.from_values(system.get("singleuser") or {}),
            batch=BatchSettings.from_values(batch),
            tunnel=TunnelSettings.from_values(system.get("ssh") or {}),
            walltime=WalltimeSettings.from_values(system.get("walltime") or {}, f"systems.{name}.walltime"),
            extend=ExtendSettings.from_values(
                batch.get("extend") or {}, f"systems.{name}.{batch_key}.extend"
            ),
        )


# Days a cell shows how its server ended (console.endedRetentionDays; the prune's too).
ENDED_RETENTION_DAYS = RETENTION_DAYS
MAX_ENDED_RETENTION_DAYS = 3650


@dataclass(frozen=True)
class ConsoleSettings:
    """``console``: what the console reads besides the grid (the endings' retention)."""

    ended_retention_days: int = ENDED_RETENTION_DAYS

    @property
    def ended_retention_seconds(self) -> int:
        return self.ended_retention_days * 86400

    @classmethod
    def from_values(cls, console: Mapping[str, Any]) -> ConsoleSettings:
        days = console.get("endedRetentionDays", ENDED_RETENTION_DAYS)
        # The schema's rule, for values that reach the hub without Helm (a site's config.d).
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_ENDED_RETENTION_DAYS:
            raise ConfigError(
                f"console.endedRetentionDays: {days!r} is not a whole number of days from 1 to "
                f"{MAX_ENDED_RETENTION_DAYS} (how long a cell shows how its server ended; default 7)"
            )
        return cls(ended_retention_days=days)
