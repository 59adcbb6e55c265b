"""NetworkPolicies are enforced (kube-router on the kind node): a Spin notebook reaches the
hub API it needs and nothing else of the hub and proxy. Each refusal is paired with a
positive control, so a broken network cannot pass for a policy."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.stream import stream

from .conftest import NAMESPACE, hub_pod, pod_exec, spin_pod, wait_for

# A namespace outside the release: the hub's policy admits only the proxy, Spin notebooks
# and the HPC network.
OUTSIDE = "default"

CONNECT = (
    "import socket, sys\n"
    "try:\n"
    "    addr = socket.gethostbyname(sys.argv[1])\n"
    "except OSError:\n"
    "    print('nodns')\n"
    "    sys.exit()\n"
    "try:\n"
    "    socket.create_connection((addr, int(sys.argv[2])), timeout=4).close()\n"
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


def test_pod_outside_the_release_cannot_reach_the_hub(
    kube: client.CoreV1Api, servers: dict[str, dict[str, Any]]
) -> None:
    # Positive control: a Spin notebook (allowed by the hub's policy) does reach the hub.
    assert can_connect(kube, spin_pod(kube).metadata.name, "hpchub-hub", 8081)
    image = spin_pod(kube).spec.containers[0].image
    name = "e2e-outsider"
    body = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app": "e2e-outsider"}),
        spec=client.V1PodSpec(
            restart_policy="Never",
            termination_grace_period_seconds=0,
            containers=[
                client.V1Container(
                    name="main", image=image, image_pull_policy="Never", command=["sleep", "600"]
                )
            ],
        ),
    )
    kube.create_namespaced_pod(OUTSIDE, body)
    try:
        wait_for(
            "the outsider pod running",
            lambda: kube.read_namespaced_pod(name, OUTSIDE).status.phase == "Running",
            timeout=120,
        )
        # Positive control from the same pod: the public proxy port is open to everyone.
        out = outside_exec(kube, name, ["python3", "-c", CONNECT, f"hpchub-proxy-public.{NAMESPACE}", "80"])
        assert out.strip().startswith("open"), out
        out = outside_exec(kube, name, ["python3", "-c", CONNECT, f"hpchub-hub.{NAMESPACE}", "8081"])
        # "refused" only after the name resolved: a DNS failure must not pass for a policy.
        assert out.strip().startswith("refused"), out
    finally:
        kube.delete_namespaced_pod(name, OUTSIDE, grace_period_seconds=0)


def outside_exec(kube: client.CoreV1Api, pod: str, cmd: list[str], namespace: str = OUTSIDE) -> str:
    resp = stream(
        kube.connect_get_namespaced_pod_exec,
        pod,
        namespace,
        command=cmd,
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
    )
    return str(resp)
