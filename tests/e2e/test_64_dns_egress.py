"""DNS egress goes to the cluster's DNS only: the hub and proxy resolve names through
CoreDNS, but cannot reach port 53 of any other address (a resolver a user or attacker runs
would be a way to tunnel data out). Each refusal is paired with a positive control."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.stream import stream

from .conftest import RELEASE, hub_pod, pod_exec, pods, wait_for
from .test_30_network_policy import CONNECT, OUTSIDE, can_connect

NAME = "e2e-rogue-dns"
PEER = {"hub": (f"{RELEASE}-proxy-api", 8001), "proxy": (f"{RELEASE}-hub", 8081)}
LISTEN = (
    "import socket\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 53)); s.listen(16)\n"
    "while True:\n"
    "    c, _ = s.accept(); c.close()\n"
)


@pytest.fixture(scope="module")
def rogue_dns(kube: client.CoreV1Api) -> Iterator[str]:
    """A pod outside the release listening on TCP port 53 (no root: the unprivileged port
    range starts at 0 in its network namespace)."""
    image = hub_pod(kube).spec.containers[0].image
    body = client.V1Pod(
        metadata=client.V1ObjectMeta(name=NAME, labels={"app": NAME}),
        spec=client.V1PodSpec(
            restart_policy="Never",
            termination_grace_period_seconds=0,
            security_context=client.V1PodSecurityContext(
                run_as_non_root=True,
                sysctls=[client.V1Sysctl(name="net.ipv4.ip_unprivileged_port_start", value="0")],
            ),
            containers=[
                client.V1Container(
                    name="main", image=image, image_pull_policy="Never", command=["python3", "-c", LISTEN]
                )
            ],
        ),
    )
    kube.create_namespaced_pod(OUTSIDE, body)
    try:
        ip = wait_for(
            "the rogue resolver running",
            lambda: (
                (p := kube.read_namespaced_pod(NAME, OUTSIDE)).status.phase == "Running" and p.status.pod_ip
            ),
            timeout=120,
        )

        # Positive control: it does listen (checked from inside its own pod).
        def listening() -> bool:
            out = stream(
                kube.connect_get_namespaced_pod_exec, NAME, OUTSIDE,
                command=["python3", "-c", CONNECT, ip, "53"], stderr=True, stdin=False, stdout=True, tty=False,
            )  # fmt: skip
            return str(out).startswith("open")

        wait_for("the rogue resolver accepting", listening, timeout=30)
        yield ip
    finally:
        kube.delete_namespaced_pod(NAME, OUTSIDE, grace_period_seconds=0)


def coredns_ip(kube: client.CoreV1Api) -> str:
    (pod, *_) = [
        p
        for p in kube.list_namespaced_pod("kube-system", label_selector="k8s-app=kube-dns").items
        if p.status.phase == "Running"
    ]
    return pod.status.pod_ip


@pytest.mark.parametrize("component", ["hub", "proxy"])
def test_dns_goes_to_the_cluster_dns_and_nowhere_else(
    kube: client.CoreV1Api, rogue_dns: str, component: str
) -> None:
    (pod,) = pods(kube, f"app.kubernetes.io/component={component}")
    name = pod.metadata.name
    python = "python3" if component == "hub" else "node"
    if component == "proxy":
        # The proxy image has node, not python: a TCP connect in JavaScript.
        js = (
            "const s=require('net').connect({host:process.argv[1],port:+process.argv[2]});"
            "s.setTimeout(4000);s.on('connect',()=>{console.log('open');process.exit()});"
            "s.on('timeout',()=>{console.log('refused timeout');process.exit()});"
            "s.on('error',e=>{console.log((e.code==='ENOTFOUND'||e.code==='EAI_AGAIN'?'nodns ':'refused ')+e.code);process.exit()})"
        )

        def connect(host: str, port: int) -> bool:
            out = pod_exec(kube, name, ["node", "-e", js, host, str(port)]).strip()
            assert out.split()[0] in ("open", "refused"), out
            return out.startswith("open")
    else:

        def connect(host: str, port: int) -> bool:
            return can_connect(kube, name, host, port, python=python)

    # Positive controls: the cluster DNS is reachable, and names resolve through it (the
    # peer each component talks to, by its Service name).
    assert connect(coredns_ip(kube), 53)
    assert connect(*PEER[component])
    # Any other address on port 53 is not.
    assert not connect(rogue_dns, 53)
