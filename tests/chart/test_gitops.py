"""GitOps (Argo CD, Flux): `helm template` without cluster access must render the same
manifests every time, and every token the hub and proxy use can come from a Secret the
operator manages (hub.existingSecret)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import yaml

from .helm import CONFIG, HELM, ROOT, find, guide_block, helm, render, render_error, run_bash, template_args
from .standin_api import KUBECTL, StandInAPIServer, kubeconfig_for

DEV = CONFIG / "values-dev.yaml"
GITOPS = ["hub.existingSecret=site-hub-tokens", "sshCA.existingSecret=site-ssh-ca", "sshCA.privateKey="]


def _secret_refs(docs: list[dict]) -> dict[str, dict[str, str]]:
    """container/env name -> secretKeyRef, over every pod template."""
    refs = {}
    for d in docs:
        spec = (d.get("spec") or {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []):
            for e in c.get("env", []):
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    refs[f"{d['metadata']['name']}/{e['name']}"] = ref
    return refs


def _existing_secret_mount(docs: list[dict], name: str) -> tuple[dict, dict] | None:
    """(volume, mount) of the operator's Secret in a workload's pod, at z2jh's path."""
    d = next(d for d in docs if d["kind"] in ("Deployment", "Job") and d["metadata"]["name"] == name)
    spec = d["spec"]["template"]["spec"]
    vol = next((v for v in spec.get("volumes", []) if v["name"] == "existing-secret"), None)
    mount = next(
        (m for c in spec["containers"] for m in c.get("volumeMounts", []) if m["name"] == "existing-secret"),
        None,
    )
    return (vol, mount) if vol else None


def test_existing_secret_feeds_every_hub_and_proxy_token() -> None:
    docs = render([DEV], GITOPS)
    # The hub and the uninstall hook read the operator's Secret as files, at z2jh's path
    # (hpchub's key names or z2jh's; tests/unit/test_hubsecrets.py), owner-read only.
    for workload in ("t-hpchub-hub", "t-hpchub-stop-servers"):
        vol, mount = _existing_secret_mount(docs, workload)
        assert vol["secret"] == {"secretName": "site-hub-tokens", "defaultMode": 0o400}, workload
        assert mount == {
            "name": "existing-secret",
            "mountPath": "/usr/local/etc/jupyterhub/existing-secret",
            "readOnly": True,
        }
    refs = _secret_refs(docs)
    # No token reaches them from the chart's Secret, which holds none (the dev login's
    # password is values, not a token).
    assert {k for k in refs if k.startswith(("t-hpchub-hub/", "t-hpchub-stop-servers/"))} == {
        "t-hpchub-hub/HPCHUB_DUMMY_PASSWORD"
    }
    # The proxy takes its token under either name (optional each; its start-up picks one).
    assert refs["t-hpchub-proxy/HPCHUB_PROXY_TOKEN"] == {
        "name": "site-hub-tokens",
        "key": "proxy.token",
        "optional": True,
    }
    assert refs["t-hpchub-proxy/HPCHUB_Z2JH_PROXY_TOKEN"] == {
        "name": "site-hub-tokens",
        "key": "hub.config.ConfigurableHTTPProxy.auth_token",
        "optional": True,
    }
    # The chart generates none of them.
    data = find(docs, "Secret", "t-hpchub-hub-secret").get("data") or {}
    assert not set(data) & {
        "hub.cookie-secret",
        "hub.crypt-key",
        "proxy.token",
        "hub.uninstall-token",
        "hub.metrics-token",
    }


def test_without_existing_secret_nothing_is_mounted() -> None:
    docs = render([DEV])
    assert _existing_secret_mount(docs, "t-hpchub-hub") is None
    refs = _secret_refs(docs)
    assert refs["t-hpchub-hub/JPY_COOKIE_SECRET"] == {
        "name": "t-hpchub-hub-secret",
        "key": "hub.cookie-secret",
    }
    assert refs["t-hpchub-proxy/CONFIGPROXY_AUTH_TOKEN"] == {
        "name": "t-hpchub-hub-secret",
        "key": "proxy.token",
    }


