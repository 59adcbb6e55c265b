"""hub.db: the external PostgreSQL database in the chart (issue 11 point 1). The loader's
side is tests/unit/test_config_database.py; the real server tests/integration/test_postgres.py."""

from __future__ import annotations

import kubernetes_validate
import pytest

from .helm import CONFIG, find, render, render_error

MINIMAL = CONFIG / "values-minimal.yaml"
PG = ["hub.db.type=postgres", "hub.db.postgres.existingSecret=hub-db-url"]


def egress(docs: list[dict]) -> list[dict]:
    return find(docs, "NetworkPolicy", "t-hpchub-hub")["spec"]["egress"]


def db_rules(docs: list[dict], port: int = 5432) -> list[dict]:
    return [r for r in egress(docs) if {"port": port, "protocol": "TCP"} in r.get("ports", [])]


def test_hub_may_reach_the_database_at_the_given_addresses_only() -> None:
    docs = render([MINIMAL], [*PG, "hub.db.postgres.cidrs={10.3.0.12/32,fd00::12/128}"])
    [rule] = db_rules(docs)
    assert rule["to"] == [{"ipBlock": {"cidr": "10.3.0.12/32"}}, {"ipBlock": {"cidr": "fd00::12/128"}}]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.34.0", strict=True)


def test_in_cluster_database_is_reached_through_its_peers_on_its_port(tmp_path) -> None:
    values = tmp_path / "db.yaml"
    values.write_text(
        "hub:\n  db:\n    postgres:\n      port: 6432\n      peers:\n"
        "        - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: databases}}\n"
        "          podSelector: {matchLabels: {app: pgbouncer}}\n"
    )
    docs = render([MINIMAL, values], PG)
    assert db_rules(docs) == []  # not the default port
    [rule] = db_rules(docs, 6432)
    assert rule["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "databases"}},
            "podSelector": {"matchLabels": {"app": "pgbouncer"}},
        }
    ]
    kubernetes_validate.validate(find(docs, "NetworkPolicy", "t-hpchub-hub"), "1.34.0", strict=True)


def test_database_port_without_addresses_is_open_to_any_address() -> None:
    [rule] = db_rules(render([MINIMAL], PG))
    assert "to" not in rule  # documented: narrow it with cidrs or peers


def test_sqlite_hub_gets_no_database_egress() -> None:
    assert db_rules(render([MINIMAL])) == []


def test_schema_upgrades_are_the_loaders_decision_not_a_fixed_flag() -> None:
    # --upgrade-db on the command line would upgrade an external database unasked.
    for sets in ([], PG, [*PG, "hub.db.upgrade=true"]):
        hub = find(render([MINIMAL], sets), "Deployment", "t-hpchub-hub")["spec"]["template"]["spec"]
        [container] = [c for c in hub["containers"] if c["name"] == "hub"]
        assert "--upgrade-db" not in container["args"]


@pytest.mark.parametrize(
    ("sets", "key"),
    [
        (["hub.db.postgres.port=0"], "/hub/db/postgres/port"),
        (["hub.db.postgres.cidrs={db.example.org}"], "/hub/db/postgres/cidrs/0"),
        (["hub.db.upgrade=yes"], "/hub/db/upgrade"),
        (["hub.db.type=postgres"], "hub.db.postgres.existingSecret"),
    ],
)
def test_bad_database_values_are_refused_naming_the_key(sets: list[str], key: str) -> None:
    assert key in render_error([MINIMAL], sets)


@pytest.mark.parametrize(
    ("sets", "key"),
    [
        (["hub.db.sqlite.journalMode=truncate"], "journalMode"),
        (["hub.db.sqlite.synchronous=off"], "synchronous"),
    ],
)
def test_sqlite_journal_settings_outside_the_safe_ones_are_refused_at_install(
    sets: list[str], key: str
) -> None:
    err = render_error([MINIMAL], sets)
    assert f"/hub/db/sqlite/{key}" in err or f"hub.db.sqlite.{key}" in err, err
