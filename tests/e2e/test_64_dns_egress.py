"""DNS egress goes to the cluster's DNS only: the hub and proxy resolve names through
CoreDNS, but cannot reach port 53 of any other address (a resolver a user or attacker runs
would be a way to tunnel data out). Each refusal is paired with a positive control."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
import yaml
from kubernetes import client
from kubernetes.stream import stream

from .conftest import (
    HELM,
    NAMESPACE,
    RELEASE,
    ROOT,
    SPIN_SERVER,
    Hub,
    hub_pod,
    pod_exec,
    pods,
    spin_pod,
    wait_for,
)
from .test_30_network_policy import CLIENT, CONNECT, OUTSIDE, can_connect, listener, outside_exec  # noqa: F401 - a fixture
from .test_35_spin_hardening import ASK

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


def spin_policy_with_egress_cidrs(cidrs: list[str]) -> dict:
    """The chart's Spin NetworkPolicy as `helm install` renders it with
    spin.networkPolicy.egressCIDRs set (values as make up installs them), named apart so
    that it adds to the installed one (policies are a union) without a helm upgrade."""
    out = subprocess.run(
        [
            HELM, "template", RELEASE, str(ROOT / "chart/hpchub"), "--namespace", NAMESPACE,
            "-f", str(ROOT / "config/values-dev.yaml"), "-f", str(ROOT / "config/values-kind.yaml"),
            "--set", "spin.networkPolicy.egressCIDRs={" + ",".join(cidrs) + "}",
            "--show-only", "templates/spin/netpol.yaml",
        ],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    policy = yaml.safe_load(out)
    policy["metadata"]["name"] = "e2e-spin-egress-cidrs"
    return policy


def test_spin_cannot_reach_port_53_of_an_egress_cidrs_address(
    kube: client.CoreV1Api,
    hub: Hub,
    listener: str,  # noqa: F811 - the fixture imported above
) -> None:
    """egressCIDRs (file servers, mirrors) were open on every port: a Spin notebook could
    use a resolver there, past "DNS only to the cluster DNS". Now every port but 53."""
    # Started here, not taken from the session's servers: the uninstall tests (test_50,
    # test_51) ran before this module and took every server with them. Stopped at the end:
    # a Spin server left running would keep its settings into the next module's install.
    hub.start(SPIN_SERVER)
    net = client.NetworkingV1Api()
    policy = spin_policy_with_egress_cidrs([f"{listener}/32"])
    net.create_namespaced_network_policy(NAMESPACE, policy)
    try:
        spin = spin_pod(kube).metadata.name
        # Positive control: the egressCIDRs rule is in force (kube-router applied it).
        wait_for(
            "the Spin pod reaching the egressCIDRs address on 8053",
            lambda: can_connect(kube, spin, listener, 8053),
            timeout=60,
        )
        # Port 53 of that address, TCP and UDP, is not (the listener answers both to a pod
        # no policy limits: the fixture checked TCP, this checks UDP).
        assert outside_exec(kube, CLIENT, ["python3", "-c", ASK, listener]).strip() == "answer"
        assert not can_connect(kube, spin, listener, 53)
        assert pod_exec(kube, spin, ["python3", "-c", ASK, listener]).strip() == "silent"
    finally:
        net.delete_namespaced_network_policy(policy["metadata"]["name"], NAMESPACE)
        hub.stop(SPIN_SERVER)
