"""Fixtures: the mini HPC center (users, sshd, Slurm) and a real hub + proxy, started once
per session and torn down at the end. See tests/harness/minihpc.py."""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.harness import minihpc

# No skip when sshd or Slurm are missing: `make test` installs them, and a missing
# component must fail loudly (the harness names the binary it could not start).


@pytest.fixture(scope="session")
def postgres(workdir: Path) -> Iterator[minihpc.Postgres]:
    """A real PostgreSQL server (Debian's package) for hubs on an external database."""
    pg = minihpc.Postgres(workdir)
    try:
        pg.start()
        yield pg
    finally:
        pg.stop()


@pytest.fixture(scope="session")
def dead_login_host() -> Iterator[minihpc.HungLoginHost]:
    """Listed first for system "mini": every user's first connection fails over."""
    host = minihpc.HungLoginHost()
    yield host
    host.close()


@pytest.fixture(scope="session")
def failover_login_host() -> Iterator[minihpc.HungLoginHost]:
    """Listed first for system "failover" only, which one test alone uses: its first spawn
    meets a host no earlier test has marked dead."""
    host = minihpc.HungLoginHost()
    yield host
    host.close()


@pytest.fixture(scope="session")
def hub(
    workdir: Path,
    sshd: minihpc.SSHD,
    dead_login_host: minihpc.HungLoginHost,
    failover_login_host: minihpc.HungLoginHost,
) -> Iterator[minihpc.Hub]:
    # The dead host is listed first: every first connection of a user has to fail over.
    hosts = [dead_login_host.address, ("127.0.0.1", sshd.port)]
    values = minihpc.test_values(sshd, hosts, extra_systems=True)
    # "failover": the login node behind its own hung host, for the failover test alone.
    failover = copy.deepcopy(values["systems"]["mini"])
    failover["displayName"] = "Failover HPC"
    failover["ssh"]["hosts"] = [
        f"{h}:{p}" for h, p in (failover_login_host.address, ("127.0.0.1", sshd.port))
    ]
    failover["levels"] = {"shared": failover["levels"]["shared"]}
    values["systems"]["failover"] = failover
    h = minihpc.Hub(workdir, values, sshd.ca_key)
    h.start()
    for user in (*minihpc.USERS, minihpc.HOSTILE_USER):
        h.ensure_user(user)
    yield h
    # Stop every server so no process or job outlives the session.
    h.stop_all_servers((*minihpc.USERS, minihpc.HOSTILE_USER))
    h.stop()
