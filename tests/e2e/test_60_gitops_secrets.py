"""The hub's tokens survive `helm upgrade` — the ones the chart generated (kept by lookup),
and the ones in a Secret the operator manages (hub.existingSecret), set up with the
operator guide's own commands. Compared by value before and after, in the cluster."""

from __future__ import annotations

import base64
import hashlib
import os

import requests
from kubernetes import client

from tests.chart.helm import guide_block, run_bash

from .conftest import (
    HELM,
    HUB_URL,
    NAMESPACE,
    RELEASE,
    STATE,
    Hub,
    browser_login,
    helm_install,
    hub_pod,
    pod_exec,
    reinstall_with_tokens,
    still_logged_in,
    wait_for,
)

CHART_SECRET = f"{RELEASE}-hub-secret"
TOKENS = ("hub.cookie-secret", "hub.crypt-key", "proxy.token", "hub.uninstall-token")
MINE = "hpchub-tokens"  # the name the guide uses
# A site's own service (hub.services): its API token is one more key the move must carry.
SERVICE = "e2e-gitops"
SERVICE_TOKEN = f"hub.services.{SERVICE}.apiToken"


def secret_data(kube: client.CoreV1Api, name: str) -> dict[str, str]:
    data = kube.read_namespaced_secret(name, NAMESPACE).data or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def env_digest(kube: client.CoreV1Api, name: str) -> str:
    """sha256 of an environment variable inside the running hub (never the value itself)."""
    code = f"import hashlib, os; print(hashlib.sha256(os.environ[{name!r}].encode()).hexdigest())"
    return pod_exec(kube, hub_pod(kube).metadata.name, ["python3", "-c", code]).strip()


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def hub_answers(hub: Hub) -> bool:
    return hub.api("GET", "/user").status_code == 200


def test_helm_upgrade_keeps_the_generated_secret_values(kube: client.CoreV1Api, hub: Hub) -> None:
    before = secret_data(kube, CHART_SECRET)
    old_pod = hub_pod(kube).metadata.name
    try:
        # A hub setting changes: the chart re-renders its Secret (lookup) and the hub restarts.
        helm_install("--set", "hub.debug=false")
        wait_for("a new hub pod", lambda: hub_pod(kube).metadata.name != old_pod, timeout=300)
        after = secret_data(kube, CHART_SECRET)
        assert {k: after[k] for k in TOKENS} == {k: before[k] for k in TOKENS}
        assert env_digest(kube, "JPY_COOKIE_SECRET") == sha(before["hub.cookie-secret"])
        wait_for("hub API with the token issued before the upgrade", lambda: hub_answers(hub), timeout=120)
    finally:
        helm_install()


def service_answers(token: str) -> bool:
    r = requests.get(f"{HUB_URL}/hub/api/user", headers={"Authorization": f"token {token}"}, timeout=30)
    return r.status_code == 200 and r.json().get("name") == SERVICE


def test_existing_secret_set_up_as_the_guide_says_is_used_and_kept(kube: client.CoreV1Api, hub: Hub) -> None:
    apps = client.AppsV1Api()
    # The guide's migration: copy the generated tokens into the operator's Secret and
    # upgrade with hub.existingSecret (its namespace is ours here).
    script = guide_block(f"from={CHART_SECRET}").replace("ns=jupyter;", f"ns={NAMESPACE};", 1)
    env = {**os.environ, "PATH": f"{os.path.dirname(HELM)}{os.pathsep}{os.environ['PATH']}"}
    env.setdefault("KUBECONFIG", str(STATE / "kubeconfig"))
    generated = secret_data(kube, CHART_SECRET)
    try:
        # An installed hub with a service of the site's (the hub restarts for it).
        old_pod = hub_pod(kube).metadata.name
        helm_install("--set", f"hub.services.{SERVICE}.display=false")
        wait_for("a new hub pod", lambda: hub_pod(kube).metadata.name != old_pod, timeout=300)
        generated = secret_data(kube, CHART_SECRET)
        assert SERVICE_TOKEN in generated, sorted(generated)
        wait_for(
            "the service's token accepted", lambda: service_answers(generated[SERVICE_TOKEN]), timeout=120
        )
        browser = browser_login()  # signed with the generated cookie secret
        r = run_bash(script, env, timeout=900)
        assert r.returncode == 0, r.stdout + r.stderr

        def hub_on_my_secret() -> bool:
            pod = hub_pod(kube)  # exactly one Ready hub pod, else not yet
            # The operator's Secret is mounted where the hub reads its tokens (z2jh's path).
            vols = {v.name: v for v in pod.spec.volumes}
            return "existing-secret" in vols and vols["existing-secret"].secret.secret_name == MINE

        wait_for("the hub running on the operator's Secret", hub_on_my_secret, timeout=300)
        mine = secret_data(kube, MINE)
        assert {k: mine[k] for k in TOKENS} == {k: generated[k] for k in TOKENS}
        assert mine[SERVICE_TOKEN] == generated[SERVICE_TOKEN]
        dep = apps.read_namespaced_deployment(f"{RELEASE}-proxy", NAMESPACE)
        refs = {
            e.name: (e.value_from.secret_key_ref.name, e.value_from.secret_key_ref.key)
            for c in dep.spec.template.spec.containers
            for e in c.env or []
            if e.value_from and e.value_from.secret_key_ref
        }
        assert refs["HPCHUB_PROXY_TOKEN"] == (MINE, "proxy.token"), refs
        # The chart's own Secret no longer holds (or generates) the tokens.
        assert not set(secret_data(kube, CHART_SECRET)) & set(TOKENS)
        # The hub signs with the copied cookie secret: the browser's session survived the move.
        assert still_logged_in(browser)
        wait_for("hub API with the token issued before the move", lambda: hub_answers(hub), timeout=120)
        wait_for(
            "the service's token, unchanged", lambda: service_answers(generated[SERVICE_TOKEN]), timeout=120
        )

        # Upgrade again, the way a GitOps sync does: the operator's Secret is untouched.
        pod = hub_pod(kube).metadata.name
        helm_install("--set", f"hub.existingSecret={MINE}", "--set", f"hub.services.{SERVICE}.display=false")
        assert secret_data(kube, MINE) == mine
        assert hub_pod(kube).metadata.name == pod  # nothing changed, nothing restarted
    finally:
        # Back to the chart's generated Secret with the same values (nobody logged out).
        reinstall_with_tokens(generated)
        if MINE in {x.metadata.name for x in kube.list_namespaced_secret(NAMESPACE).items}:
            kube.delete_namespaced_secret(MINE, NAMESPACE)
    restored = secret_data(kube, CHART_SECRET)
    assert {k: restored[k] for k in TOKENS} == {k: generated[k] for k in TOKENS}
