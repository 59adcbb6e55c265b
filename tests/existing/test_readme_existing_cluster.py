"""The README's "On an existing cluster", run as written against a cluster that has never
seen the images: a second kind cluster (its own name; `make up`'s is not touched) and a
registry container (CNCF Distribution built from the Go module proxy, hack/kind/registry.sh).
Only the value of REGISTRY is changed, to that registry. Passes when every pod of the
release is Ready with its image pulled from the registry, and a Spin notebook (the
singleuser image) starts through the hub. Cluster, registry and pushed tags are removed
afterwards. `make test-existing-cluster` (needs Docker and make up's kind node image)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client, config

from tests.harness import minihpc

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = os.environ.get("EXISTING_CLUSTER_NAME", "hpchub-existing")
REGISTRY_NAME = "hpchub-test-registry"
REGISTRY_PORT = int(os.environ.get("EXISTING_REGISTRY_PORT", "5001"))
REGISTRY = f"localhost:{REGISTRY_PORT}/hpchub"
NAMESPACE = "jupyter"  # as the README writes it
PASSWORD = "change-me"  # config/values-minimal.yaml's auth.dummy.password
USER = "readme"


def sh(command: str, timeout: float = 600, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=timeout, **kw)


def kind_settings() -> dict[str, str]:
    """kind and the node image make up uses (hack/kind/versions.env)."""
    r = sh(
        f'source "{ROOT}/hack/kind/versions.env"; echo "$KIND_CACHE/bin/tools/kind-$KIND_VERSION $NODE_IMAGE"'
    )
    kind, image = r.stdout.split()
    return {"kind": kind, "image": image}


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 3) -> Any:
    """The harness's wait at this test's pace: a failed assert of ``check`` is a verdict (an
    image pull failed), any other exception "not yet"; a timeout fails the test."""
    try:
        return minihpc.wait_for(check, timeout, what, interval=every)
    except TimeoutError as e:
        pytest.fail(str(e))


def readme_commands(registry: str) -> str:
    """The README's block for an existing cluster, with REGISTRY's value replaced.
    (EXISTING_README: another README, e.g. an older one, to see what it did.)"""
    text = Path(os.environ.get("EXISTING_README", ROOT / "README.md")).read_text()
    section = text.split("### On an existing cluster\n", 1)[1].split("\n#", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    first, rest = block.split("\n", 1)
    if not first.startswith("REGISTRY="):
        return block  # a README without a registry step: run as it is
    return f"REGISTRY={shlex.quote(registry)}\n{rest}"


@pytest.fixture(scope="module")
def registry() -> Iterator[str]:
    r = sh(f'"{ROOT}/hack/kind/registry.sh" start {REGISTRY_NAME} {REGISTRY_PORT}', timeout=1800)
    assert r.returncode == 0, r.stderr
    try:
        yield REGISTRY
    finally:
        sh(f'"{ROOT}/hack/kind/registry.sh" stop {REGISTRY_NAME}')
        tags = sh(
            f"docker image ls --format '{{{{.Repository}}}}:{{{{.Tag}}}}' | grep '^{REGISTRY}/' || true"
        ).stdout
        for tag in tags.split():
            sh(f"docker rmi {shlex.quote(tag)}")


@pytest.fixture(scope="module")
def kubeconfig(registry: str) -> Iterator[str]:
    kind = kind_settings()
    assert Path(kind["kind"]).exists(), "kind is not built: run make up first"
    assert sh(f"docker image inspect {kind['image']}").returncode == 0, (
        "no kind node image: run make up first"
    )
    work = Path(tempfile.mkdtemp(prefix="hpchub-existing-"))
    kc = str(work / "kubeconfig")
    cfg = work / "kind.yaml"
    # The node's containerd reads registry hosts from certs.d: localhost:PORT, which Docker
    # pushed to, is the registry container on kind's network (kind's local-registry recipe).
    cfg.write_text(
        f"""kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: {CLUSTER}
networking:
  podSubnet: 10.244.0.0/16
  kubeProxyMode: iptables
containerdConfigPatches:
  - |-
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "/etc/containerd/certs.d"
nodes:
  - role: control-plane
    image: {kind["image"]}
