"""GitOps (Argo CD, Flux): `helm template` without cluster access must render the same
manifests every time, and every token the hub and proxy use can come from a Secret the
operator manages (hub.existingSecret)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from .helm import CONFIG, HELM, ROOT, find, guide_block, helm, render, render_error, run_bash, template_args

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


def test_existing_secret_feeds_every_hub_and_proxy_token() -> None:
    docs = render([DEV], GITOPS)
    refs = _secret_refs(docs)
    mine = {
        "t-hpchub-hub/JPY_COOKIE_SECRET": "hub.cookie-secret",
        "t-hpchub-hub/JUPYTERHUB_CRYPT_KEY": "hub.crypt-key",
        "t-hpchub-hub/CONFIGPROXY_AUTH_TOKEN": "proxy.token",
        "t-hpchub-hub/HPCHUB_UNINSTALL_TOKEN": "hub.uninstall-token",
        "t-hpchub-proxy/CONFIGPROXY_AUTH_TOKEN": "proxy.token",
        "t-hpchub-stop-servers/HPCHUB_UNINSTALL_TOKEN": "hub.uninstall-token",
    }
    for where, key in mine.items():
        assert refs[where] == {"name": "site-hub-tokens", "key": key}, where
    # Prometheus' token: read from that Secret too, but a Secret without it still starts the hub.
    assert refs["t-hpchub-hub/HPCHUB_METRICS_TOKEN"] == {
        "name": "site-hub-tokens",
        "key": "hub.metrics-token",
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
    from .helm import ROOT

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


# --- The guide's move to hub.existingSecret, run as written ---------------------------------
# kubectl needs an API server: a stand-in on loopback that holds the chart's Secret as
# `helm template` renders it and keeps what kubectl creates. Real kubectl (its jsonpath,
# go-template and request encoding), real bash, real helm; the same commands run against the
# kind cluster in tests/e2e/test_60_gitops_secrets.py.
KUBECTL = shutil.which("kubectl", path=f"{ROOT / '.tools/bin'}{os.pathsep}{os.environ.get('PATH', '')}")


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if b < 0x80:
            return value, i


def _fields(buf: bytes) -> Iterator[tuple[int, Any]]:
    """(field number, value) of a protobuf message (varint and length-delimited fields)."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        if key & 7 == 0:
            value, i = _varint(buf, i)
        elif key & 7 == 2:
            n, i = _varint(buf, i)
            value, i = buf[i : i + n], i + n
        else:
            raise ValueError(f"protobuf wire type {key & 7}")
        yield key >> 3, value


def secret_from_protobuf(body: bytes) -> dict[str, Any]:
    """kubectl sends core objects as Kubernetes protobuf: "k8s\\0" + runtime.Unknown, whose
    field 2 is the v1.Secret (1: metadata, with 1: name; 2: data, entries of 1: key, 2: value)."""
    assert body[:4] == b"k8s\0", body[:20]
    raw = dict(_fields(body[4:]))[2]
    name, data = "", {}
    for field, value in _fields(raw):
        if field == 1:
            name = dict(_fields(value))[1].decode()
        elif field == 2:
            entry = dict(_fields(value))
            data[entry[1].decode()] = base64.b64encode(entry.get(2, b"")).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "jupyter"},
        "data": data,
    }


class StandInAPIServer(ThreadingHTTPServer):
    """Secrets of namespace "jupyter" by name: GET reads, POST creates (409 if present)."""

    def __init__(self, secrets: dict[str, dict[str, Any]]) -> None:
        self.secrets = secrets
        super().__init__(("127.0.0.1", 0), _APIHandler)


class _APIHandler(BaseHTTPRequestHandler):
    server: StandInAPIServer
    DISCOVERY = {
        "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
        "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
        "/api/v1": {
            "kind": "APIResourceList",
            "groupVersion": "v1",
            "resources": [
                {
                    "name": "secrets",
                    "singularName": "secret",
                    "namespaced": True,
                    "kind": "Secret",
                    "verbs": ["create", "get"],
                }
            ],
        },
    }

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, code: int, obj: dict[str, Any]) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _not_found(self) -> None:
        self._answer(
            404,
            {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404},
        )

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        prefix = "/api/v1/namespaces/jupyter/secrets/"
        if path in self.DISCOVERY:
            self._answer(200, self.DISCOVERY[path])
        elif path.startswith(prefix) and path[len(prefix) :] in self.server.secrets:
            self._answer(200, self.server.secrets[path[len(prefix) :]])
        else:
            self._not_found()

    def do_POST(self) -> None:
        if self.path.split("?")[0] != "/api/v1/namespaces/jupyter/secrets":
            return self._not_found()
        secret = secret_from_protobuf(self.rfile.read(int(self.headers["Content-Length"])))
        if secret["metadata"]["name"] in self.server.secrets:
            return self._answer(409, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 409})
        self.server.secrets[secret["metadata"]["name"]] = secret
        self._answer(201, secret)


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
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}
                    ],
                    "users": [{"name": "u", "user": {}}],
                    "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                    "current-context": "c",
                }
            )
        )
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
    # Every key the upgraded chart reads from the operator's Secret is there (a missing one
    # leaves the hub in CreateContainerConfigError), with the value the chart generated:
    # nobody is logged out, no service's token changes.
    wanted = {
        (ref["key"], bool(ref.get("optional")))
        for ref in _secret_refs(upgraded).values()
        if ref["name"] == "hpchub-tokens"
    }
    assert ("hub.services.site-svc.apiToken", False) in wanted
    for key, _optional in wanted:
        assert key in mine, f"the guide's commands leave {key} out of hpchub-tokens"
        assert mine[key] == generated[key], key
    # And nothing else: the chart keeps reading its other keys (a dev password) from its own Secret.
    assert set(mine) == {key for key, _ in wanted}
