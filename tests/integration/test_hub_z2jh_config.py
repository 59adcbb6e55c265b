"""An operator's Zero to JupyterHub config, run as they wrote it by a real JupyterHub behind
a real configurable-http-proxy, configured from what the chart renders (helm template) with
what the kubelet would mount put in place:

- a ``hub.extraFiles`` file in the hub's ``jupyterhub_config.d`` runs (after hub.config,
  before hub.extraConfig), with ``os`` and z2jh's ``get_config`` in scope;
- ``hub.loadRoles.<key>.name`` and ``hub.services.<key>.name`` are the names JupyterHub uses;
- a z2jh-style ``hub.extraConfig`` snippet (``from z2jh import get_config,
  get_secret_value``, ``os`` unimported) runs and the hub logs ``Loading extra config: <key>``;
- ``hub.existingSecret`` in z2jh's layout (``hub.config.JupyterHub.cookie_secret``,
  ``hub.config.CryptKeeper.keys``, ``hub.config.ConfigurableHTTPProxy.auth_token``,
  ``hub.services.<name>.apiToken``, ``values.yaml``) is what the hub uses, and a Secret
  lacking one of them stops the hub naming the key.
"""

from __future__ import annotations

import base64
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from tornado.web import decode_signed_value

from tests.chart.helm import CONFIG, find, render
from tests.harness import minihpc
from tests.unit.test_config import hub_env

pytestmark = pytest.mark.integration

CONFIG_D = "/usr/local/etc/jupyterhub/jupyterhub_config.d"
EXPLICIT_TOKEN = "e" * 64  # hub.services.stats.apiToken in values: the Secret's wins

# A jupyterhub_config.d file as z2jh runs them: `os` and `get_config` are in scope.
MARKER_PY = (
    "open(os.environ['SITE_MARKER'], 'w').write('config.d ran: ' + get_config('custom.banner'))\n"
    "c.JupyterHub.template_vars['config_d'] = 'ran'\n"
)
# A hub.extraConfig snippet written for z2jh: imports z2jh, uses os without importing it.
Z2JH_SNIPPET = (
    "from z2jh import get_config, get_secret_value\n"
    "c.JupyterHub.template_vars['site_banner'] = ' '.join([\n"
    "    get_config('custom.banner'),\n"
    "    get_secret_value('site-motd'),\n"
    "    os.environ['SITE_FLAG'],\n"
    "    get_config('custom.missing', 'default-kept'),\n"
    "    c.JupyterHub.template_vars['config_d'],\n"
    "])\n"
)


def site_values() -> dict[str, Any]:
    return {
        "hub": {
            "existingSecret": "site-z2jh",
            "extraEnv": {"SITE_FLAG": "flag-from-extraEnv"},
            "extraFiles": {"marker": {"mountPath": f"{CONFIG_D}/50-marker.py", "stringData": MARKER_PY}},
            "extraConfig": {"10-z2jh": Z2JH_SNIPPET},
            "services": {"stats": {"name": "site-stats", "display": False, "apiToken": EXPLICIT_TOKEN}},
            "loadRoles": {
                "statsReader": {
                    "name": "stats-reader",
                    "scopes": ["list:users", "read:roles:services"],
                    "services": ["site-stats"],
                }
            },
        },
        "custom": {"banner": "from-values"},
        "console": {
            "templates": {
                "login.html": '{% extends "hpchub/login.html" %}\n'
                '{% block main %}<p id="site-banner">{{ site_banner }}</p>{{ super() }}{% endblock main %}\n'
            }
        },
    }


def z2jh_secret(proxy_token: str) -> dict[str, str]:
    """The operator's Secret in z2jh's layout (its chart Secret's keys, plus values.yaml)."""
    return {
        "hub.config.JupyterHub.cookie_secret": secrets.token_hex(32),
        "hub.config.CryptKeeper.keys": f"{secrets.token_hex(32)};{secrets.token_hex(32)}",
        "hub.config.ConfigurableHTTPProxy.auth_token": proxy_token,
        "hub.services.stats.apiToken": secrets.token_hex(32),
        "values.yaml": yaml.safe_dump(
            {
                "hub": {"config": {"Authenticator": {"admin_users": ["hpcbob"]}}},
                "custom": {"banner": "from-the-secret"},
            }
        ),
        "site-motd": "motd-from-the-secret",
    }


