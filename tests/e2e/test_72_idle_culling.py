"""Idle culling on the deployed chart: the culler in the hub pod reaches the hub, stops an
idle SSH server and an idle Slurm server (nothing of them left on the HPC side), keeps a
server that is in use, and never prints its API token.

Culling is off in values-kind.yaml (the other e2e tests keep idle servers); this test turns
it on with the shortest timeout the schema allows and restores the install afterwards.
"""

from __future__ import annotations

import time

import requests
from kubernetes import client

from .conftest import (
    HUB_URL,
    NAMESPACE,
    PASSWORD,
    SLURM_SERVER,
    SSH_SERVER,
    helm_install,
    hub_pod,
    login,
    login_node_servers,
    pod_exec,
    slurm_jobs,
    wait_for,
)

TIMEOUT, EVERY = 60, 10  # culling.timeout (schema minimum) and culling.every
CULLER_TOKEN = (
    "import os\n"
    "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
    "    try:\n"
    "        cmd = open(f'/proc/{pid}/cmdline', 'rb').read()\n"
    "        env = open(f'/proc/{pid}/environ', 'rb').read().split(b'\\0')\n"
    "    except OSError:\n"
    "        continue\n"
    # An argument of its own, so this script (whose text names it) does not match itself.
    "    if b'hpchub.culler' in cmd.split(b'\\0'):\n"
    "        print(next(e for e in env if e.startswith(b'JUPYTERHUB_API_TOKEN=')).split(b'=', 1)[1].decode())\n"
)


def hub_log(kube: client.CoreV1Api) -> str:
    return kube.read_namespaced_pod_log(hub_pod(kube).metadata.name, NAMESPACE, container="hub")


def test_idle_servers_are_culled_with_nothing_left_on_the_hpc_side_and_an_active_one_is_kept(
    kube: client.CoreV1Api,
) -> None:
    helm_install(
        "--set",
        "culling.enabled=true",
        "--set",
        f"culling.timeout={TIMEOUT}",
        "--set",
        f"culling.every={EVERY}",
        "--set",
        f"hub.activityIntervalSeconds={EVERY}",
    )
    alice = bob = None
    try:
        alice = wait_for("the upgraded hub", lambda: login("alice", PASSWORD), timeout=180)
        bob = login("bob", PASSWORD)
        alice.start(SSH_SERVER)
        alice.start(SLURM_SERVER)
        (job,) = [j for j in slurm_jobs("alice") if j[1] == "RUNNING"]
        assert login_node_servers("alice")
        bob.start(SSH_SERVER)
        bob_started = time.monotonic()

        def bob_works() -> None:
            # bob uses his notebook through the proxy: the notebook server counts the API
            # call (not api/status, which it leaves out) and reports it to the hub; the
            # proxy's own route activity is not read (hpchub/proxy.py).
            r = bob.through_proxy(SSH_SERVER, "api/contents")
            assert r.status_code == 200, f"bob's active server: {r.status_code}"

        def alice_culled() -> bool:
            bob_works()
            return not any((alice.server(n) or {}).get("ready") for n in (SSH_SERVER, SLURM_SERVER))

        wait_for("alice's idle servers culled", alice_culled, timeout=TIMEOUT + 12 * EVERY, every=5)
        # Nothing of them left on the HPC side: no notebook process, the job gone.
        wait_for("alice's notebook process gone from hpc-login", lambda: not login_node_servers("alice"), 60)
        wait_for(
            f"alice's job {job[0]} gone from squeue",
            lambda: job[0] not in [j[0] for j in slurm_jobs("alice")],
            timeout=60,
        )
        # bob keeps working until his server is older than the idle timeout plus a culler
        # run: idle, it would have been culled by then.
        while time.monotonic() - bob_started < TIMEOUT + 2 * EVERY:
            bob_works()
            time.sleep(5)
        assert (bob.server(SSH_SERVER) or {}).get("ready"), "bob's active server was culled"
        bob_works()
        assert login_node_servers("bob")

        log = hub_log(kube)
        assert "(idle-culler@127.0.0.1)" in log  # the culler's requests reached the hub
        assert f"DELETE /hub/api/users/alice/servers/{SSH_SERVER} (idle-culler@" in log
        assert "Timeout while connecting" not in log
        token = pod_exec(
            kube, hub_pod(kube).metadata.name, ["python", "-c", CULLER_TOKEN], container="hub"
        ).strip()
        assert len(token) >= 32
        assert token not in log
    finally:
        for user in (alice, bob):
            for name in (SSH_SERVER, SLURM_SERVER):
                try:
                    if user:
                        user.stop(name)
                except Exception:  # noqa: BLE001 - best effort, the install is restored next
                    pass
        helm_install()
        wait_for("hub API back", lambda: requests.get(f"{HUB_URL}/hub/api", timeout=5).ok, 180)
