"""Fixtures of the end-to-end tests: a real kind cluster (``make up`` or ``KUBECONFIG``),
the chart installed in it, and the mini HPC center's containers beside it.

The tests only talk to loopback (the proxy's NodePort published on 127.0.0.1), to the
cluster's API server and to containers ``make up`` created on this machine.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import requests
from kubernetes import client, config
from kubernetes.stream import stream
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from tests.harness import minihpc

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("HPCHUB_STATE", "/var/lib/hpchub-kind"))
NAMESPACE = os.environ.get("HPCHUB_NAMESPACE", "hpchub")
RELEASE = os.environ.get("HPCHUB_RELEASE", "hpchub")
CLUSTER = os.environ.get("CLUSTER_NAME", "hpchub")
# The proxy's NodePort (config/values-dev.yaml); the kind node publishes it on 127.0.0.1.
NODE_PORT = 30080


def published_port(node_port: int = NODE_PORT) -> str:
    """The host port the kind node publishes ``node_port`` on: HPCHUB_HTTP_PORT as it was
    when `make up` created the cluster (30080 by default), read from the node itself."""
    r = subprocess.run(
        ["docker", "port", f"{CLUSTER}-control-plane", f"{node_port}/tcp"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    mapped = r.stdout.split()
    # Not a kind cluster of make up's (KUBECONFIG elsewhere): HPCHUB_HTTP_PORT or the default.
    return (
        mapped[0].rpartition(":")[2]
        if r.returncode == 0 and mapped
        else os.environ.get("HPCHUB_HTTP_PORT", "30080")
    )


HUB_URL = os.environ.get("HPCHUB_URL", f"http://127.0.0.1:{published_port()}")
USER = "alice"
PASSWORD = os.environ.get("HPCHUB_DEV_PASSWORD", "hpchub-dev")
HELM = os.environ.get("HELM", str(ROOT / ".tools" / "bin" / "helm"))

# Named servers (<system>-<level>) from config/values-dev.yaml, one per backend.
SPIN_SERVER = "spin-shared"
SSH_SERVER = "mini-shared"
SLURM_SERVER = "mini-exclusive"


class StopWaiting(AssertionError):
    """Raised by a ``wait_for`` check that has seen what it waits for can no longer happen
    (a spawn that failed): the test fails at once, with that reason, not at the timeout."""


def wait_for(what: str, check: Callable[[], Any], timeout: float = 180, every: float = 2) -> Any:
    """Polls ``check`` until it returns something truthy; fails naming ``what``. The harness's
    wait, with e2e's own argument order and pace, and one rule of its own: a cluster converges,
    so every other exception of ``check``, a failed assert included (a pod not there yet,
    :func:`hub_pod` during a rollout, a connection reset, a sign-in the restarting hub
    refuses), means "not yet"; only :class:`StopWaiting` is final."""
    try:
        return minihpc.wait_for(check, timeout, what, interval=every, final=StopWaiting)
    except TimeoutError as e:
        pytest.fail(str(e))


def docker_exec(container: str, *cmd: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    """Runs a command in one of the mini HPC center's containers."""
    args = ["docker", "exec"] + (["-u", user] if user else []) + [container, *cmd]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def guide_block(name: str) -> str:
    """A marked shell block of docs/operator-guide.md, as hack/doc-block.py prints it."""
    spec = importlib.util.spec_from_file_location("doc_block", ROOT / "hack" / "doc-block.py")
    assert spec and spec.loader
    doc_block = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(doc_block)
    return doc_block.block((ROOT / "docs" / "operator-guide.md").read_text(), name)


