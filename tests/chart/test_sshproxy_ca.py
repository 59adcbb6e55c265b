"""auth.sshproxy.caBundle is PEM text in values; the chart mounts it as a file for the hub
(issue 11 point 3). The loader's side and a real JupyterHub config are in
tests/unit/test_config_sshproxy.py; the TLS key service itself in tests/unit/test_auth_sshproxy.py
and tests/browser/test_console_hpc.py."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import yaml

from tests.harness.tlsca import TestCA

from .helm import CONFIG, find, helm, render, render_error, template_args

MINIMAL = CONFIG / "values-minimal.yaml"


def sshproxy_values(
    tmp_path: Path, url: str = "https://sshproxy.example.org/create_pair/default/", **extra
) -> Path:
    p = tmp_path / "sshproxy.yaml"
    # The key service's address, for the hub's NetworkPolicy (identityProvider).
    idp = {"networkPolicy": {"egressAllowRules": {"identityProvider": {"cidrs": ["198.51.100.7/32"]}}}}
    p.write_text(
        yaml.safe_dump({"auth": {"type": "sshproxy", "sshproxy": {"url": url, **extra}}, "hub": idp})
    )
    return p


def hub_pod(docs: list[dict]) -> dict:
    return find(docs, "Deployment", "t-hpchub-hub")["spec"]["template"]["spec"]


def test_ca_bundle_is_mounted_where_the_hub_is_told_to_read_it(tmp_path: Path) -> None:
    pem = TestCA("site CA").pem + TestCA("next site CA").pem  # a bundle: rollover of the CA
    bundle = tmp_path / "site-ca.pem"
    bundle.write_text(pem)
    # As the operator guide says: --set-file auth.sshproxy.caBundle=site-ca.pem
    args = template_args([MINIMAL, sshproxy_values(tmp_path)]) + [
        "--set-file",
        f"auth.sshproxy.caBundle={bundle}",
    ]
    docs = [d for d in yaml.safe_load_all(helm(*args).stdout) if d]
    cm = find(docs, "ConfigMap", "t-hpchub-sshproxy-ca")
    assert cm["data"]["ca.pem"].strip() == pem.strip()
    pod = hub_pod(docs)
    [hub] = [c for c in pod["containers"] if c["name"] == "hub"]
    env = {e["name"]: e.get("value") for e in hub["env"]}
    mount = next(m for m in hub["volumeMounts"] if m["name"] == "sshproxy-ca")
    volume = next(v for v in pod["volumes"] if v["name"] == "sshproxy-ca")
    assert volume["configMap"] == {
        "name": "t-hpchub-sshproxy-ca",
        "items": [{"key": "ca.pem", "path": "ca.pem"}],
    }
    assert mount["readOnly"] is True
    assert env["HPCHUB_SSHPROXY_CA_FILE"] == mount["mountPath"] + "/ca.pem"
    for doc in docs:
        kubernetes_validate.validate(doc, "1.34.0", strict=True)


def test_without_a_bundle_nothing_is_mounted(tmp_path: Path) -> None:
    docs = render([MINIMAL, sshproxy_values(tmp_path)])
    assert not [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("sshproxy-ca")]
    [hub] = [c for c in hub_pod(docs)["containers"] if c["name"] == "hub"]
    assert "HPCHUB_SSHPROXY_CA_FILE" not in {e["name"] for e in hub["env"]}


def test_a_file_path_where_the_pem_belongs_is_refused_saying_what_to_write(tmp_path: Path) -> None:
    # What the old description invited: a path on the operator's machine.
    err = render_error([MINIMAL, sshproxy_values(tmp_path, caBundle="/etc/ssl/certs/site-ca.pem")])
    assert "auth.sshproxy.caBundle" in err and "--set-file auth.sshproxy.caBundle=" in err


def test_plain_http_key_service_is_refused(tmp_path: Path) -> None:
    err = render_error(
        [MINIMAL, sshproxy_values(tmp_path, url="http://sshproxy.example.org/create_pair/default/")]
    )
    assert "auth.sshproxy.url" in err and "https://" in err
