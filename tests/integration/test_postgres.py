"""The hub on a real PostgreSQL server (hub.db.type=postgres, the URL passed in the
environment as the chart does): SSH and Slurm servers start, are kept in PostgreSQL, and
survive a hub restart; the schema is upgraded only when the operator opts in."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import minihpc

pytestmark = pytest.mark.integration

USER = "hpcalice"
SERVERS = ("mini-shared", "mini-exclusive")


def pg_hub(workdir: Path, name: str, sshd: minihpc.SSHD, db_url: str, upgrade: bool = False) -> minihpc.Hub:
    values = minihpc.test_values(sshd, [("127.0.0.1", sshd.port)])
    values["hub"].setdefault("db", {})["upgrade"] = upgrade
    d = workdir / name
    d.mkdir()
    return minihpc.Hub(d, values, sshd.ca_key, db_url=db_url)


@pytest.fixture
def stopped() -> Iterator[list[minihpc.Hub]]:
    """Hubs to stop (with their servers) at the end of a test."""
    hubs: list[minihpc.Hub] = []
    yield hubs
    for hub in hubs:
        if hub.hub and hub.hub.running():
            hub.stop_all_servers([USER])
        hub.stop()


def test_hub_on_postgresql_keeps_ssh_and_slurm_servers_across_a_restart(
    workdir: Path,
    sshd: minihpc.SSHD,
    slurm: minihpc.Slurm,
    postgres: minihpc.Postgres,
    stopped: list[minihpc.Hub],
) -> None:
    # The URL as z2jh's docs write it (psycopg2), with a password that needs URL-encoding.
    hub = pg_hub(workdir, "pg-hub", sshd, postgres.url("postgresql+psycopg2"))
    stopped.append(hub)
    hub.start()
    hub.ensure_user(USER)
    hub.start_servers(USER, SERVERS, answering=True)
    assert not list(hub.dir.glob("*.sqlite")), "the hub fell back to a sqlite file"
    # The servers' state lives in PostgreSQL: the SSH server's pid, the Slurm job's id.
    rows = postgres.query(
        "SELECT s.name, s.state FROM spawners s JOIN users u ON u.id = s.user_id "
        "WHERE u.name = %s AND s.server_id IS NOT NULL",
        USER,
    )
    state = {name: json.loads(st) for name, st in rows}  # JupyterHub stores JSON text
    pids = set(minihpc.user_processes(USER, hub))
    [job] = slurm.squeue(USER)
    assert state["mini-shared"]["pid"] and int(state["mini-shared"]["pid"]) in {int(p) for p in pids}
    assert state["mini-exclusive"]["job_id"] == job["id"]

    hub.stop_hub()
    hub.start_hub()
    for server in SERVERS:
        assert hub.server_model(USER, server)["ready"], f"{server} lost by the restart"
        hub.wait_answering(USER, server)
    assert set(minihpc.user_processes(USER, hub)) == pids
    assert [j["id"] for j in slurm.squeue(USER)] == [job["id"]]

    # Found again from PostgreSQL: stop works, and leaves nothing behind.
    for server in SERVERS:
        hub.stop_server(USER, server)
    minihpc.wait_for(lambda: not minihpc.user_processes(USER, hub), 15, "the notebook process to exit")
    assert slurm.squeue(USER) == []


def alembic_revision(postgres: minihpc.Postgres, database: str) -> str:
    [(rev,)] = postgres.query("SELECT version_num FROM alembic_version", database=database)
    return rev


def downgrade_one_revision(url: str) -> None:
    """What a hub image one JupyterHub release older would have left: the schema one
    migration back (JupyterHub's own alembic scripts; the ini helper is how its
    `jupyterhub upgrade-db` runs them)."""
    from jupyterhub.dbutil import _temp_alembic_ini

    with _temp_alembic_ini(url) as ini:
        r = subprocess.run(
            [sys.executable, "-m", "alembic", "-c", ini, "downgrade", "-1"], capture_output=True, text=True
        )
    assert r.returncode == 0, r.stderr


def test_schema_upgrade_of_the_external_database_waits_for_the_operator(
    workdir: Path, sshd: minihpc.SSHD, postgres: minihpc.Postgres, stopped: list[minihpc.Hub]
) -> None:
    database = "jupyterhub_upgrade"
    postgres.create_database(database)
    url = postgres.url(database=database)
    hub = pg_hub(workdir, "pg-upgrade-hub", sshd, url)
    stopped.append(hub)
    hub.start()  # a new database: JupyterHub creates the current schema
    head = alembic_revision(postgres, database)
    hub.stop_hub()
    downgrade_one_revision(url.replace("postgresql://", "postgresql+psycopg://"))
    old = alembic_revision(postgres, database)
    assert old != head

    # Without hub.db.upgrade the hub refuses to touch the schema, and says so.
    with pytest.raises(minihpc.ProcessExited):
        hub.start_hub()
    assert f"Found database schema version {old} != {head}" in hub.log_text()
    assert alembic_revision(postgres, database) == old

    # The operator backed the database up and opts in for this one start.
    hub.values["hub"]["db"]["upgrade"] = True
    hub.prepare()
    hub.start_hub()
    assert alembic_revision(postgres, database) == head