class Z2JHHub(minihpc.Hub):
    """The harness hub with the hub pod's environment from the chart, and its secrets only
    from the mounted Secret: none of JupyterHub's own variables reach it."""

    chart_env: dict[str, str] = {}

    def hub_env(self) -> dict[str, str]:
        env = {**self.env(), **self.chart_env}
        # Not the harness's: the chart passes none of these with hub.existingSecret.
        for name in ("JPY_COOKIE_SECRET", "JUPYTERHUB_CRYPT_KEY", "CONFIGPROXY_AUTH_TOKEN"):
            env.pop(name, None)
        return env


def make_hub(work: Path, drop: tuple[str, ...] = ()) -> tuple[Z2JHHub, dict[str, str]]:
    """A hub as the chart deploys site_values(), with the operator's Secret (less ``drop``)
    mounted."""
    extra = work / "site.yaml"
    extra.write_text(yaml.safe_dump(site_values()))
    docs = render([CONFIG / "values-minimal.yaml", extra], release="site", namespace="jupyter")
    values = yaml.safe_load(
        base64.b64decode(find(docs, "Secret", "site-hpchub-hub-config")["data"]["values.yaml"])
    )
    hub = Z2JHHub(work, values, work / "no-ssh-ca")
    secret = {k: v for k, v in z2jh_secret(hub.proxy_token).items() if k not in drop}
    mounted = work / "existing-secret"
    mounted.mkdir()
    for key, value in secret.items():
        (mounted / key).write_text(value)
    # What the kubelet mounts from hub.extraFiles: the config.d file beside the hub's config.
    files = find(docs, "Secret", "site-hpchub-hub-files")["data"]
    config_d = hub.dir / "jupyterhub_config.d"
    config_d.mkdir(parents=True)
    (config_d / "50-marker.py").write_bytes(base64.b64decode(files["marker"]))
    (config_d / "README.txt").write_text("not Python: never run\n")
    templates = work / "templates"
    templates.mkdir()
    for name, text in find(docs, "ConfigMap", "site-hpchub-hub-templates")["data"].items():
        (templates / name).write_text(text)
    chart = {k: v for k, v in hub_env(docs).items() if k.startswith(("HPCHUB_SERVICE_TOKEN_", "SITE_"))}
    hub.chart_env = {
        **chart,
        "HPCHUB_EXISTING_SECRET_DIR": str(mounted),
        "HPCHUB_TEMPLATES_DIR": str(templates),
        "SITE_MARKER": str(work / "marker.txt"),
    }
    return hub, secret


@pytest.fixture(scope="module")
def z2jh_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Z2JHHub, dict[str, str]]]:
    hub, secret = make_hub(tmp_path_factory.mktemp("z2jh-hub"))
    hub.start()
    yield hub, secret
    hub.stop()


def test_config_d_file_from_extra_files_runs_before_extra_config(z2jh_hub: tuple[Z2JHHub, dict]) -> None:
    hub, _ = z2jh_hub
    # It ran, with `os` and get_config in scope, reading the Secret's values.yaml merged in.
    assert (hub.workdir / "marker.txt").read_text() == "config.d ran: from-the-secret"
    log = hub.log_text()
    ran = log.index(f"Loading {hub.dir / 'jupyterhub_config.d'} config: 50-marker.py")
    assert ran < log.index("Loading extra config: 10-z2jh")
    assert "README.txt" not in log


def test_z2jh_snippet_runs_and_logs_its_key(z2jh_hub: tuple[Z2JHHub, dict]) -> None:
    hub, _ = z2jh_hub
    r = requests.get(f"{hub.public}/hub/login", timeout=30)
    assert r.status_code == 200
    assert (
        '<p id="site-banner">from-the-secret motd-from-the-secret flag-from-extraEnv default-kept ran</p>'
        in r.text
    )
    assert "Loading extra config: 10-z2jh" in hub.log_text()


