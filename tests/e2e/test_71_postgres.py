"""The hub on PostgreSQL in the cluster, set up with the operator guide's own commands: a
second release whose hub keeps its state in a PostgreSQL pod in another namespace, reached
only through the hub NetworkPolicy's database rule (hub.db.postgres.peers). With the rule
pointing elsewhere the hub cannot reach the database (kube-router enforces it); pointed
back, it can. The first release is not touched."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from .conftest import HELM, ROOT, STATE, is_ready, wait_for
from .test_30_network_policy import CONNECT, outside_exec

DB_NS = "hpchub-e2e-db"
PG_NS = "hpchub-e2e-pg"
RELEASE = "pg"
IMAGE = "hpchub/e2e-postgres:e2e"
DB_LABELS = {"app": "e2e-postgres"}
APP_VERSION = str(yaml.safe_load((ROOT / "chart/hpchub/Chart.yaml").read_text())["appVersion"])
TAG = os.environ.get("HPCHUB_TAG") or APP_VERSION


def sh(*argv: str, timeout: float = 900, env: dict[str, str] | None = None) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, f"{argv[:3]}: {r.stdout[-2000:]}{r.stderr[-2000:]}"
    return r.stdout


def kind_binary() -> str:
    versions = (ROOT / "hack/kind/versions.env").read_text()
    version = re.search(r'KIND_VERSION="\$\{KIND_VERSION:-([^}]+)\}"', versions).group(1)
    cache = os.environ.get("KIND_CACHE", "/var/cache/hpchub-kind")
    return f"{cache}/bin/tools/kind-{version}"


def guide_secret_command() -> str:
    text = (ROOT / "docs/operator-guide.md").read_text()
    (block,) = [
        b for b in re.findall(r"```sh\n(.*?)```", text, flags=re.S) if "create secret generic hub-db-url" in b
    ]
    return block


def chart_values(peer_labels: dict[str, str]) -> dict:
    return {
        "hub": {
            "image": {"pullPolicy": "Never", "tag": TAG},
            "db": {
                "type": "postgres",
                "postgres": {
                    "existingSecret": "hub-db-url",
                    "peers": [
                        {
                            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": DB_NS}},
                            "podSelector": {"matchLabels": peer_labels},
                        }
                    ],
                },
            },
        },
        "proxy": {"image": {"pullPolicy": "Never", "tag": TAG}, "service": {"type": "ClusterIP"}},
        "spin": {"image": {"pullPolicy": "Never", "tag": TAG}},
        "culling": {"enabled": False},
    }


def helm_upgrade(tmp_path: Path, peer_labels: dict[str, str], wait: bool) -> None:
    values = tmp_path / "pg-values.yaml"
    values.write_text(yaml.safe_dump(chart_values(peer_labels)))
    args = [HELM, "upgrade", "--install", RELEASE, str(ROOT / "chart/hpchub"), "--namespace", PG_NS]
    args += ["-f", str(ROOT / "config/values-minimal.yaml"), "-f", str(values)]
    sh(*args, *(["--wait", "--timeout", "8m"] if wait else []))


@pytest.fixture
def database(kube: client.CoreV1Api) -> Iterator[tuple[str, str]]:
    """A PostgreSQL pod + Service in its own namespace; yields (service host, password)."""
    sh(
        "docker",
        "build",
        "-q",
        "--build-arg",
        "BASE_IMAGE=hpchub/debian-base:bookworm",
        "-t",
        IMAGE,
        str(ROOT / "tests/e2e/postgres"),
    )
    sh(kind_binary(), "load", "docker-image", "--name", os.environ.get("CLUSTER_NAME", "hpchub"), IMAGE)
    password = secrets.token_hex(16)
    kube.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=DB_NS)))
    try:
        env = [
            client.V1EnvVar(name="POSTGRES_USER", value="jupyterhub"),  # as in the guide's URL
            client.V1EnvVar(name="POSTGRES_DB", value="jupyterhub"),
            client.V1EnvVar(name="POSTGRES_PASSWORD", value=password),
        ]
        pod = client.V1Pod(
            metadata=client.V1ObjectMeta(name="postgres", labels=DB_LABELS),
            spec=client.V1PodSpec(
                termination_grace_period_seconds=0,
                containers=[
                    client.V1Container(
                        name="postgres",
                        image=IMAGE,
                        image_pull_policy="Never",
                        env=env,
                        ports=[client.V1ContainerPort(container_port=5432)],
                        readiness_probe=client.V1Probe(
                            _exec=client.V1ExecAction(
                                command=["/usr/lib/postgresql/15/bin/pg_isready", "-h", "127.0.0.1"]
                            ),
                            period_seconds=2,
                        ),
                    )
                ],
            ),
        )
        kube.create_namespaced_pod(DB_NS, pod)
        kube.create_namespaced_service(
            DB_NS,
            client.V1Service(
                metadata=client.V1ObjectMeta(name="postgres"),
                spec=client.V1ServiceSpec(selector=DB_LABELS, ports=[client.V1ServicePort(port=5432)]),
            ),
        )
        wait_for(
            "the PostgreSQL pod ready", lambda: is_ready(kube.read_namespaced_pod("postgres", DB_NS)), 180
        )
        yield f"postgres.{DB_NS}.svc.cluster.local", password
    finally:
        kube.delete_namespace(DB_NS, grace_period_seconds=0)


def psql(kube: client.CoreV1Api, password: str, sql: str) -> str:
    cmd = [
        "env",
        f"PGPASSWORD={password}",
        "psql",
        "-h",
        "127.0.0.1",
        "-U",
        "jupyterhub",
        "-d",
        "jupyterhub",
        "-Atc",
        sql,
    ]
    return outside_exec(kube, "postgres", cmd, DB_NS)


def hub_pods(kube: client.CoreV1Api) -> list[client.V1Pod]:
    return [
        p
        for p in kube.list_namespaced_pod(PG_NS, label_selector="app.kubernetes.io/component=hub").items
        if p.metadata.deletion_timestamp is None and p.status.phase == "Running"
    ]


def hub_reaches_database(kube: client.CoreV1Api, host: str) -> bool:
    def answer() -> str | None:
        pods = hub_pods(kube)
        if not pods:
            return None
        out = outside_exec(kube, pods[0].metadata.name, ["python3", "-c", CONNECT, host, "5432"], PG_NS)
        return out.strip() if out.strip().startswith(("open", "refused")) else None

    return wait_for("a verdict from the hub pod", answer, 300).startswith("open")


def test_hub_keeps_its_state_in_postgresql_reached_through_its_network_policy(
    kube: client.CoreV1Api, database: tuple[str, str], tmp_path: Path
) -> None:
    host, password = database
    kube.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=PG_NS)))
    kubeconfig = os.environ.get("KUBECONFIG", str(STATE / "kubeconfig"))
    try:
        # The operator guide's command, for this namespace, password and server.
        command = guide_secret_command().replace("-n jupyter", f"-n {PG_NS}")
        command = command.replace("PASSWORD", password).replace("db.example.org", host)
        sh("sh", "-c", command, env={**os.environ, "KUBECONFIG": kubeconfig})

        helm_upgrade(tmp_path, DB_LABELS, wait=True)  # --wait: the hub is Ready on PostgreSQL
        assert hub_reaches_database(kube, host)
        # Its state is in PostgreSQL: the chart's services are rows there.
        services = psql(kube, password, "SELECT name FROM services ORDER BY name").split()
        assert {"metrics", "uninstall"} <= set(services), services

        # The rule pointed at other pods: the same hub can no longer reach the database.
        helm_upgrade(tmp_path, {"app": "not-the-database"}, wait=False)
        wait_for("the hub cut off from its database", lambda: not hub_reaches_database(kube, host), 300)

        # Pointed back: reachable again, and the hub comes up Ready on the same database.
        helm_upgrade(tmp_path, DB_LABELS, wait=True)
        assert hub_reaches_database(kube, host)
        assert "metrics" in psql(kube, password, "SELECT name FROM services").split()
    finally:
        subprocess.run(
            [HELM, "uninstall", RELEASE, "--namespace", PG_NS, "--wait", "--timeout", "5m"],
            capture_output=True,
            timeout=400,
        )
        kube.delete_namespace(PG_NS, grace_period_seconds=0)
