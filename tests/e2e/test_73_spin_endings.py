"""A Spin notebook that goes over its memory limit ends OOMKilled, and the hub records how it
ended from the pod's status (hpchub.endings, in the hub's database): "ran out of memory",
the container's limit as the request, Kubernetes' own reason and exit code. Spin pods do
not restart (restartPolicy Never): the end is seen, not hidden by a restart that lost every
kernel.

On cgroup v1 nodes (this machine's) the kernel's OOM killer ends one process of the
container, the one with the highest score: its resident memory plus its oom_score_adj
(984 or so for a Burstable pod like Spin's, for every process of it). A hog holding its
memory in its own pages would be that process, and the notebook would live on. So the hog
keeps its memory in a memfd it writes and never maps (charged to the container, in no
process's RSS) and raises the notebook server's oom_score_adj to 1000 (a process may always
raise it for its own user's): the server is the one ended, tini exits 137, the container
is OOMKilled. (Checked in Docker with --memory 300m --oom-score-adj 984: a hog of its own
pages was killed and the container ran on; this one ended it OOMKilled, 137.) On cgroup v2
nodes with memory.oom.group the whole container ends either way.
"""

from __future__ import annotations

import json
import os
import time

from kubernetes import client

from .conftest import SPIN_SERVER, hub_pod, login, pod_exec, spin_pod, wait_for

USER = "bob"  # not the session's alice: her Spin server serves the other tests
PASSWORD = os.environ.get("HPCHUB_DEV_PASSWORD", "hpchub-dev")

HOG = """
import os
for p in os.listdir("/proc"):
    if p.isdigit() and int(p) != os.getpid():
        try:
            if b"jupyterhub-singleuser" in open(f"/proc/{p}/cmdline", "rb").read():
                open(f"/proc/{p}/oom_score_adj", "w").write("1000")
        except OSError:
            pass
fd = os.memfd_create("hog")
block = b"x" * (4 << 20)
while True:
    os.write(fd, block)
"""

# Run in the hub's pod: the ending as the hub recorded it (its own database and code).
READ_ENDING = """
import json, os, sys
from sqlalchemy import create_engine
from hpchub import endings
from hpchub.config import DATA_DIR, postgres_url
url = os.environ.get("HPCHUB_DB_URL")
engine = create_engine(postgres_url(url) if url else f"sqlite:///{DATA_DIR}/jupyterhub.sqlite")
e = endings.last(engine, sys.argv[1], sys.argv[2], float(sys.argv[3]))
print(json.dumps(e.to_json() if e else None))
"""


def ending_in_hub(kube: client.CoreV1Api, user: str, server: str, since: float) -> dict | None:
    out = pod_exec(
        kube, hub_pod(kube).metadata.name, ["python3", "-c", READ_ENDING, user, server, str(since)]
    )
    return json.loads(out.strip().splitlines()[-1])


def test_a_spin_notebook_over_its_memory_limit_is_recorded_as_out_of_memory(kube: client.CoreV1Api) -> None:
    hub = login(USER, PASSWORD)
    since = time.time() - 5  # the kind node shares this machine's clock
    hub.start(SPIN_SERVER)
    try:
        pod = spin_pod(kube, user=USER)
        assert pod.spec.restart_policy == "Never"
        limit = pod.spec.containers[0].resources.limits["memory"]
        try:
            pod_exec(kube, pod.metadata.name, ["python3", "-c", HOG])
        except Exception:  # noqa: BLE001 - the container ends under it, as it should
            pass
        # KubeSpawner polls every 30 s; the hub drops the server once a poll sees the pod end.
        wait_for("the hub to see the Spin server end", lambda: hub.server(SPIN_SERVER) is None, timeout=180)
        e = wait_for("the ending", lambda: ending_in_hub(kube, USER, SPIN_SERVER, since), timeout=10)
    finally:
        if hub.server(SPIN_SERVER) is not None:
            hub.stop(SPIN_SERVER)
    assert e["cause"] == "out_of_memory", e
    assert (e["details"]["state"], e["details"]["exit_code"]) == ("OOMKilled", "137"), e["details"]
    # values-kind.yaml's memLimit 1G, as KubeSpawner reads it (1024-based) into the pod's limit.
    assert limit == str(2**30), limit
    assert e["details"]["requested_memory_bytes"] == 2**30, e["details"]
    assert e["words"] == "ran out of memory (1.0 GiB requested)", e["words"]
    assert (e["backend"], e["system"], e["level"]) == ("kubernetes", "spin", "shared")
