"""NetworkPolicies are enforced (kube-router on the kind node): a Spin notebook reaches the
hub API it needs and nothing else of the hub and proxy. Each refusal is paired with a
positive control, so a broken network cannot pass for a policy."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kubernetes import client
from kubernetes.stream import stream

from .conftest import (
    NAMESPACE,
    RELEASE,
    ROOT,
    STATE,
    bare_pod,
    docker_exec,
    helm,
    hub_pod,
    pod_exec,
    spin_pod,
    wait_for,
)

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


# Listens on the TCP ports given ("udp53": answers UDP datagrams on port 53 too): stands in
# for any service at an address outside the documented flows (a web server on 443, a resolver).
LISTEN = (
    "# hpchub-e2e-listener\n"
    "import socket, sys, threading, time\n"
    "def tcp(port):\n"
    "    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "    s.bind(('0.0.0.0', port)); s.listen(16)\n"
    "    while True:\n"
    "        c, _ = s.accept(); c.close()\n"
    "def udp():\n"
    "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 53))\n"
    "    while True:\n"
    "        data, peer = s.recvfrom(512); s.sendto(b'answer:' + data, peer)\n"
    "for a in sys.argv[1:]:\n"
    "    f, args = (udp, ()) if a == 'udp53' else (tcp, (int(a),))\n"
    "    threading.Thread(target=f, args=args, daemon=True).start()\n"
    "while True:\n"
    "    time.sleep(3600)\n"
)
LISTENER = "e2e-listener"
CLIENT = "e2e-client"
LISTENER_PORTS = (443, 53, 8053)


@contextmanager
def outside_pods(kube: client.CoreV1Api, *bodies: client.V1Pod) -> Iterator[None]:
    """Pods outside the release (no policy selects them), running for the block."""
    made = []
    try:
        for body in bodies:
            kube.create_namespaced_pod(OUTSIDE, body)
            made.append(body.metadata.name)
        for name in made:
            wait_for(
                f"pod {name} running",
                lambda n=name: kube.read_namespaced_pod(n, OUTSIDE).status.phase == "Running",
                timeout=120,
            )
        yield
    finally:
        for name in made:
            kube.delete_namespaced_pod(name, OUTSIDE, grace_period_seconds=0)


@pytest.fixture(scope="module")
def listener(kube: client.CoreV1Api) -> Iterator[str]:
    """A pod outside the release listening on TCP 443, 53 and 8053 and UDP 53, and a pod no
    policy limits that reaches every one of them (the positive control). Yields its IP."""
    image = hub_pod(kube).spec.containers[0].image
    with outside_pods(
        kube,
        # Ports below 1024: a test-only pod, root in its own network namespace.
        bare_pod(LISTENER, image, ["python3", "-c", LISTEN, *map(str, LISTENER_PORTS), "udp53"], root=True),
        bare_pod(CLIENT, image, ["sleep", "900"]),
    ):
        ip = kube.read_namespaced_pod(LISTENER, OUTSIDE).status.pod_ip
        for port in LISTENER_PORTS:
            wait_for(
                f"the listener answering on {port} from a pod no policy limits",
                lambda p=port: outside_exec(kube, CLIENT, ["python3", "-c", CONNECT, ip, str(p)]).startswith(
                    "open"
                ),
                timeout=30,
            )
        yield ip


def test_hub_cannot_reach_an_address_outside_its_flows_on_443(
    kube: client.CoreV1Api, servers: dict[str, dict[str, Any]], listener: str
) -> None:
    """The hub's policy allowed 443 and 6443 to any address: a hub (or code in it) could talk
    to any web service. Now 443 goes to the Kubernetes API's endpoints and the identity
    provider only (the dev values have none)."""
    hub = hub_pod(kube).metadata.name
    # Positive controls, from the hub: the Kubernetes API through its Service (what
    # KubeSpawner does; the policy admits its endpoints), the login node's SSH.
    assert can_connect(kube, hub, "kubernetes.default.svc", 443)
    assert can_connect(kube, hub, "hpc-login", 22)
    # The listener answers a pod no policy limits (checked by the fixture), not the hub.
    assert not can_connect(kube, hub, listener, 443)


def test_hub_reaches_the_login_node_on_ssh_and_notebook_ports_only(kube: client.CoreV1Api) -> None:
    """hpcNetwork.cidrs was open on every port: now SSH (systems.mini.ssh.port) and the
    notebooks' portRange (1024-65535). A service on 443 of the login node itself is out."""
    subprocess.run(
        ["docker", "exec", "-d", "hpc-login", "python3", "-c", LISTEN, "443", "40443"], check=True, timeout=30
    )
    try:
        # Positive control: both ports listen (asked on the login node itself).
        for port in ("443", "40443"):
            wait_for(
                f"the login node's listener on {port}",
                lambda p=port: docker_exec(
                    "hpc-login", "python3", "-c", CONNECT, "127.0.0.1", p
                ).stdout.startswith("open"),
                timeout=30,
            )
        hub = hub_pod(kube).metadata.name
        assert can_connect(kube, hub, "hpc-login", 22)  # SSH
        assert can_connect(kube, hub, "hpc-login", 40443)  # a notebook's port
        assert not can_connect(kube, hub, "hpc-login", 443)
    finally:
        docker_exec("hpc-login", "pkill", "-f", "hpchub-e2e-listener")


def test_the_kubernetes_api_rule_holds_what_the_documented_command_prints(kube: client.CoreV1Api) -> None:
    """helm install looked the API's endpoints up; the operator guide's kubectl command (for
    sites that must list them) prints the same addresses and ports."""
    guide = (ROOT / "docs/operator-guide.md").read_text()
    (command,) = re.findall(r"^(kubectl get endpointslice kubernetes .*)$", guide, re.M)
    env = {**os.environ, "KUBECONFIG": os.environ.get("KUBECONFIG", str(STATE / "kubeconfig"))}
    out = subprocess.run(
        ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    *address_lines, port_line = out.stdout.strip().splitlines()
    addresses = {a for line in address_lines for a in line.split()}
    ports = {int(p) for p in port_line.split()}
    assert addresses and ports, out.stdout
    policy = client.NetworkingV1Api().read_namespaced_network_policy(f"{RELEASE}-hub", NAMESPACE)
    api_rules = [
        r
        for r in policy.spec.egress
        if r.to and {p.ip_block.cidr for p in r.to if p.ip_block} == {f"{a}/32" for a in addresses}
    ]
    assert len(api_rules) == 1, policy.spec.egress
    assert {p.port for p in api_rules[0].ports} == ports
    # With the lookup's answer in the policy, NOTES has no warning about it.
    assert "kubernetesAPI" not in helm("get", "notes", RELEASE).stdout