def test_gitops_rendering_is_identical_every_time() -> None:
    # Argo CD renders with `helm template` (no lookup): nothing random may appear, or every
    # sync would rotate tokens and restart the hub.
    first = helm(*template_args([DEV], GITOPS)).stdout
    second = helm(*template_args([DEV], GITOPS)).stdout
    assert first == second


def test_without_existing_secret_template_rendering_would_churn() -> None:
    # The control: with generated secrets and no cluster to look them up, two renders differ,
    # which is why hub.existingSecret (or explicit values) is needed under GitOps.
    first = helm(*template_args([DEV])).stdout
    second = helm(*template_args([DEV])).stdout
    assert first != second


def test_existing_secret_with_explicit_tokens_is_refused() -> None:
    err = render_error([DEV], ["hub.existingSecret=site-hub-tokens", "proxy.secretToken=" + "a" * 64])
    assert "proxy.secretToken: set together with hub.existingSecret (site-hub-tokens)" in err


def test_existing_secret_name_must_be_a_kubernetes_name() -> None:
    err = render_error([DEV], ["hub.existingSecret=Not_A_Name"])
    assert "/hub/existingSecret" in err


def test_gitops_render_is_valid_kubernetes() -> None:
    import kubernetes_validate

    for doc in render([CONFIG / "values-nersc-example.yaml"], ["hub.existingSecret=site-hub-tokens"]):
        kubernetes_validate.validate(doc, "1.34.0", strict=True)


def test_operator_guide_lists_every_token_key_of_the_chart_secret() -> None:
    # The keys an operator must put in hub.existingSecret are the ones the chart generates.

    guide = (ROOT / "docs/operator-guide.md").read_text()
    data = find(render([DEV]), "Secret", "t-hpchub-hub-secret")["data"]
    generated = {k for k in data if k.startswith(("hub.", "proxy."))}
    assert generated == {
        "hub.cookie-secret",
        "hub.crypt-key",
        "proxy.token",
        "hub.uninstall-token",
        "hub.metrics-token",
    }
    for key in generated:
        assert f"| `{key}` |" in guide, key


def test_the_proxy_takes_its_token_under_either_name_and_never_on_its_command_line(tmp_path) -> None:
    # The rendered start-up of the proxy container, run by a real sh with a stand-in for
    # configurable-http-proxy that prints its environment's token and its arguments.
    import os
    import subprocess

    (c,) = find(render([DEV], GITOPS), "Deployment", "t-hpchub-proxy")["spec"]["template"]["spec"][
        "containers"
    ]
    fake = tmp_path / "configurable-http-proxy"
    fake.write_text(
        '#!/bin/sh\necho "token=$CONFIGPROXY_AUTH_TOKEN args=$*"; env | grep -c HPCHUB_ || true\n'
    )
    fake.chmod(0o755)
    path = f"{tmp_path}{os.pathsep}{os.environ['PATH']}"

    def start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            c["command"], env={"PATH": path, **env}, capture_output=True, text=True, timeout=30
        )

    z2jh = start({"HPCHUB_Z2JH_PROXY_TOKEN": "z" * 64})
    assert z2jh.returncode == 0 and z2jh.stdout.startswith("token=" + "z" * 64 + " args=--ip= ")
    assert z2jh.stdout.splitlines()[1] == "0"  # the variables it came in are gone
    both = start({"HPCHUB_PROXY_TOKEN": "h" * 64, "HPCHUB_Z2JH_PROXY_TOKEN": "z" * 64})
    assert both.stdout.startswith("token=" + "h" * 64)  # hpchub's name first, as in the hub
    assert all("h" * 64 not in a and "z" * 64 not in a for a in c["command"])
    missing = start({})
    assert missing.returncode == 1 and missing.stdout == ""
    assert (
        "hub.existingSecret (site-hub-tokens): no key proxy.token (or z2jh's name "
        "hub.config.ConfigurableHTTPProxy.auth_token); add it: kubectl patch secret site-hub-tokens -p"
    ) in missing.stderr


