"""proxy.https: TLS at the proxy from a Secret (type secret) or at a load balancer in front
(type offload); Ingress TLS stays as it was; NOTES warns when users would reach the hub over
plain HTTP. The TLS itself is exercised with real CHP in tests/integration/test_proxy_https.py
and on kind in tests/e2e/test_61_https.py."""

from __future__ import annotations

import kubernetes_validate
import pytest

from .helm import CHART, CONFIG, find, helm, render, render_error

DEV = CONFIG / "values-dev.yaml"
SECRET = [
    "proxy.https.enabled=true",
    "proxy.https.secret.name=site-tls",
    "proxy.service.httpsNodePort=30443",
]
OFFLOAD = ["proxy.https.enabled=true", "proxy.https.type=offload", "proxy.service.type=LoadBalancer"]


def _proxy(docs: list[dict]) -> tuple[dict, dict]:
    pod = find(docs, "Deployment", "t-hpchub-proxy")["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def test_secret_mode_terminates_tls_in_the_proxy_with_the_secrets_key_and_certificate() -> None:
    docs = render([DEV], SECRET)
    pod, chp = _proxy(docs)
    assert "--port=8443" in chp["command"]
    assert "--ssl-key=/etc/chp/tls/tls.key" in chp["command"]
    assert "--ssl-cert=/etc/chp/tls/tls.crt" in chp["command"]
    assert "--redirect-port=8000" in chp["command"] and "--redirect-to=30443" in chp["command"]
    assert {"name": "tls", "mountPath": "/etc/chp/tls", "readOnly": True} in chp["volumeMounts"]
    (vol,) = pod["volumes"]
    assert vol["secret"]["secretName"] == "site-tls"
    assert vol["secret"]["defaultMode"] == 0o400
    assert chp["readinessProbe"]["httpGet"] == {"path": "/_chp_healthz", "port": "https", "scheme": "HTTPS"}
    svc = find(docs, "Service", "t-hpchub-proxy-public")
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert ports["https"] == {"name": "https", "port": 443, "targetPort": "https", "nodePort": 30443}
    assert ports["http"]["nodePort"] == 30080  # redirects only
    ingress = find(docs, "NetworkPolicy", "t-hpchub-proxy")["spec"]["ingress"][0]
    assert ingress == {"ports": [{"port": "http"}, {"port": "https"}]}


def test_custom_key_names_and_no_http_port() -> None:
    docs = render(
        [DEV],
        [
            *SECRET,
            "proxy.https.secret.key=key.pem",
            "proxy.https.secret.crt=chain.pem",
            "proxy.service.disableHttpPort=true",
        ],
    )
    pod, chp = _proxy(docs)
    assert "--ssl-cert=/etc/chp/tls/chain.pem" in chp["command"]
    assert [i["key"] for i in pod["volumes"][0]["secret"]["items"]] == ["key.pem", "chain.pem"]
    svc = find(docs, "Service", "t-hpchub-proxy-public")
    assert [p["name"] for p in svc["spec"]["ports"]] == ["https"]


def test_offload_mode_sends_the_https_port_to_plain_http() -> None:
    docs = render([DEV], OFFLOAD)
    pod, chp = _proxy(docs)
    assert "--port=8000" in chp["command"]
    assert not [a for a in chp["command"] if a.startswith("--ssl")]
    assert "volumes" not in pod
    svc = find(docs, "Service", "t-hpchub-proxy-public")
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert ports["https"]["targetPort"] == "http" and ports["https"]["port"] == 443


@pytest.mark.parametrize("sets", [SECRET, OFFLOAD, [*SECRET, "proxy.service.disableHttpPort=true"]])
def test_https_renders_valid_kubernetes_objects(sets: list[str]) -> None:
    for doc in render([DEV], sets):
        kubernetes_validate.validate(doc, "1.34.0", strict=True)


def test_https_without_plain_http_defaults_is_unchanged() -> None:
    pod, chp = _proxy(render([DEV]))
    assert "--port=8000" in chp["command"] and "volumes" not in pod


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            ["proxy.https.enabled=true", "proxy.service.httpsNodePort=30443"],
            "proxy.https.secret.name: required",
        ),
        (["proxy.https.enabled=true", "proxy.https.secret.name=x"], "proxy.service.httpsNodePort: required"),
        (["proxy.https.enabled=true", "proxy.https.type=letsencrypt"], "/proxy/https/type"),
    ],
)
def test_incomplete_https_is_refused_naming_the_key(sets: list[str], message: str) -> None:
    assert message in render_error([DEV], sets)


def test_https_at_the_proxy_behind_an_ingress_is_refused() -> None:
    err = render_error(
        [CONFIG / "values-nersc-example.yaml"], ["proxy.https.enabled=true", "proxy.https.secret.name=x"]
    )
    assert "proxy.https.enabled: the Ingress (ingress.enabled) is the public entry point" in err


def _notes(values, sets: list[str]) -> str:
    args = ["install", "t", str(CHART), "--dry-run=client", "-f", str(values)]
    for s in sets:
        args += ["--set", s]
    return helm(*args).stdout.split("NOTES:", 1)[1]


def test_notes_warn_when_the_public_entry_point_is_plain_http() -> None:
    assert "WARNING: the public entry point serves plain HTTP" in _notes(DEV, [])
    # An Ingress without TLS is plain HTTP too.
    assert "WARNING: the public entry point serves plain HTTP" in _notes(
        CONFIG / "values-nersc-example.yaml", ["ingress.tlsSecretName="]
    )


@pytest.mark.parametrize(
    ("values", "sets", "url"),
    [
        (DEV, SECRET, "https://<any node address>:30443/"),
        (DEV, OFFLOAD, "https://<EXTERNAL-IP>/"),
        (CONFIG / "values-nersc-example.yaml", [], "https://jupyter.example.org/"),
    ],
)
def test_notes_print_an_https_url_and_no_warning_when_https_is_on(values, sets: list[str], url: str) -> None:
    notes = _notes(values, sets)
    assert url in notes
    assert "WARNING: the public entry point serves plain HTTP" not in notes
