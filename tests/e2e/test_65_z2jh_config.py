"""An operator's Zero to JupyterHub config on the real cluster, installed as they wrote it:
their hub.existingSecret in z2jh's layout (the chart's tokens copied under z2jh's key names,
a values.yaml, a key of their own), a jupyterhub_config.d file from hub.extraFiles, a role
and a service with ``name``, a z2jh-style hub.extraConfig snippet, and an emptyDir /dev/shm
for Spin. Each shows its effect through the public proxy or inside the pods; a z2jh Secret
that lacks a token is refused by ``helm upgrade`` naming the key."""

from __future__ import annotations

import base64
import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import yaml
from kubernetes import client

from hpchub.hubsecrets import derived_token

from .conftest import (
    HUB_URL,
    NAMESPACE,
    RELEASE,
    ROOT,
    SPIN_SERVER,
    Hub,
    browser_login,
    helm_install,
    hub_pod,
    pod_exec,
    pods,
    reinstall_with_tokens,
    spin_pod,
    still_logged_in,
    wait_for,
)

MINE = "e2e-z2jh-secret"
CHART_SECRET = f"{RELEASE}-hub-secret"
SERVICE_TOKEN = secrets.token_hex(32)
CONFIG_D = "/usr/local/etc/jupyterhub/jupyterhub_config.d"

MARKER_PY = (
    "open('/tmp/config-d-marker', 'w').write('config.d ran: ' + get_config('custom.banner'))\n"
    "c.JupyterHub.template_vars['config_d'] = 'ran'\n"
)
Z2JH_SNIPPET = (
    "from z2jh import get_config, get_secret_value\n"
    "c.JupyterHub.template_vars['site_banner'] = ' '.join([\n"
    "    get_config('custom.banner'), get_secret_value('site-motd'), os.environ['SITE_FLAG'],\n"
    "    c.JupyterHub.template_vars['config_d'],\n"
    "])\n"
)


def site_values() -> dict[str, Any]:
    return {
        "hub": {
            "existingSecret": MINE,
            "extraEnv": {"SITE_FLAG": "flag-from-extraEnv"},
            # z2jh's singleuser.extraEnv / extraLabels, as the mapping page says to write them.
            "config": {
                "KubeSpawner": {
                    "environment": {"SITE_SPIN": "from-hub-config"},
                    "extra_labels": {"site": "e2e"},
                }
            },
            "extraFiles": {"marker": {"mountPath": f"{CONFIG_D}/50-marker.py", "stringData": MARKER_PY}},
            "extraConfig": {"10-z2jh": Z2JH_SNIPPET},
            "services": {"stats": {"name": "e2e-site-stats", "display": False}},
            "loadRoles": {
                "statsReader": {
                    "name": "e2e-stats-reader",
                    "scopes": ["list:users", "read:roles:services"],
                    "services": ["e2e-site-stats"],
                }
            },
        },
        "custom": {"banner": "from-values"},
        "spin": {
            "volumes": {
                "shm": {"mountPath": "/dev/shm", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}}
            }
        },
        "console": {
            "templates": {
                "login.html": '{% extends "hpchub/login.html" %}\n'
                '{% block main %}<p id="site-banner">{{ site_banner }}</p>{{ super() }}{% endblock main %}\n'
            }
        },
    }


def secret_data(kube: client.CoreV1Api, name: str) -> dict[str, str]:
    data = kube.read_namespaced_secret(name, NAMESPACE).data or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def z2jh_layout(generated: dict[str, str]) -> dict[str, str]:
    """The chart's generated tokens under z2jh's names, as a z2jh operator's Secret has them."""
    return {
        "hub.config.JupyterHub.cookie_secret": generated["hub.cookie-secret"],
        "hub.config.CryptKeeper.keys": generated["hub.crypt-key"],
        "hub.config.ConfigurableHTTPProxy.auth_token": generated["proxy.token"],
        "hub.services.stats.apiToken": SERVICE_TOKEN,
        "values.yaml": yaml.safe_dump({"custom": {"banner": "from-the-secret"}}),
        "site-motd": "motd-from-the-secret",
    }


