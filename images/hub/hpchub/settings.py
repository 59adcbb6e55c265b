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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .values import ConfigError

# Seconds a login-node server may take to answer, when values name none.
SERVER_START_TIMEOUT = 120
# Seconds a batch job may queue and start, when values name none for the scheduler nor
# for the server.
BATCH_START_TIMEOUT = 900
DEFAULT_MAX_LIFETIME = "12:00:00"


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
class SystemSettings:
    status: StatusSettings = field(default_factory=StatusSettings)
    singleuser: SingleuserSettings = field(default_factory=SingleuserSettings)
    batch: BatchSettings = field(default_factory=BatchSettings)
    tunnel: TunnelSettings = field(default_factory=TunnelSettings)

    @property
    def batch_start_timeout(self) -> int:
        """Seconds a batch job may queue and start: the scheduler's setting, else the
        server's, else BATCH_START_TIMEOUT."""
        return (
            self.batch.start_timeout_seconds or self.singleuser.start_timeout_seconds or BATCH_START_TIMEOUT
        )

    @classmethod
    def from_values(cls, system: Mapping[str, Any], batch_key: str | None) -> SystemSettings:
        return cls(
            status=StatusSettings.from_values(system.get("status") or {}),
            singleuser=SingleuserSettings.from_values(system.get("singleuser") or {}),
            batch=BatchSettings.from_values((system.get(batch_key) or {}) if batch_key else {}),
            tunnel=TunnelSettings.from_values(system.get("ssh") or {}),
        )


# Days a cell shows how its server ended (console.endedRetentionDays).
ENDED_RETENTION_DAYS = 7
MAX_ENDED_RETENTION_DAYS = 365


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
