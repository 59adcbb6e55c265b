"""proxy.https type secret, run for real: configurable-http-proxy started with exactly the
command line the chart renders (paths and ports moved to a temp dir and free loopback
ports) serves HTTPS with a certificate from a test CA, and plain HTTP only redirects."""

from __future__ import annotations

import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.chart.helm import CONFIG, find, render
from tests.harness import minihpc
from tests.harness.tlsca import make_server_cert

pytestmark = pytest.mark.integration

HTTPS_SETS = [
    "proxy.https.enabled=true",
    "proxy.https.type=secret",
    "proxy.https.secret.name=site-tls",
    "proxy.service.httpsNodePort=30443",
]


class Backend(http.server.BaseHTTPRequestHandler):
    """The default target behind the proxy: answers every path with its own name."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's API
        body = f"behind the proxy: {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    chp = shutil.which("configurable-http-proxy")
    assert chp, "configurable-http-proxy not found (hack/install-deps.sh installs it)"
    work = tmp_path_factory.mktemp("chp")
    tls = make_server_cert(work / "tls", ["localhost", "127.0.0.1"])
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    ports = {"https": minihpc.free_port(), "http": minihpc.free_port(), "api": minihpc.free_port()}

    docs = render([CONFIG / "values-dev.yaml"], HTTPS_SETS)
    (c,) = find(docs, "Deployment", "t-hpchub-proxy")["spec"]["template"]["spec"]["containers"]
    argv = []
    for a in c["command"]:
        a = a.replace("/etc/chp/tls/", f"{tls.cert.parent}/")
        a = {
            "--ip=": "--ip=127.0.0.1",
            "--api-ip=": "--api-ip=127.0.0.1",
            "--port=8443": f"--port={ports['https']}",
            "--redirect-port=8000": f"--redirect-port={ports['http']}",
            "--api-port=8001": f"--api-port={ports['api']}",
        }.get(a, a)
        if a.startswith("--default-target="):
            a = f"--default-target=http://127.0.0.1:{backend.server_port}"
        argv.append(a)
    assert argv[0] == "configurable-http-proxy"
    proc = minihpc.Proc(
        "chp", [chp, *argv[1:]], work, env={"CONFIGPROXY_AUTH_TOKEN": "t" * 32, "PATH": "/usr/bin:/bin"}
    )
    proc.start()
    try:
        minihpc.wait_for(
            lambda: minihpc.port_open(ports["https"]) and minihpc.port_open(ports["http"]), 30, "CHP"
        )
        yield {"ports": ports, "tls": tls, "argv": argv}
    finally:
        proc.stop()
        backend.shutdown()


def test_console_path_is_served_over_https_with_the_secrets_certificate(proxy: dict) -> None:
    r = requests.get(
        f"https://127.0.0.1:{proxy['ports']['https']}/hub/login", verify=proxy["tls"].ca, timeout=10
    )
    assert r.status_code == 200
    assert r.text == "behind the proxy: /hub/login"
    # The probe the chart gives Kubernetes answers over HTTPS.
    r = requests.get(
        f"https://localhost:{proxy['ports']['https']}/_chp_healthz", verify=proxy["tls"].ca, timeout=10
    )
    assert r.status_code == 200


def test_a_client_that_does_not_trust_the_ca_refuses_the_connection(proxy: dict, tmp_path: Path) -> None:
    # The control: TLS is really checked (another CA's client does not accept the server).
    other = make_server_cert(tmp_path / "other", ["127.0.0.1"], ca_name="another CA")
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://127.0.0.1:{proxy['ports']['https']}/hub/login", verify=other.ca, timeout=10)


def test_plain_http_only_redirects_to_the_https_node_port(proxy: dict) -> None:
    r = requests.get(
        f"http://127.0.0.1:{proxy['ports']['http']}/hub/login?next=x", allow_redirects=False, timeout=10
    )
    assert r.status_code == 301
    assert r.headers["Location"] == "https://127.0.0.1:30443/hub/login?next=x"
    assert "behind the proxy" not in r.text