"""
    )
    env = {**os.environ, "KIND_EXPERIMENTAL_PROVIDER": "docker"}
    delete = f'"{kind["kind"]}" delete cluster --name {CLUSTER} --kubeconfig {kc}'
    sh(delete, env=env)  # a cluster of this name left by an interrupted run
    try:
        r = sh(
            f'"{kind["kind"]}" create cluster --name {CLUSTER} --config {cfg} --kubeconfig {kc} --wait 5m',
            timeout=900,
            env=env,
        )
        assert r.returncode == 0, r.stderr
        hosts = f'[host."http://{REGISTRY_NAME}:5000"]\n  capabilities = ["pull", "resolve"]\n'
        r = sh(
            f"docker exec -i {CLUSTER}-control-plane sh -c "
            f"'mkdir -p /etc/containerd/certs.d/localhost:{REGISTRY_PORT} && "
            f"cat >/etc/containerd/certs.d/localhost:{REGISTRY_PORT}/hosts.toml'",
            input=hosts,
        )
        assert r.returncode == 0, r.stderr
        yield kc
    finally:
        r = sh(delete, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        assert CLUSTER not in sh(f'"{kind["kind"]}" get clusters').stdout.split()


def test_readme_install_on_an_existing_cluster_pulls_every_image_from_the_registry(
    registry: str, kubeconfig: str
) -> None:
    env = {**os.environ, "KUBECONFIG": kubeconfig, "PATH": f"{ROOT / '.tools' / 'bin'}:{os.environ['PATH']}"}
    node = f"{CLUSTER}-control-plane"
    # The cluster has never seen the images: only the registry can give them.
    assert "hpchub/" not in sh(f"docker exec {node} crictl images").stdout
    r = sh(readme_commands(registry), timeout=3600, cwd=ROOT, env=env)
    assert r.returncode == 0, f"the README's commands failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"

    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()

    def ready_pods() -> list[client.V1Pod] | None:
        items = core.list_namespaced_pod(NAMESPACE).items
        comps = {p.metadata.labels.get("app.kubernetes.io/component") for p in items}
        ok = {"hub", "proxy"} <= comps and all(
            any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or []) for p in items
        )
        if not ok:
            waiting = [
                f"{p.metadata.name}: {s.state.waiting.reason}"
                for p in items
                for s in p.status.container_statuses or []
                if s.state.waiting
            ]
            if any("ImagePull" in w or "ErrImage" in w for w in waiting):
                raise AssertionError(f"image pull failed: {waiting}")
        return items if ok else None

    pods = wait_for("every pod of the release Ready", ready_pods, timeout=600)
    for p in pods:
        for s in p.status.container_statuses:
            assert s.image.startswith(f"{registry}/"), (p.metadata.name, s.image)
            assert s.image_id.startswith(f"{registry}/") and "@sha256:" in s.image_id, s.image_id

    # The singleuser image: a Spin notebook through the hub, as a user would start it.
    port = minihpc.free_port()
    forward = subprocess.Popen(
        ["kubectl", "--namespace", NAMESPACE, "port-forward", "service/hpchub-proxy-public", f"{port}:80"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for("the hub through port-forward", lambda: requests.get(f"{url}/hub/api", timeout=5).ok, 120)
        s = requests.Session()
        s.get(f"{url}/hub/login", timeout=30)
        r = s.post(
            f"{url}/hub/login",
            data={"username": USER, "password": PASSWORD, "_xsrf": s.cookies.get("_xsrf", "")},
            timeout=30,
            allow_redirects=False,
        )
        assert r.status_code in (302, 303), r.text[:300]
        headers = {"X-XSRFToken": s.cookies.get("_xsrf", "")}
        r = s.post(f"{url}/hub/api/users/{USER}/servers/spin-shared", json={}, headers=headers, timeout=60)
        assert r.status_code in (201, 202), r.text

        def server_ready() -> bool:
            m = s.get(f"{url}/hub/api/users/{USER}", headers=headers, timeout=30).json()
            return bool((m.get("servers") or {}).get("spin-shared", {}).get("ready"))

        wait_for("the Spin notebook ready", server_ready, timeout=600)
        selector = f"hub.jupyter.org/username={USER},hub.jupyter.org/servername=spin-shared"
        (spin,) = core.list_namespaced_pod(NAMESPACE, label_selector=selector).items
        (status,) = spin.status.container_statuses
        assert status.image == f"{registry}/singleuser:{status.image.rsplit(':', 1)[1]}", status.image
        assert status.image_id.startswith(f"{registry}/singleuser@sha256:"), status.image_id
        r = s.delete(f"{url}/hub/api/users/{USER}/servers/spin-shared", headers=headers, timeout=60)
        assert r.status_code in (202, 204), r.text
    finally:
        forward.terminate()
        forward.wait(timeout=30)
