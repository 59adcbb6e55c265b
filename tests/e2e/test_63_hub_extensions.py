"""The pod-level extension points on the real cluster: a hub installed with extraEnv,
extraFiles, extraVolumes/extraVolumeMounts, an init container and a sidecar, affinity, a
PriorityClass, ServiceAccount annotations, an extra supplemental group, a service with its
token and a login-page template runs, and each shows its effect inside the hub pod."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import yaml
from kubernetes import client

from hpchub.extensions import service_token_env

from .conftest import HUB_URL, NAMESPACE, RELEASE, helm_install, hub_pod, pod_exec, wait_for

CM = "e2e-site"
PRIORITY = "e2e-hub-priority"


def site_values(hub_image: str) -> dict[str, Any]:
    container = {
        "image": hub_image,
        "imagePullPolicy": "Never",
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "e2e-work", "mountPath": "/e2e-work"}],
    }
    return {
        "hub": {
            "extraEnv": {"SITE_MOTD": "hello-from-extraEnv"},
            "extraFiles": {
                "motd": {
                    "mountPath": "/usr/local/etc/site/motd.txt",
                    "stringData": "welcome-from-extraFiles\n",
                }
            },
            "extraVolumes": [
                {"name": "site-cm", "configMap": {"name": CM}},
                {"name": "e2e-work", "emptyDir": {}},
            ],
            "extraVolumeMounts": [
                {"name": "site-cm", "mountPath": "/usr/local/etc/site-cm"},
                {"name": "e2e-work", "mountPath": "/e2e-work"},
            ],
            "initContainers": [
                {
                    **container,
                    "name": "e2e-init",
                    "command": ["python3", "-c", "open('/e2e-work/init','w').write('ran')"],
                }
            ],
            "extraContainers": [{**container, "name": "e2e-sidecar", "command": ["sleep", "infinity"]}],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}
                                ]
                            }
                        ]
                    }
                }
            },
            "priorityClassName": PRIORITY,
            "serviceAccount": {"annotations": {"e2e.hpchub.example/role": "hub"}},
            "podSecurityContext": {"supplementalGroups": [4242]},
            "services": {"e2e-stats": {"display": False}},
            "loadRoles": {"e2e-stats": {"scopes": ["list:users"], "services": ["e2e-stats"]}},
            "extraConfig": {
                "10-banner": "import os\nc.JupyterHub.template_vars['site_banner'] = os.environ['SITE_MOTD']"
            },
        },
        "console": {
            "templates": {
                "login.html": '{% extends "hpchub/login.html" %}\n'
                '{% block main %}<p id="site-banner">{{ site_banner }}</p>{{ super() }}{% endblock main %}\n'
            }
        },
    }


@pytest.fixture(scope="module")
def extended_hub(kube: client.CoreV1Api, tmp_path_factory: pytest.TempPathFactory) -> Iterator[client.V1Pod]:
    image = hub_pod(kube).spec.containers[0].image
    kube.create_namespaced_config_map(
        NAMESPACE,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name=CM), data={"motd": "from-a-configmap"}),
    )
    client.SchedulingV1Api().create_priority_class(
        client.V1PriorityClass(metadata=client.V1ObjectMeta(name=PRIORITY), value=4242)
    )
    values = tmp_path_factory.mktemp("ext") / "site.yaml"
    values.write_text(yaml.safe_dump(site_values(image)))
    try:
        helm_install("-f", str(values))
        wait_for(
            "the extended hub answering",
            lambda: requests.get(f"{HUB_URL}/hub/api", timeout=5).ok,
            timeout=300,
        )
        yield hub_pod(kube)
    finally:
        helm_install()
        kube.delete_namespaced_config_map(CM, NAMESPACE)
        client.SchedulingV1Api().delete_priority_class(PRIORITY)
        wait_for(
            "the plain hub answering", lambda: requests.get(f"{HUB_URL}/hub/api", timeout=5).ok, timeout=300
        )


def hub_sh(kube: client.CoreV1Api, pod: client.V1Pod, script: str) -> str:
    return pod_exec(kube, pod.metadata.name, ["sh", "-c", script], container="hub").strip()


def test_files_volumes_env_and_init_container_are_in_the_hub(
    kube: client.CoreV1Api, extended_hub: client.V1Pod
) -> None:
    assert hub_sh(kube, extended_hub, "cat /usr/local/etc/site/motd.txt") == "welcome-from-extraFiles"
    assert hub_sh(kube, extended_hub, "stat -c %a /usr/local/etc/site/motd.txt") in ("400", "440")
    assert hub_sh(kube, extended_hub, "cat /usr/local/etc/site-cm/motd") == "from-a-configmap"
    assert hub_sh(kube, extended_hub, "cat /e2e-work/init") == "ran"
    assert hub_sh(kube, extended_hub, 'echo "$SITE_MOTD"') == "hello-from-extraEnv"
    assert "4242" in hub_sh(kube, extended_hub, "id -G").split()


def test_sidecar_priority_affinity_and_service_account(
    kube: client.CoreV1Api, extended_hub: client.V1Pod
) -> None:
    pod = kube.read_namespaced_pod(extended_hub.metadata.name, NAMESPACE)
    running = {s.name: bool(s.state.running) for s in pod.status.container_statuses}
    assert running == {"hub": True, "e2e-sidecar": True}
    assert pod.spec.priority_class_name == PRIORITY and pod.spec.priority == 4242
    assert pod.spec.affinity.node_affinity is not None
    sa = kube.read_namespaced_service_account(f"{RELEASE}-hub", NAMESPACE)
    assert sa.metadata.annotations["e2e.hpchub.example/role"] == "hub"


def test_login_template_and_service_token_through_the_public_proxy(
    kube: client.CoreV1Api, extended_hub: client.V1Pod
) -> None:
    r = requests.get(f"{HUB_URL}/hub/login", timeout=30)
    assert '<p id="site-banner">hello-from-extraEnv</p>' in r.text and 'id="docs-user-guide"' in r.text
    secret = kube.read_namespaced_secret(f"{RELEASE}-hub-secret", NAMESPACE).data
    token = base64.b64decode(secret["hub.services.e2e-stats.apiToken"]).decode()
    auth = {"Authorization": f"token {token}"}
    assert requests.get(f"{HUB_URL}/hub/api/users", headers=auth, timeout=30).status_code == 200
    assert requests.post(f"{HUB_URL}/hub/api/users/intruder", headers=auth, timeout=30).status_code == 403
    # The hub got the same token from its environment.
    code = f"import os, hashlib; print(hashlib.sha256(os.environ[{service_token_env('e2e-stats')!r}].encode()).hexdigest())"
    assert pod_exec(kube, extended_hub.metadata.name, ["python3", "-c", code], container="hub").strip() == (
        hashlib.sha256(token.encode()).hexdigest()
    )
