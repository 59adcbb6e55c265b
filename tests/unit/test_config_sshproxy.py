"""The loader hands the sshproxy authenticator the CA bundle the chart mounted
(auth.sshproxy.caBundle), and refuses to start without it (issue 11 point 3)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from jupyterhub.app import JupyterHub

from hpchub.auth.sshproxy import SSHProxyAuthenticator
from hpchub.config import ConfigError
from tests.chart.helm import find
from tests.harness.tlsca import TestCA

from .test_config import configured, rendered


def values_file(tmp_path: Path, ca: str) -> str:
    p = tmp_path / "sshproxy.yaml"
    auth = {
        "type": "sshproxy",
        "sshproxy": {"url": "https://sshproxy.example.org/create_pair/default/", "caBundle": ca},
    }
    # The key service's address, for the hub's NetworkPolicy.
    idp = {"networkPolicy": {"egressAllowRules": {"identityProvider": {"cidrs": ["198.51.100.7/32"]}}}}
    p.write_text(yaml.safe_dump({"auth": auth, "hub": idp}))
    return str(p)


def test_authenticator_reads_the_bundle_the_chart_mounts(tmp_path: Path) -> None:
    pem = TestCA("site CA").pem
    extra = values_file(tmp_path, pem)
    # Stand in for the kubelet: the ConfigMap's key, written where the pod would see it.
    cm = find(rendered("values-minimal.yaml", files=[extra]), "ConfigMap", "site-hpchub-sshproxy-ca")
    mounted = tmp_path / "mount" / "ca.pem"
    mounted.parent.mkdir()
    mounted.write_text(cm["data"]["ca.pem"])
    c = configured("values-minimal.yaml", files=[extra], env={"HPCHUB_SSHPROXY_CA_FILE": str(mounted)})
    hub = JupyterHub(config=c)
    assert hub.authenticator_class is SSHProxyAuthenticator
    auth = SSHProxyAuthenticator(config=c)
    assert auth.ca_bundle == str(mounted)
    assert auth._request("bob", "pw", "123456").ca_certs == str(mounted)


def test_hub_refuses_to_start_when_the_bundle_is_not_mounted(tmp_path: Path) -> None:
    extra = values_file(tmp_path, TestCA().pem)
    with pytest.raises(ConfigError, match="auth.sshproxy.caBundle: the bundle is not mounted"):
        configured(
            "values-minimal.yaml", files=[extra], env={"HPCHUB_SSHPROXY_CA_FILE": str(tmp_path / "nope")}
        )