@pytest.fixture(scope="module")
def z2jh_install(
    kube: client.CoreV1Api, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[client.V1Pod, dict[str, str], requests.Session]]:
    generated = secret_data(kube, CHART_SECRET)
    browser = browser_login()  # signed with the chart's cookie secret
    kube.create_namespaced_secret(
        NAMESPACE,
        client.V1Secret(metadata=client.V1ObjectMeta(name=MINE), string_data=z2jh_layout(generated)),
    )
    values = tmp_path_factory.mktemp("z2jh") / "site.yaml"
    values.write_text(yaml.safe_dump(site_values()))
    old_pod = hub_pod(kube).metadata.name
    try:
        helm_install("-f", str(values))
        wait_for("a new hub pod", lambda: hub_pod(kube).metadata.name != old_pod, timeout=300)
        wait_for("the hub through the proxy", lambda: requests.get(f"{HUB_URL}/hub/api", timeout=5).ok)
        yield hub_pod(kube), generated, browser
    finally:
        # Back to the chart's Secret with the same values (nobody logged out).
        reinstall_with_tokens(generated)
        kube.delete_namespaced_secret(MINE, NAMESPACE)
        wait_for(
            "the plain hub answering", lambda: requests.get(f"{HUB_URL}/hub/api", timeout=5).ok, timeout=300
        )


def hub_log(kube: client.CoreV1Api, pod: client.V1Pod) -> str:
    return kube.read_namespaced_pod_log(pod.metadata.name, NAMESPACE, container="hub")


def test_config_d_file_from_extra_files_runs(kube: client.CoreV1Api, z2jh_install: tuple) -> None:
    pod, _, _ = z2jh_install
    marker = pod_exec(kube, pod.metadata.name, ["cat", "/tmp/config-d-marker"], container="hub")
    assert marker.strip() == "config.d ran: from-the-secret"  # the Secret's values.yaml merged in
    log = hub_log(kube, pod)
    assert log.index(f"Loading {CONFIG_D} config: 50-marker.py") < log.index("Loading extra config: 10-z2jh")


def test_z2jh_snippet_runs_and_logs_its_key(kube: client.CoreV1Api, z2jh_install: tuple) -> None:
    pod, _, _ = z2jh_install
    r = requests.get(f"{HUB_URL}/hub/login", timeout=30)
    assert '<p id="site-banner">from-the-secret motd-from-the-secret flag-from-extraEnv ran</p>' in r.text
    assert "Loading extra config: 10-z2jh" in hub_log(kube, pod)


