"""A real JupyterHub behind a real configurable-http-proxy, configured from what the chart
renders for an operator's extension points (helm template), with the files the kubelet would
mount put in place: hub.config, hub.extraConfig (in order), hub.extraEnv, hub.extraFiles,
hub.services with their tokens, hub.loadRoles, and a console.templates login page that
extends hpchub's."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from hpchub.extensions import service_token_env
from tests.chart.helm import CONFIG, find, render
from tests.harness import minihpc
from tests.unit.test_config import hub_env

pytestmark = pytest.mark.integration

BANNER = (
    "import os\n"
    "motd = open(os.environ['SITE_MOTD_FILE']).read().strip()\n"
    "c.JupyterHub.template_vars['site_banner'] = ' '.join(c.JupyterHub.template_vars['site_order'] + [os.environ['SITE_MOTD'], motd])\n"
)


def site_values(motd_file: Path) -> dict[str, Any]:
    return {
        "hub": {
            "config": {"Authenticator": {"admin_users": ["hpcbob"]}},
            "extraConfig": {
                "10-first": "c.JupyterHub.template_vars['site_order'] = ['10']",
                "20-second": "c.JupyterHub.template_vars['site_order'].append('20')",
                "30-banner": BANNER,
            },
            "extraEnv": {"SITE_MOTD": "hello-from-extraEnv", "SITE_MOTD_FILE": str(motd_file)},
            "extraFiles": {"motd": {"mountPath": str(motd_file), "stringData": "welcome-from-extraFiles\n"}},
            "services": {"stats": {"display": False}},
            "loadRoles": {"stats-reader": {"scopes": ["list:users"], "services": ["stats"]}},
        },
        "console": {
            "templates": {
                "login.html": (
                    '{% extends "hpchub/login.html" %}\n'
                    '{% block main %}<p id="site-banner">{{ site_banner }}</p>{{ super() }}{% endblock main %}\n'
                )
            }
        },
    }


class SiteHub(minihpc.Hub):
    """The harness hub with the container environment the chart gives the hub pod."""

    chart_env: dict[str, str] = {}

    def env(self) -> dict[str, str]:
        mine = {
            k: v
            for k, v in self.chart_env.items()
            if k.startswith(("HPCHUB_SERVICE_TOKEN_", "SITE_")) or k == "HPCHUB_TEMPLATES_DIR"
        }
        return {**super().env(), **mine}


@pytest.fixture(scope="module")
def site_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiteHub]:
    work = tmp_path_factory.mktemp("site-hub")
    motd = work / "mnt" / "site" / "motd.txt"
    extra = work / "site.yaml"
    extra.write_text(yaml.safe_dump(site_values(motd)))
    docs = render([CONFIG / "values-minimal.yaml", extra], release="site", namespace="jupyter")
    values = yaml.safe_load(
        base64.b64decode(find(docs, "Secret", "site-hpchub-hub-config")["data"]["values.yaml"])
    )
    env = hub_env(docs)
    # What the kubelet mounts: hub.extraFiles from their Secret, console.templates from
    # their ConfigMap.
    files = find(docs, "Secret", "site-hpchub-hub-files")["data"]
    motd.parent.mkdir(parents=True)
    motd.write_bytes(base64.b64decode(files["motd"]))
    templates = work / "templates"
    templates.mkdir()
    for name, text in find(docs, "ConfigMap", "site-hpchub-hub-templates")["data"].items():
        (templates / name).write_text(text)
    env["HPCHUB_TEMPLATES_DIR"] = str(templates)
    hub = SiteHub(work, values, work / "no-ssh-ca")
    hub.chart_env = env
    hub.start()
    yield hub
    hub.stop()


def test_login_page_override_shows_what_the_extension_points_set(site_hub: SiteHub) -> None:
    r = requests.get(f"{site_hub.public}/hub/login", timeout=30)
    assert r.status_code == 200
    # extraConfig ran in key order; extraEnv and the extraFiles file reached it.
    assert '<p id="site-banner">10 20 hello-from-extraEnv welcome-from-extraFiles</p>' in r.text
    # The override extends hpchub's page: the docs links before login are still there.
    assert 'id="docs-user-guide"' in r.text


def test_the_console_still_renders_through_its_template_wrapper(site_hub: SiteHub) -> None:
    r = site_hub.sign_in("hpcalice")
    assert r.status_code == 200 and r.url.endswith("/hub/home"), r.url
    assert 'id="hpc-console"' in r.text


def test_hub_config_made_an_admin(site_hub: SiteHub) -> None:
    r = site_hub.request("GET", "/users/hpcbob")
    assert r.status_code == 200 and r.json()["admin"] is True
    r = site_hub.request("GET", "/users/hpccarol")
    assert r.status_code == 404 or r.json()["admin"] is False


def test_service_token_has_exactly_its_roles_scopes(site_hub: SiteHub) -> None:
    token = site_hub.chart_env[service_token_env("stats")]
    auth = {"Authorization": f"token {token}"}
    r = requests.get(f"{site_hub.api}/user", headers=auth, timeout=30)
    assert r.status_code == 200 and r.json()["kind"] == "service" and r.json()["name"] == "stats"
    assert requests.get(f"{site_hub.api}/users", headers=auth, timeout=30).status_code == 200
    # Not granted: creating users or reading the proxy's routes.
    assert requests.post(f"{site_hub.api}/users/intruder", headers=auth, timeout=30).status_code == 403
    assert requests.get(f"{site_hub.api}/proxy", headers=auth, timeout=30).status_code == 403
    # A made-up token is refused (the control).
    bad = {"Authorization": "token " + "0" * 64}
    assert requests.get(f"{site_hub.api}/users", headers=bad, timeout=30).status_code == 403