def test_role_and_service_get_the_names_given(z2jh_hub: tuple[Z2JHHub, dict]) -> None:
    hub, secret = z2jh_hub
    auth = {"Authorization": f"token {secret['hub.services.stats.apiToken']}"}
    r = requests.get(f"{hub.api}/user", headers=auth, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "service" and r.json()["name"] == "site-stats"
    assert r.json()["roles"] == ["stats-reader"]
    # The role's scopes apply: listing users, nothing more.
    assert requests.get(f"{hub.api}/users", headers=auth, timeout=30).status_code == 200
    assert requests.post(f"{hub.api}/users/intruder", headers=auth, timeout=30).status_code == 403
    with sqlite3.connect(hub.dir / "jupyterhub.sqlite") as db:
        names = {n for (n,) in db.execute("select name from roles")}
    assert "stats-reader" in names and "statsReader" not in names


def test_existing_secret_in_z2jh_layout_is_what_the_hub_uses(z2jh_hub: tuple[Z2JHHub, dict]) -> None:
    hub, secret = z2jh_hub
    # The hub got no secret from its environment, and started: the auth_state keys and the
    # proxy token came from the Secret (JupyterHub refuses to start without keys; a wrong
    # proxy token fails its first route).
    assert "JUPYTERHUB_CRYPT_KEY" not in hub.hub_env() and "CONFIGPROXY_AUTH_TOKEN" not in hub.hub_env()
    assert hub.routes()
    # The login cookie is signed with the Secret's cookie secret (and not another).
    s = requests.Session()
    r = hub.sign_in("hpcalice", session=s)
    assert r.status_code == 200 and r.url.endswith("/hub/home"), r.url
    cookie = (s.cookies.get("jupyterhub-hub-login") or "").strip('"')  # the jar keeps its quotes
    assert cookie, "no login cookie"
    mine = bytes.fromhex(secret["hub.config.JupyterHub.cookie_secret"])
    assert decode_signed_value(mine, "jupyterhub-hub-login", cookie) is not None
    assert decode_signed_value(b"\0" * 32, "jupyterhub-hub-login", cookie) is None
    # The service token is the Secret's, which wins over the explicit apiToken (as in z2jh).
    bad = {"Authorization": f"token {EXPLICIT_TOKEN}"}
    assert requests.get(f"{hub.api}/users", headers=bad, timeout=30).status_code == 403
    # values.yaml in the Secret was merged over the values: its hub.config made an admin.
    r = hub.request("GET", "/users/hpcbob")
    assert r.status_code == 200 and r.json()["admin"] is True


def test_uninstall_hook_finds_its_token_in_a_z2jh_layout_secret(z2jh_hub: tuple[Z2JHHub, dict]) -> None:
    # z2jh's layout has no uninstall token: the hook (python -m hpchub.uninstall, as the
    # chart's pre-delete Job runs it with the Secret mounted) and the hub derive the same one.
    hub, _ = z2jh_hub
    env = {
        **hub.hub_env(),
        "HPCHUB_EXISTING_SECRET": "site-z2jh",
        "HPCHUB_EXISTING_SECRET_DIR": hub.chart_env["HPCHUB_EXISTING_SECRET_DIR"],
    }
    env.pop("HPCHUB_UNINSTALL_TOKEN", None)
    r = subprocess.run(
        [sys.executable, "-m", "hpchub.uninstall", f"--api-url={hub.api}", "--hub-wait=5", "--timeout=30"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and "all user servers stopped" in r.stdout, r.stdout + r.stderr
    # The control: a Secret with another cookie secret gives a token the hub refuses.
    other = hub.workdir / "other-secret"
    other.mkdir()
    (other / "hub.config.JupyterHub.cookie_secret").write_text(secrets.token_hex(32))
    r = subprocess.run(
        [sys.executable, "-m", "hpchub.uninstall", f"--api-url={hub.api}", "--hub-wait=3", "--timeout=5"],
        env={**env, "HPCHUB_EXISTING_SECRET_DIR": str(other)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "all user servers stopped" not in r.stdout and "HTTP 403" in r.stderr, r.stdout + r.stderr


def test_existing_secret_lacking_a_token_stops_the_hub_naming_the_key(tmp_path: Path) -> None:
    hub, _ = make_hub(tmp_path, drop=("hub.config.JupyterHub.cookie_secret",))
    hub.prepare()
    hub.start_proxy()
    try:
        with pytest.raises((RuntimeError, AssertionError)):
            hub.start_hub()
        log = hub.log_text()
        assert (
            "no key hub.cookie-secret (or z2jh's name hub.config.JupyterHub.cookie_secret); "
            "add it: kubectl patch secret site-z2jh" in log
        ), log[-3000:]
    finally:
        hub.stop()
