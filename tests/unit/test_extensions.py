"""The z2jh-style extension points, from the operator's values through the real chart
(helm template) and the loader into a JupyterHub config: hub.config, hub.extraConfig
(ordered), hub.services with their tokens, hub.loadRoles, console.templates. A real hub
serving them is tests/integration/test_hub_extensions.py."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml
from jupyterhub.app import JupyterHub
from traitlets.config import Config

from hpchub.config import ConfigError, configure
from hpchub.extensions import service_token_env
from tests.chart.helm import CONFIG, find, render

from .test_config import hub_env

EXT = {
    "hub": {
        "config": {
            "Spawner": {"http_timeout": 77},
            "JupyterHub": {"shutdown_on_logout": True},
            "Authenticator": {"admin_users": ["hpcbob"]},
        },
        "extraConfig": {
            "20-second": "c.JupyterHub.template_vars['site_order'].append('20')",
            "10-first": (
                "import os\n"
                "c.JupyterHub.template_vars['site_order'] = ['10']\n"
                "c.JupyterHub.template_vars['site_motd'] = os.environ['SITE_MOTD']\n"
                "c.JupyterHub.template_vars['site_base'] = get_config('hub.baseUrl')\n"
            ),
        },
        "extraEnv": {"SITE_MOTD": "hello from extraEnv"},
        "services": {
            "stats": {"url": "http://stats.example.org:9000", "display": False},
            "announce": {"apiToken": "ab" * 16},
        },
        "loadRoles": {"stats-reader": {"scopes": ["list:users"], "services": ["stats"]}},
    },
}


def values_file(tmp_path: Path, extra: dict) -> str:
    p = tmp_path / "ext.yaml"
    p.write_text(yaml.safe_dump(extra))
    return str(p)


def mounted(docs: list[dict]) -> dict:
    return yaml.safe_load(
        base64.b64decode(find(docs, "Secret", "site-hpchub-hub-config")["data"]["values.yaml"])
    )


def loaded(tmp_path: Path, extra: dict, env: dict | None = None) -> tuple[Config, list[dict]]:
    """The loader run as in the hub pod: the mounted values file, and the container's
    environment (os.environ, which hub.extraConfig snippets read) from the chart."""
    docs = render(
        [CONFIG / "values-minimal.yaml", values_file(tmp_path, extra)], release="site", namespace="jupyter"
    )
    c = Config()
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {**hub_env(docs), **(env or {})}.items():
            mp.setenv(k, v)
        configure(c, mounted(docs))
    return c, docs


def test_hub_config_traits_reach_a_real_jupyterhub(tmp_path: Path) -> None:
    c, _ = loaded(tmp_path, EXT)
    hub = JupyterHub(config=c)
    assert hub.shutdown_on_logout is True
    assert c.Spawner.http_timeout == 77  # after hpchub's own 120
    assert c.Authenticator.admin_users == ["hpcbob"]


def test_extra_config_runs_in_key_order_with_env_and_get_config(tmp_path: Path) -> None:
    c, _ = loaded(tmp_path, EXT)
    tv = c.JupyterHub.template_vars
    assert tv["site_order"] == ["10", "20"]
    assert tv["site_motd"] == "hello from extraEnv"  # hub.extraEnv reached the snippet
    assert tv["site_base"] == "/"
    assert "hpchub_console" in tv  # the console's own variables are still there


def test_services_get_their_tokens_and_roles_load(tmp_path: Path) -> None:
    c, docs = loaded(tmp_path, EXT)
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert {"stats", "announce", "uninstall"} <= set(services)
    assert services["announce"]["api_token"] == "ab" * 16
    assert len(services["stats"]["api_token"]) == 64
    assert services["stats"]["url"] == "http://stats.example.org:9000"
    assert "apiToken" not in services["announce"]
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert roles["stats-reader"] == {"name": "stats-reader", "scopes": ["list:users"], "services": ["stats"]}
    # The derived token is in the chart's Secret, where pods of the service read it.
    data = find(docs, "Secret", "site-hpchub-hub-secret")["data"]
    assert base64.b64decode(data["hub.services.stats.apiToken"]).decode() == services["stats"]["api_token"]


async def test_jupyterhub_initializes_with_the_services_and_roles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # JupyterHub's own startup checks the services and roles (names, scopes, tokens).
    c, _ = loaded(tmp_path, EXT)
    c.JupyterHub.db_url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(tmp_path / "cookie")
    c.JupyterHub.pid_file = str(tmp_path / "hub.pid")
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", "0f" * 32)
    c.ConfigurableHTTPProxy.auth_token = "p" * 32  # the chart's env; the proxy is not started
    hub = JupyterHub(config=c)
    await hub.initialize([])
    try:
        assert {"stats", "announce"} <= set(hub._service_map)
        from jupyterhub import orm

        role = orm.Role.find(hub.db, "stats-reader")
        assert [s.name for s in role.services] == ["stats"]
    finally:
        hub.db.close()


def test_service_without_its_token_is_a_config_error(tmp_path: Path) -> None:
    c, docs = loaded(tmp_path, EXT)
    env = {**hub_env(docs), "SITE_MOTD": "x"}
    env.pop(service_token_env("stats"))
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        mp.delenv(service_token_env("stats"), raising=False)
        with pytest.raises(ConfigError, match=r"hub\.services\.stats: its API token did not reach the hub"):
            configure(Config(), mounted(docs))


def test_failing_extra_config_names_the_snippet(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"hub\.extraConfig\.30-broken: NameError"):
        loaded(tmp_path, {"hub": {"extraConfig": {"30-broken": "undefined_name + 1"}}})


def test_templates_dir_goes_first_in_the_template_path(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    c, docs = loaded(
        tmp_path,
        {"console": {"templates": {"login.html": '{% extends "hpchub/login.html" %}'}}},
        env={"HPCHUB_TEMPLATES_DIR": str(tmp_path / "t")},
    )
    assert c.JupyterHub.template_paths[0] == str(tmp_path / "t")
    assert c.JupyterHub.template_paths[1].endswith("hpchub/templates")
    with pytest.raises(ConfigError, match=r"console\.templates: not mounted"):
        loaded(
            tmp_path,
            {"console": {"templates": {"login.html": "x"}}},
            env={"HPCHUB_TEMPLATES_DIR": str(tmp_path / "missing")},
        )


def test_role_and_service_names_are_taken_when_given(tmp_path: Path) -> None:
    # As in z2jh: `name` when given, else the key; the token is still found under the key.
    c, docs = loaded(
        tmp_path,
        {
            "hub": {
                "services": {"stats": {"name": "site-stats", "url": "http://stats:9000"}},
                "loadRoles": {
                    "statsReader": {
                        "name": "stats-reader",
                        "scopes": ["list:users"],
                        "services": ["site-stats"],
                    },
                    "plain": {"scopes": ["read:users"]},
                },
            }
        },
    )
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert roles["stats-reader"]["services"] == ["site-stats"] and "statsReader" not in roles
    assert "plain" in roles
    services = {s["name"]: s for s in c.JupyterHub.services}
    token = base64.b64decode(
        find(docs, "Secret", "site-hpchub-hub-secret")["data"]["hub.services.stats.apiToken"]
    )
    assert services["site-stats"]["api_token"] == token.decode() and "stats" not in services


def test_config_d_files_run_sorted_after_hub_config_and_before_extra_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "etc"
    (conf / "jupyterhub_config.d").mkdir(parents=True)
    # z2jh's namespace: os and get_config without imports; definitions shared with what follows.
    (conf / "jupyterhub_config.d" / "20-b.py").write_text(
        "order.append('20-b:' + str(c.Spawner.http_timeout))\n"
    )
    (conf / "jupyterhub_config.d" / "10-a.py").write_text(
        "order = ['10-a:' + os.path.basename(os.sep) + get_config('custom.site')]\n"
        "def site_name():\n    return get_config('custom.site')\n"
    )
    (conf / "jupyterhub_config.d" / "30-notes.txt").write_text("not python")
    values = {
        "hub": {
            "config": {"Spawner": {"http_timeout": 77}},
            "extraConfig": {"10-last": "c.JupyterHub.template_vars['order'] = order + [site_name()]"},
        },
        "custom": {"site": "perlmutter"},
    }
    docs = render(
        [CONFIG / "values-minimal.yaml", values_file(tmp_path, values)], release="site", namespace="jupyter"
    )
    c = Config()
    configure(c, mounted(docs), env=hub_env(docs), config_dir=conf)
    assert c.JupyterHub.template_vars["order"] == ["10-a:perlmutter", "20-b:77", "perlmutter"]
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("Loading")] == [
        "Loading pass-through config section hub.config.Spawner",
        f"Loading {conf / 'jupyterhub_config.d'} config: 10-a.py",
        f"Loading {conf / 'jupyterhub_config.d'} config: 20-b.py",
        "Loading extra config: 10-last",
    ]


def test_a_failing_config_d_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "jupyterhub_config.d").mkdir()
    (tmp_path / "jupyterhub_config.d" / "50-site.py").write_text("1 / 0\n")
    docs = render([CONFIG / "values-minimal.yaml"], release="site", namespace="jupyter")
    with pytest.raises(ConfigError, match=r"jupyterhub_config\.d/50-site\.py: ZeroDivisionError"):
        configure(Config(), mounted(docs), env=hub_env(docs), config_dir=tmp_path)


def test_z2jh_snippet_runs_as_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snippet = (
        "from z2jh import get_config, get_secret_value, get_name, set_config_if_not_none\n"
        "c.JupyterHub.template_vars['z'] = [\n"
        "    get_config('Release.Namespace'), get_config('Chart.Name'), get_config('hub.baseUrl'),\n"
        "    get_config('hub.nope', 'dflt'), get_name('hub'), get_name('proxy-public'),\n"
        "    len(get_secret_value('hub.config.JupyterHub.cookie_secret')),\n"
        "    get_secret_value('hub.services.stats.apiToken') == os.environ['HPCHUB_SERVICE_TOKEN_STATS'],\n"
        "    get_secret_value('hub.db.password', None),\n"
        "]\n"
        "set_config_if_not_none(c.JupyterHub, 'shutdown_on_logout', 'custom.logout')\n"
        "set_config_if_not_none(c.JupyterHub, 'redirect_to_server', 'custom.absent')\n"
    )
    c, _ = loaded(
        tmp_path,
        {
            "hub": {"extraConfig": {"50-z2jh": snippet}, "services": {"stats": {"url": "http://s"}}},
            "custom": {"logout": True},
        },
    )
    assert c.JupyterHub.template_vars["z"] == [
        "jupyter",
        "hpchub",
        "/",
        "dflt",
        "site-hpchub-hub",
        "site-hpchub-proxy-public",
        64,
        True,
        None,
    ]
    assert c.JupyterHub.shutdown_on_logout is True and "redirect_to_server" not in c.JupyterHub
    assert "Loading extra config: 50-z2jh" in capsys.readouterr().out


def test_z2jh_get_secret_value_without_the_key_raises_as_z2jh_does(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"hub\.extraConfig\.50-x: Exception: site-key not found in either k8s Secret!"
    ):
        loaded(tmp_path, {"hub": {"extraConfig": {"50-x": "get_secret_value('site-key')"}}})
