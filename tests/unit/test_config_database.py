"""The loader's side of hub.db (issue 11 point 1): the URL for the image's PostgreSQL
driver, and schema upgrades only when the operator opts in for an external database."""

from __future__ import annotations

import pytest
from jupyterhub.app import JupyterHub
from sqlalchemy.engine import make_url

from hpchub.config import ConfigError, postgres_url

from .test_config import configured

PG = ["hub.db.type=postgres", "hub.db.postgres.existingSecret=db"]


def test_sqlite_is_upgraded_by_the_hub_which_backs_the_file_up() -> None:
    hub = JupyterHub(config=configured("values-minimal.yaml"))
    assert hub.db_url == "sqlite:////srv/jupyterhub/jupyterhub.sqlite"
    assert hub.upgrade_db is True


def test_external_database_is_upgraded_only_when_the_operator_opts_in() -> None:
    env = {"HPCHUB_DB_URL": "postgresql://hub:pw@db.example.org:5432/jupyterhub"}
    hub = JupyterHub(config=configured("values-minimal.yaml", PG, env=env))
    assert hub.db_url == "postgresql+psycopg://hub:pw@db.example.org:5432/jupyterhub"
    assert hub.upgrade_db is False
    hub = JupyterHub(config=configured("values-minimal.yaml", [*PG, "hub.db.upgrade=true"], env=env))
    assert hub.upgrade_db is True


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://hub:p%40ss@db:5432/jupyterhub",
        "postgresql+psycopg2://hub:p%40ss@db:5432/jupyterhub",  # z2jh's examples
        "postgres://hub:p%40ss@db:5432/jupyterhub",  # Heroku style, which SQLAlchemy refuses
        "postgresql+psycopg://hub:p%40ss@db:5432/jupyterhub",
        "  postgresql://hub:p%40ss@db:5432/jupyterhub\n",  # kubectl create secret --from-file
    ],
)
def test_every_postgres_url_spelling_uses_the_shipped_driver(url: str) -> None:
    parsed = make_url(postgres_url(url))
    assert parsed.drivername == "postgresql+psycopg"
    assert (parsed.username, parsed.password, parsed.host, parsed.port, parsed.database) == (
        "hub",
        "p@ss",
        "db",
        5432,
        "jupyterhub",
    )
    parsed.get_dialect().import_dbapi()  # the driver is installed (images/hub/requirements.txt)


def test_a_url_of_another_database_is_refused_without_showing_the_password() -> None:
    with pytest.raises(ConfigError) as e:
        postgres_url("mysql://hub:hunter2@db/jupyterhub", {"postgres": {"urlKey": "uri"}})
    assert "hub.db.postgres.existingSecret" in str(e.value) and "'uri'" in str(e.value)
    assert "mysql://" in str(e.value) and "hunter2" not in str(e.value)
