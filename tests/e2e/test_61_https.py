"""proxy.https on the real cluster: the console is served over HTTPS with a certificate
from a CA the test makes (in a kubernetes.io/tls Secret), a client that does not trust
that CA is refused, and plain HTTP only redirects to HTTPS."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from kubernetes import client

from tests.harness.tlsca import ServerCert, make_server_cert

from .conftest import HUB_URL, NAMESPACE, PASSWORD, USER, helm_install, wait_for

TLS_SECRET = "e2e-proxy-tls"
HTTPS_NODE_PORT = 30443


def node_address(kube: client.CoreV1Api) -> str:
    (node,) = kube.list_node().items
    return next(a.address for a in node.status.addresses if a.type == "InternalIP")


@pytest.fixture(scope="module")
def https_hub(
    kube: client.CoreV1Api, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, ServerCert]]:
    address = node_address(kube)
    tls = make_server_cert(tmp_path_factory.mktemp("tls"), [address, "127.0.0.1"])
    kube.create_namespaced_secret(
        NAMESPACE,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=TLS_SECRET),
            type="kubernetes.io/tls",
            string_data={"tls.crt": tls.cert.read_text(), "tls.key": tls.key.read_text()},
        ),
    )
    try:
        helm_install(
            "--set", "proxy.https.enabled=true",
            "--set", "proxy.https.type=secret",
            "--set", f"proxy.https.secret.name={TLS_SECRET}",
            "--set", f"proxy.service.httpsNodePort={HTTPS_NODE_PORT}",
        )  # fmt: skip
        url = f"https://{address}:{HTTPS_NODE_PORT}"
        wait_for(
            "the hub over HTTPS",
            lambda: requests.get(f"{url}/hub/api", verify=tls.ca, timeout=5).ok,
            timeout=180,
        )
        yield url, tls
    finally:
        helm_install()  # back to the plain-HTTP dev install the other tests use
        kube.delete_namespaced_secret(TLS_SECRET, NAMESPACE)
        wait_for(
            "the hub over plain HTTP again",
            lambda: requests.get(f"{HUB_URL}/hub/api", timeout=5).ok,
            timeout=180,
        )


def test_console_is_served_over_https_with_the_test_cas_certificate(
    https_hub: tuple[str, ServerCert],
) -> None:
    url, tls = https_hub
    s = requests.Session()
    # verify on each request: requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE from the
    # environment override a Session's own verify (psf/requests#3829).
    r = s.get(f"{url}/hub/login", verify=str(tls.ca), timeout=30)
    assert r.status_code == 200 and 'name="password"' in r.text
    r = s.post(
        f"{url}/hub/login",
        data={"username": USER, "password": PASSWORD, "_xsrf": s.cookies.get("_xsrf", "")},
        verify=str(tls.ca),
        timeout=30,
    )
    assert r.status_code == 200, r.text[:300]
    assert r.url.startswith(f"{url}/") and r.url.endswith("/hub/home"), r.url
    # The console itself, drawn for this user.
    assert re.search(r"Mini HPC", r.text) and "Spin" in r.text
    # Cookies set over HTTPS are Secure: the browser never sends them over plain HTTP.
    assert all(c.secure for c in s.cookies if c.name.startswith("jupyterhub"))


def test_client_without_the_ca_refuses_the_server(https_hub: tuple[str, ServerCert], tmp_path: Path) -> None:
    url, _tls = https_hub
    other = make_server_cert(tmp_path, ["127.0.0.1"], ca_name="another CA")
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{url}/hub/login", verify=other.ca, timeout=30)


def test_plain_http_redirects_to_https(https_hub: tuple[str, ServerCert]) -> None:
    r = requests.get(f"{HUB_URL}/hub/login", allow_redirects=False, timeout=30)
    assert r.status_code == 301
    assert r.headers["Location"] == f"https://127.0.0.1:{HTTPS_NODE_PORT}/hub/login"