# --- The guide's move to hub.existingSecret, run as written ---------------------------------
# kubectl needs an API server: a stand-in on loopback that holds the chart's Secret as
# `helm template` renders it and keeps what kubectl creates. Real kubectl (its jsonpath,
# go-template and request encoding), real bash, real helm; the same commands run against the
# kind cluster in tests/e2e/test_60_gitops_secrets.py.
# `helm upgrade --reuse-values` against the stand-in: rendered instead, with the values the
# release was installed with, into $RENDERED.
HELM_AS_TEMPLATE = """#!/bin/bash
[ "$1" = upgrade ] || { echo "only helm upgrade is expected here: $*" >&2; exit 64; }
shift
args=()
for a in "$@"; do
  if [ "$a" = --reuse-values ]; then args+=(-f "$INSTALLED_VALUES"); else args+=("$a"); fi
done
exec "$REAL_HELM" template "${args[@]}" > "$RENDERED"
"""


def run_migration(script: str, tmp_path: Path) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]], str]:
    """Install (render) the chart with a hub.services entry, run ``script`` as the guide
    says; (the stand-in's Secrets, the chart rendered by the snippet's helm upgrade, bash's output)."""
    assert KUBECTL, "kubectl not found: run hack/install-deps.sh"
    installed = tmp_path / "installed.yaml"
    values = yaml.safe_load((CONFIG / "values-dev.yaml").read_text())
    values["hub"]["services"] = {"site-svc": {"url": "http://site-svc.example.org:8000"}}
    installed.write_text(yaml.safe_dump(values))
    docs = render([installed], release="hpchub", namespace="jupyter")
    chart_secret = find(docs, "Secret", "hpchub-hub-secret")
    server = StandInAPIServer({"hpchub-hub-secret": chart_secret})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        kubeconfig = kubeconfig_for(server, tmp_path / "kubeconfig")
        bindir = tmp_path / "bin"
        bindir.mkdir()
        (bindir / "helm").write_text(HELM_AS_TEMPLATE)
        (bindir / "helm").chmod(0o755)
        (bindir / "kubectl").symlink_to(KUBECTL)
        env = {
            "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(tmp_path),
            "KUBECONFIG": str(kubeconfig),
            "REAL_HELM": str(HELM),
            "INSTALLED_VALUES": str(installed),
            "RENDERED": str(tmp_path / "rendered.yaml"),
        }
        r = run_bash(script, env, timeout=120)
    finally:
        server.shutdown()
        server.server_close()
    assert r.returncode == 0, r.stdout + r.stderr
    rendered = [d for d in yaml.safe_load_all((tmp_path / "rendered.yaml").read_text()) if d]
    return server.secrets, rendered, r.stdout + r.stderr


def test_the_guides_move_to_an_existing_secret_copies_every_token_the_hub_reads(tmp_path: Path) -> None:
    secrets, upgraded, _ = run_migration(guide_block("from=hpchub-hub-secret"), tmp_path)
    mine = secrets["hpchub-tokens"]["data"]
    generated = secrets["hpchub-hub-secret"]["data"]
    # Every key the upgraded chart reads from the operator's Secret is there, with the value
    # the chart generated (nobody is logged out, no service's token changes): the proxy's
    # secretKeyRefs, and what the hub reads from the Secret mounted at z2jh's path.
    refs = {
        ref["key"]
        for ref in _secret_refs(upgraded).values()
        if ref["name"] == "hpchub-tokens" and not ref.get("optional")
    }
    hub_reads = {"hub.cookie-secret", "hub.crypt-key", "proxy.token", "hub.services.site-svc.apiToken"}
    assert _existing_secret_mount(upgraded, "hpchub-hub") is not None
    for key in refs | hub_reads:
        assert key in mine, f"the guide's commands leave {key} out of hpchub-tokens"
        assert mine[key] == generated[key], key
