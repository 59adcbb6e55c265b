"""Spin notebook pods get the chart's pod hardening, and their DNS goes to the cluster DNS
only (issue 8, hole 9). Each refusal has a positive control, so a broken cluster or a
missing image tool cannot pass for enforcement."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from .conftest import bare_pod, pod_exec, spin_pod
from .test_30_network_policy import OUTSIDE, outside_exec, outside_pods

# Reads a process's kernel view of its own privileges (no tool beyond python3 needed).
STATUS = (
    "import re\n"
    "s = open('/proc/self/status').read()\n"
    "print(*(re.search(k + r':\\s*(\\S+)', s).group(1) for k in ('CapEff', 'CapPrm', 'NoNewPrivs', 'Seccomp')))\n"
)


def test_spin_pod_has_no_capabilities_no_privilege_escalation_and_seccomp(
    kube: client.CoreV1Api, servers: dict[str, dict[str, Any]]
) -> None:
    pod = spin_pod(kube)
    ctx = pod.spec.containers[0].security_context
    assert ctx.capabilities.drop == ["ALL"] and not ctx.capabilities.add
    assert ctx.allow_privilege_escalation is False and ctx.run_as_non_root is True
    assert ctx.seccomp_profile.type == "RuntimeDefault"
    # What the kernel enforces on the running server (not only what the spec asks for).
    cap_eff, cap_prm, no_new_privs, seccomp = pod_exec(
        kube, pod.metadata.name, ["python3", "-c", STATUS]
    ).split()
    assert int(cap_eff, 16) == 0 and int(cap_prm, 16) == 0
    assert no_new_privs == "1" and seccomp == "2"  # 2: seccomp filter mode


def test_spin_pod_root_file_system_is_read_only_but_home_and_tmp_are_writable(
    kube: client.CoreV1Api, servers: dict[str, dict[str, Any]]
) -> None:
    pod = spin_pod(kube).metadata.name
    probe = 'for d in /tmp "$HOME" /opt/notebook /etc; do (: > "$d/.hpchub-w" && rm "$d/.hpchub-w" && echo "$d rw") || echo "$d ro"; done'
    out = pod_exec(kube, pod, ["sh", "-c", probe + " 2>/dev/null"]).split("\n")
    lines = dict(line.rsplit(" ", 1) for line in out if line.strip())
    assert lines["/tmp"] == "rw" and lines[next(k for k in lines if k.startswith("/home/"))] == "rw", lines
    assert lines["/opt/notebook"] == "ro" and lines["/etc"] == "ro", lines


# A UDP "resolver" the test starts outside the release: it answers any datagram on port 53.
ECHO = (
    "import socket\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.bind(('0.0.0.0', 53))\n"
    "while True:\n"
    "    data, peer = s.recvfrom(512)\n"
    "    s.sendto(b'answer:' + data, peer)\n"
)
# Sends one datagram to host:53 and waits for the answer; "answer" or "silent".
ASK = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.settimeout(4)\n"
    "for _ in range(2):\n"
    "    s.sendto(b'hpchub-e2e', (sys.argv[1], 53))\n"
    "    try:\n"
    "        print('answer' if s.recv(512).startswith(b'answer:') else 'other'); break\n"
    "    except OSError:\n"
    "        pass\n"
    "else:\n"
    "    print('silent')\n"
)
RESOLVE = "import socket, sys\nprint(socket.gethostbyname(sys.argv[1]))\n"


@pytest.fixture(scope="module")
def outside_resolver(kube: client.CoreV1Api, servers: dict[str, dict[str, Any]]) -> Iterator[str]:
    """Two pods outside the release, which no policy limits: a resolver answering UDP port
    53, and a pod to ask it from (the positive control). Yields the resolver's IP."""
    image = spin_pod(kube).spec.containers[0].image
    with outside_pods(
        kube,
        # Port 53 is below 1024: a test-only pod, root in its own namespace.
        bare_pod("e2e-resolver", image, ["python3", "-c", ECHO], root=True),
        bare_pod("e2e-asker", image, ["sleep", "600"]),
    ):
        yield kube.read_namespaced_pod("e2e-resolver", OUTSIDE).status.pod_ip


def test_spin_pod_dns_reaches_the_cluster_dns_and_no_other_address(
    kube: client.CoreV1Api, servers: dict[str, dict[str, Any]], outside_resolver: str
) -> None:
    spin = spin_pod(kube).metadata.name
    # Positive control 1: names resolve through kube-dns from the Spin pod.
    assert pod_exec(kube, spin, ["python3", "-c", RESOLVE, "hpchub-hub"]).strip().count(".") == 3
    # Positive control 2: the resolver answers on port 53 across the pod network.
    asked = outside_exec(kube, "e2e-asker", ["python3", "-c", ASK, outside_resolver]).strip()
    assert asked == "answer", asked
    # The Spin pod's datagrams to that address on port 53 are dropped.
    assert pod_exec(kube, spin, ["python3", "-c", ASK, outside_resolver]).strip() == "silent"