def test_role_and_service_get_the_names_given(z2jh_install: tuple) -> None:
    auth = {"Authorization": f"token {SERVICE_TOKEN}"}
    r = requests.get(f"{HUB_URL}/hub/api/user", headers=auth, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "e2e-site-stats" and r.json()["roles"] == ["e2e-stats-reader"]
    assert requests.get(f"{HUB_URL}/hub/api/users", headers=auth, timeout=30).status_code == 200
    assert requests.post(f"{HUB_URL}/hub/api/users/intruder", headers=auth, timeout=30).status_code == 403


def test_existing_secret_in_z2jh_layout_is_read(kube: client.CoreV1Api, z2jh_install: tuple) -> None:
    pod, generated, browser = z2jh_install
    # The browser session signed before the move still works: the cookie secret is the one
    # under z2jh's key.
    assert still_logged_in(browser)
    # The hub and proxy run on the operator's Secret alone: mounted in the hub, the proxy's
    # token from z2jh's key (the chart's Secret no longer holds one).
    assert not {"hub.cookie-secret", "proxy.token"} & set(secret_data(kube, CHART_SECRET))
    vols = {v.name: v for v in pod.spec.volumes}
    assert vols["existing-secret"].secret.secret_name == MINE
    proxy = next(
        p
        for p in kube.list_namespaced_pod(NAMESPACE, label_selector="app.kubernetes.io/component=proxy").items
    )
    refs = {
        e.name: e.value_from.secret_key_ref.key
        for e in proxy.spec.containers[0].env
        if e.value_from and e.value_from.secret_key_ref
    }
    assert refs["HPCHUB_Z2JH_PROXY_TOKEN"] == "hub.config.ConfigurableHTTPProxy.auth_token"
    # (The hub adds routes with that token too: test_spin_gets_z2jh_singleuser_settings goes through one.)
    # The uninstall hook's token, derived from the cookie secret (z2jh's layout has none),
    # is the uninstall service's on the hub.
    token = derived_token("uninstall", generated["hub.cookie-secret"])
    r = requests.get(f"{HUB_URL}/hub/api/user", headers={"Authorization": f"token {token}"}, timeout=30)
    assert r.status_code == 200 and r.json()["name"] == "uninstall", r.text


def test_spin_gets_z2jh_singleuser_settings(kube: client.CoreV1Api, hub: Hub, z2jh_install: tuple) -> None:
    # singleuser.storage.extraVolumes (an emptyDir /dev/shm), extraEnv and extraLabels.
    # A Spin server an earlier module left running has the settings of before this install
    # (a full CI run found its pod without the shm volume): this test's server is a new one.
    hub.stop(SPIN_SERVER)
    wait_for(
        "no Spin pod of the server stopped",
        lambda: (
            not pods(kube, f"hub.jupyter.org/username={hub.user},hub.jupyter.org/servername={SPIN_SERVER}")
        ),
        timeout=120,
    )
    hub.start(SPIN_SERVER)
    try:
        pod = spin_pod(kube)
        mounts = pod_exec(kube, pod.metadata.name, ["cat", "/proc/mounts"])
        shm = [line for line in mounts.splitlines() if line.split()[1] == "/dev/shm"]
        assert shm and shm[-1].split()[2] == "tmpfs", mounts
        assert {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}} in [
            client.ApiClient().sanitize_for_serialization(v) for v in pod.spec.volumes
        ]
        # The user can write there (it is the pod's own, under the user's uid).
        pod_exec(kube, pod.metadata.name, ["sh", "-c", "echo x > /dev/shm/probe"])
        assert (
            pod_exec(kube, pod.metadata.name, ["sh", "-c", 'echo "$SITE_SPIN"']).strip() == "from-hub-config"
        )
        assert pod.metadata.labels["site"] == "e2e" and pod.metadata.labels["hpchub/level"] == "shared"
        # Its route, which the hub added to the proxy with the token under z2jh's name.
        assert hub.through_proxy(SPIN_SERVER).status_code == 200
    finally:
        hub.stop(SPIN_SERVER)


def test_z2jh_secret_lacking_a_token_is_refused_at_install(
    kube: client.CoreV1Api, z2jh_install: tuple
) -> None:
    _, generated, _ = z2jh_install
    name = "e2e-z2jh-incomplete"
    data = {
        k: v for k, v in z2jh_layout(generated).items() if k != "hub.config.ConfigurableHTTPProxy.auth_token"
    }
    kube.create_namespaced_secret(
        NAMESPACE, client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data=data)
    )
    try:
        r = subprocess.run(
            [
                str(ROOT / "hack/kind/helm-install.sh"),
                "--reuse-values",
                "--set",
                f"hub.existingSecret={name}",
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert r.returncode != 0
        assert (
            f"hub.existingSecret ({name}): no key proxy.token (or z2jh's name "
            "hub.config.ConfigurableHTTPProxy.auth_token); add it: kubectl -n "
            f"{NAMESPACE} patch secret {name}" in r.stderr
        ), r.stderr
        for value in data.values():
            assert value not in r.stderr
        # Nothing changed: the hub still runs on the complete Secret.
        assert hub_pod(kube).spec.volumes and requests.get(f"{HUB_URL}/hub/api", timeout=5).ok
    finally:
        kube.delete_namespaced_secret(name, NAMESPACE)
