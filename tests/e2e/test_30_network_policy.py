"""NetworkPolicies are enforced (kube-router on the kind node): a Spin notebook reaches the
hub API it needs and nothing else of the hub and proxy. Each refusal is paired with a
positive control, so a broken network cannot pass for a policy."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from .conftest import hub_pod, pod_exec, spin_pod

CONNECT = (
    "import socket, sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=4).close()\n"
    "    print('open')\n"
    "except OSError as e:\n"
    "    print('refused', type(e).__name__)\n"
)


def can_connect(kube: client.CoreV1Api, pod: str, host: str, port: int, python: str = "python3") -> bool:
    out = pod_exec(kube, pod, [python, "-c", CONNECT, host, str(port)])
    assert out.strip().split()[0] in ("open", "refused"), out
    return out.strip().startswith("open")


def test_spin_pod_reaches_the_hub_api(kube: client.CoreV1Api, servers: dict[str, dict[str, Any]]) -> None:
    assert can_connect(kube, spin_pod(kube).metadata.name, "hpchub-hub", 8081)


def test_spin_pod_cannot_reach_the_proxy_api(
    kube: client.CoreV1Api, servers: dict[str, dict[str, Any]]
) -> None:
    # Positive control: the hub may and does reach the proxy API.
    assert can_connect(kube, hub_pod(kube).metadata.name, "hpchub-proxy-api", 8001)
    assert not can_connect(kube, spin_pod(kube).metadata.name, "hpchub-proxy-api", 8001)