@contextmanager
def fresh_login_node(name: str, env: dict[str, str]) -> Iterator[tuple[str, str]]:
    """A login node of the mini HPC image on kind's network, started with ``env`` (e.g.
    without the status account), trusting the hub's CA: its address and known_hosts line
    once sshd answers. Removed afterwards."""
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    argv = ["docker", "run", "-d", "--name", name, "--hostname", name, "--network", "kind"]
    argv += ["--label", "hpchub.mini-hpc=1", "-v", f"{STATE}/ssh-ca/ca.pub:/etc/ssh/hpchub_ca.pub:ro"]
    argv += [a for k, v in env.items() for a in ("-e", f"{k}={v}")] + ["hpchub/mini-hpc:latest", "login"]
    r = subprocess.run(argv, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    try:
        wait_for(
            "sshd on the fresh login node",
            lambda: docker_exec(name, "ssh-keyscan", "-T", "2", "localhost").stdout,
            60,
        )
        ip = subprocess.run(
            ["docker", "inspect", "-f", '{{(index .NetworkSettings.Networks "kind").IPAddress}}', name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        key = " ".join(docker_exec(name, "cat", "/etc/ssh/host/ssh_host_ed25519_key.pub").stdout.split()[:2])
        yield ip, f"{ip} {key}\n"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def run_guide_steps(container: str, steps: str, *files: Path) -> None:
    """The guide's ``steps`` as root in ``container``, with ``files`` in the current
    directory (as the guide says), then a moment for sshd to re-execute itself on SIGHUP."""
    subprocess.run(["docker", "exec", container, "mkdir", "-p", "/root/setup"], check=True)
    for f in files:
        subprocess.run(["docker", "cp", str(f), f"{container}:/root/setup/"], check=True)
    run = subprocess.run(
        ["docker", "exec", "-i", "-w", "/root/setup", container, "sh", "-e", "-s"],
        input=steps,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, f"the guide's steps failed:\n{run.stdout}\n{run.stderr}"
    time.sleep(2)


async def logged_in_across(ip: str, known: str, ca: Any, steps: Callable[[], None]) -> str:
    """alice logged in to the login node at ``ip`` while ``steps`` run (in a thread): what
    her same connection then answers, or the error it gives."""
    creds = ca.sign("alice")
    async with asyncssh.connect(
        ip,
        username="alice",
        client_keys=[(creds.private_key, creds.certificate)],
        known_hosts=asyncssh.import_known_hosts(known),
    ) as conn:
        assert (await conn.run("echo logged in", check=True)).stdout == "logged in\n"
        await asyncio.to_thread(steps)
        try:
            return str((await conn.run("echo still here", check=True)).stdout)
        except (asyncssh.Error, OSError) as e:
            return f"{type(e).__name__}: {e}"


def run_guide_steps_while_logged_in(
    container: str, ip: str, known: str, ca: Any, steps: str, *files: Path
) -> None:
    """run_guide_steps on a login node in use: alice is logged in over SSH while root runs
    them, and her session must outlive them (the steps once reloaded sshd with `pkill -HUP
    -x sshd`, which on Debian 12's OpenSSH 9.2 also hangs up every session's own process)."""
    after = asyncio.run(logged_in_across(ip, known, ca, lambda: run_guide_steps(container, steps, *files)))
    assert after == "still here\n", f"the guide's steps ended a logged-in user's SSH session: {after}"


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HELM, "--namespace", NAMESPACE, *args], capture_output=True, text=True, timeout=900, check=False
    )


def helm_install(*extra: str) -> None:
    """Installs/upgrades the chart exactly as ``make up`` does (hack/kind/helm-install.sh)."""
    r = subprocess.run(
        [str(ROOT / "hack" / "kind" / "helm-install.sh"), *extra],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, f"helm install failed:\n{r.stdout}\n{r.stderr}"


def reinstall_with_tokens(tokens: dict[str, str]) -> None:
    """Back to the chart's own Secret holding these values of its keys (``hub.cookie-secret``,
    ``hub.crypt-key``, ``proxy.token``): nobody is logged out, nothing stored is unreadable."""
    helm_install(
        "--set",
        f"hub.cookieSecret={tokens['hub.cookie-secret']}",
        "--set",
        f"hub.cryptKey={tokens['hub.crypt-key']}",
        "--set",
        f"proxy.secretToken={tokens['proxy.token']}",
    )


@pytest.fixture(scope="session")
def kube() -> client.CoreV1Api:
    try:
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG", str(STATE / "kubeconfig")))
        api = client.CoreV1Api()
        api.list_namespace(_request_timeout=10)
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"no Kubernetes cluster reachable (run `make up` or set KUBECONFIG): {e}")
    return api


def pod_exec(kube: client.CoreV1Api, pod: str, cmd: list[str], container: str | None = None) -> str:
    """Runs ``cmd`` in a pod and returns its combined output (raises on a non-zero exit)."""
    resp = stream(
        kube.connect_get_namespaced_pod_exec,
        pod,
        NAMESPACE,
        command=cmd,
        container=container,
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    resp.run_forever(timeout=60)
    out = (resp.read_stdout() or "") + (resp.read_stderr() or "")
    code = resp.returncode
    resp.close()
    if code not in (0, None):
        raise RuntimeError(f"{cmd!r} in {pod} exited {code}: {out}")
    return out


def bare_pod(name: str, image: str, command: list[str], root: bool = False) -> client.V1Pod:
    """A bare pod a test starts outside the release (no policy selects it)."""
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app": name}),
        spec=client.V1PodSpec(
            restart_policy="Never",
            termination_grace_period_seconds=0,
            containers=[
                client.V1Container(
                    name="main",
                    image=image,
                    image_pull_policy="Never",
                    command=command,
                    security_context=client.V1SecurityContext(run_as_user=0) if root else None,
                )
            ],
        ),
    )


def pods(kube: client.CoreV1Api, selector: str) -> list[client.V1Pod]:
    return [
        p
        for p in kube.list_namespaced_pod(NAMESPACE, label_selector=selector).items
        if p.metadata.deletion_timestamp is None
    ]


def hub_pod(kube: client.CoreV1Api) -> client.V1Pod:
    ready = [p for p in pods(kube, "app.kubernetes.io/component=hub") if is_ready(p)]
    assert len(ready) == 1, f"expected one Ready hub pod, found {[p.metadata.name for p in ready]}"
    return ready[0]


def is_ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


@dataclass
class Hub:
    """A logged-in test user talking to the hub through the proxy (the public entry)."""

    session: requests.Session
    user: str

    def api(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.session.request(method, f"{HUB_URL}/hub/api{path}", timeout=30, **kw)

    def server(self, name: str) -> dict[str, Any] | None:
        r = self.api("GET", f"/users/{self.user}")
        r.raise_for_status()
        return (r.json().get("servers") or {}).get(name)

    def start(self, name: str, options: dict[str, Any] | None = None, timeout: float = 300) -> dict[str, Any]:
        current = self.server(name)
        if not (current and current.get("ready")):
            r = self.api("POST", f"/users/{self.user}/servers/{name}", json={"user_options": options or {}})
            assert r.status_code in (201, 202, 400), f"start {name}: {r.status_code} {r.text}"
            if r.status_code == 400:
                assert "already" in r.text, f"start {name}: {r.text}"

        def ready() -> dict[str, Any] | None:
            s = self.server(name)
            if s is None:
                # The spawn failed: say so now, not after the timeout.
                raise StopWaiting(f"server {name} vanished (spawn failed); see the hub log")
            return s if s.get("ready") else None

        return wait_for(f"server {name} ready", ready, timeout=timeout, every=3)

    def stop(self, name: str) -> None:
        r = self.api("DELETE", f"/users/{self.user}/servers/{name}", json={"remove": False})
        if r.status_code not in (202, 204, 404, 400):
            r.raise_for_status()
        wait_for(f"server {name} stopped", lambda: not (self.server(name) or {}).get("ready"), timeout=180)

    def through_proxy(self, name: str, path: str = "api/status") -> requests.Response:
        """GETs a path of the user's server through the public proxy."""
        return self.session.get(f"{HUB_URL}/user/{self.user}/{name}/{path}", timeout=30)


def session() -> requests.Session:
    """A client session that retries idempotent requests (GET, DELETE, ...) whose pooled
    keep-alive connection the proxy closed just as the request went out (node's
    keepAliveTimeout is 5 s: a poll every 5 s hits that race, "Remote end closed
    connection without response"). HTTP status codes are never retried."""
    s = requests.Session()
    retry = Retry(total=3, backoff_factor=0.5)  # default allowed_methods: never POST
    s.mount("http://", HTTPAdapter(max_retries=retry))
    s.mount("https://", HTTPAdapter(max_retries=retry))
    return s


def login(user: str, password: str) -> Hub:
    """The user's own API token, made from a session signed in through the proxy (the
    harness's sign-in, at the cluster's hub)."""
    s = minihpc.session_of(HUB_URL, user, password, session=session())
    r = s.post(
        f"{HUB_URL}/hub/api/users/{user}/tokens",
        json={"note": "hpchub e2e", "expires_in": 7200},
        headers={"X-XSRFToken": s.cookies.get("_xsrf", "")},
        timeout=30,
    )
    assert r.status_code in (200, 201), f"token for {user}: {r.status_code} {r.text[:300]}"
    token = r.json()["token"]
    api = session()
    api.headers["Authorization"] = f"token {token}"
    return Hub(api, user)


def browser_login(user: str = USER, password: str = PASSWORD) -> requests.Session:
    """A browser's session: signed in through the proxy, holding the hub's login cookie."""
    return minihpc.session_of(HUB_URL, user, password, session=session())


def still_logged_in(browser: requests.Session) -> bool:
    """Whether the hub still accepts the session's login cookie (signed with its cookie secret)."""
    return browser.get(f"{HUB_URL}/hub/home", timeout=30, allow_redirects=False).status_code == 200


@pytest.fixture(scope="session")
def hub(kube: client.CoreV1Api) -> Hub:
    wait_for(
        "hub API through the proxy", lambda: requests.get(f"{HUB_URL}/hub/api", timeout=5).ok, timeout=120
    )
    return login(USER, PASSWORD)


@pytest.fixture(scope="session")
def servers(hub: Hub) -> Iterator[dict[str, dict[str, Any]]]:
    """One running server per backend for the test user, shared by the tests that need
    them; stopped at the end (after the uninstall test has reinstalled the chart)."""
    started: dict[str, dict[str, Any]] = {}
    try:
        for name in (SPIN_SERVER, SSH_SERVER, SLURM_SERVER):
            started[name] = hub.start(name)
        yield started
    finally:
        for name in started:
            try:
                hub.stop(name)
            except Exception:  # noqa: BLE001 - best effort, the cluster may be gone
                pass


def spin_pod(kube: client.CoreV1Api, user: str = USER, server: str = SPIN_SERVER) -> client.V1Pod:
    found = pods(kube, f"hub.jupyter.org/username={user},hub.jupyter.org/servername={server}")
    assert len(found) == 1, f"expected one Spin pod of {user}/{server}, found {len(found)}"
    return found[0]


def slurm_jobs(user: str = USER) -> list[tuple[str, str, str]]:
    """(job id, state, node list) of the user's jobs, from squeue on the login node."""
    r = docker_exec("hpc-login", "squeue", "-h", "-u", user, "-o", "%i %T %N")
    assert r.returncode == 0, r.stderr
    return [tuple(line.split(maxsplit=2)) + ("",) * (3 - len(line.split())) for line in r.stdout.splitlines()]  # type: ignore[misc]


def notebook_processes(container: str, user: str = USER) -> list[str]:
    """PIDs of the user's jupyterhub-singleuser processes in one of the mini HPC center's
    containers (pgrep: 0 found, 1 none; anything else, or docker failing, is an error)."""
    r = docker_exec(container, "pgrep", "-u", user, "-f", "jupyterhub-singleuser")
    assert r.returncode == 0 or (r.returncode == 1 and not r.stdout + r.stderr), (
        f"pgrep in {container} failed ({r.returncode}): {r.stderr.strip()}"
    )
    return r.stdout.split()


def login_node_servers(user: str = USER) -> list[str]:
    """PIDs of the user's jupyterhub-singleuser processes on the login node."""
    return notebook_processes("hpc-login", user)


# The mini HPC center's compute nodes (hack/mini-hpc): where Slurm notebooks run.
COMPUTE_NODES = ("hpc-c1", "hpc-c2")
