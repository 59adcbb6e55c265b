"""The operator guide's "site-secrets" block, run as written (real bash, kubectl and
ssh-keygen) against a stand-in API server: it makes the two Secrets
config/values-nersc-example.yaml names, under the keys the chart reads, with a CA key the
hub can sign certificates with, and leaves no copy of that key on disk."""

from __future__ import annotations

import base64
import os
import threading
from pathlib import Path

from hpchub.sshca import SSHCertificateAuthority

from .helm import CONFIG, find, guide_block, render, run_bash
from .standin_api import KUBECTL, StandInAPIServer, kubeconfig_for

CLIENT_SECRET = "the-identity-providers-client-secret"


def test_the_guides_site_secrets_are_the_ones_the_example_reads(tmp_path: Path) -> None:
    assert KUBECTL, "kubectl not found: run hack/install-deps.sh"
    work = tmp_path / "work"
    work.mkdir()
    server = StandInAPIServer({})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {
            "PATH": f"{Path(KUBECTL).parent}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(tmp_path),
            "KUBECONFIG": str(kubeconfig_for(server, tmp_path / "kubeconfig")),
            "OAUTH_CLIENT_SECRET": CLIENT_SECRET,
        }
        r = run_bash(f"cd {work}\n" + guide_block("site-secrets"), env, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    assert r.returncode == 0, r.stdout + r.stderr
    assert server.namespaces == ["jupyter"]
    data = {name: s["data"] for name, s in server.secrets.items()}
    assert set(data) == {"hpchub-oauth-client", "hpchub-ssh-ca"}, data
    assert base64.b64decode(data["hpchub-oauth-client"]["client-secret"]).decode() == CLIENT_SECRET
    assert list(work.iterdir()) == [], "a copy of the CA key is left on disk"
    # The hub reads that key and signs with it.
    ca_file = tmp_path / "ca"
    ca_file.write_bytes(base64.b64decode(data["hpchub-ssh-ca"]["ca"]))
    creds = SSHCertificateAuthority(ca_file).sign("alice")
    assert creds.certificate is not None and creds.certificate.principals == ["alice"]

    # The example's hub reads exactly these Secrets and keys.
    docs = render([CONFIG / "values-nersc-example.yaml"])
    hub = find(docs, "Deployment", "t-hpchub-hub")["spec"]["template"]["spec"]
    env_refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for c in hub["containers"]
        for e in c.get("env", [])
        if "secretKeyRef" in (e.get("valueFrom") or {})
    }
    assert env_refs["HPCHUB_OAUTH_CLIENT_SECRET"] == {"name": "hpchub-oauth-client", "key": "client-secret"}
    (ca_volume,) = [v for v in hub["volumes"] if v["name"] == "ssh-ca"]
    assert ca_volume["secret"]["secretName"] == "hpchub-ssh-ca"
    assert [i["key"] for i in ca_volume["secret"]["items"]] == ["ca"]
