"""The config loader: values files -> the chart's mounted values.yaml -> JupyterHub traits.

The input is what the real chart renders into the hub's config Secret, so the test covers
the path an operator's values take to the hub."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import pytest
import yaml
from jupyterhub.app import JupyterHub
from traitlets.config import Config

from hpchub import ends
from hpchub.config import ConfigError, apply, configure, hub_connect_url
from hpchub.culling import CullPolicy, CullRule
from tests.chart.helm import CONFIG, find, render
from tests.harness.values import grid_values


def rendered(values_file: str, sets: list[str] | None = None, files: list[str] | None = None) -> list[dict]:
    """``files``: further values files layered over the one from config/."""
    return render([CONFIG / values_file, *(files or [])], sets or [], release="site", namespace="jupyter")


def mounted_values(values_file: str, sets: list[str] | None = None) -> dict:
    secret = find(rendered(values_file, sets), "Secret", "site-hpchub-hub-config")
    return yaml.safe_load(base64.b64decode(secret["data"]["values.yaml"]))


def hub_env(docs: list[dict]) -> dict[str, str]:
    """The hub container's environment as the pod would get it: literal values, and
    secretKeyRefs resolved against the Secrets the chart rendered (others are skipped)."""
    secrets = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d["kind"] == "Secret"}
    hub = find(docs, "Deployment", "site-hpchub-hub")["spec"]["template"]["spec"]
    env: dict[str, str] = {}
    for e in next(c for c in hub["containers"] if c["name"] == "hub").get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref and ref["key"] in secrets.get(ref["name"], {}):
            env[e["name"]] = base64.b64decode(secrets[ref["name"]][ref["key"]]).decode()
    return env


def configured(
    values_file: str, sets: list[str] | None = None, env: dict | None = None, files: list[str] | None = None
) -> Config:
    """A JupyterHub config built by the loader from what the chart mounts and passes."""
    docs = rendered(values_file, sets, files)
    secret = find(docs, "Secret", "site-hpchub-hub-config")
    c = Config()
    configure(
        c,
        yaml.safe_load(base64.b64decode(secret["data"]["values.yaml"])),
        env={**hub_env(docs), **(env or {})},
    )
    return c


def test_hub_basics_from_the_nersc_example() -> None:
    c = configured("values-nersc-example.yaml", env={"HPCHUB_OAUTH_CLIENT_SECRET": "s3cret"})
    hub = JupyterHub(config=c)  # a real JupyterHub application reading those traits
    assert hub.allow_named_servers is True
    assert hub.default_url == "/hub/home"
    assert hub.cleanup_servers is False
    assert hub.named_server_limit_per_user == 0  # the grid bounds them (unknown names: 404)
    # The proxy and Spin use the in-cluster Service; notebooks on the supercomputer the
    # connect-back address.
    assert hub.hub_connect_url == "http://site-hpchub-hub:8081"
    assert c.RemoteSpawner.hub_connect_url == "https://jupyter-api.example.org"
    assert hub.db_url == "sqlite:////srv/jupyterhub/jupyterhub.sqlite"
    assert c.ConfigurableHTTPProxy.should_start is False
    assert c.ConfigurableHTTPProxy.api_url == "http://site-hpchub-proxy-api:8001"
    assert c.JupyterHub.spawner_class == "hpchub.spawners.dispatch.DispatchSpawner"
    assert set(c.DispatchSpawner.systems) == {"perlmutter", "cori", "spin"}
    assert c.DispatchSpawner.ssh_ca["enabled"] is True
    assert c.DispatchSpawner.ssh_ca["certLifetimeMinutes"] == 720


def test_oauth_authenticator_and_groups() -> None:
    c = configured("values-nersc-example.yaml", env={"HPCHUB_OAUTH_CLIENT_SECRET": "s3cret"})
    assert c.JupyterHub.authenticator_class == "oauthenticator.generic.GenericOAuthenticator"
    assert c.Authenticator.enable_auth_state is True
    assert c.Authenticator.allow_all is True
    assert c.Authenticator.admin_users == {"alice"}
    g = c.GenericOAuthenticator
    assert g.client_id == "hpchub"
    assert g.client_secret == "s3cret"
    assert g.token_url == "https://iam.example.org/oauth2/token"
    assert g.admin_groups == {"jupyter-admins"}
    assert g.manage_groups is True
    # The real authenticator class accepts every trait the loader sets.
    from oauthenticator.generic import GenericOAuthenticator

    auth = GenericOAuthenticator(config=c)
    assert auth.oauth_callback_url == "https://jupyter.example.org/hub/oauth_callback"
    assert auth.username_claim == "preferred_username"


def test_dummy_authenticator_for_development() -> None:
    # The chart passes the password from its Secret (env), never in the values file.
    assert "password" not in mounted_values("values-dev.yaml")["auth"]["dummy"]
    c = configured("values-dev.yaml", env={"HPCHUB_DUMMY_PASSWORD": "hpchub-dev"})
    assert c.JupyterHub.authenticator_class == "jupyterhub.authenticators.shared.SharedPasswordAuthenticator"
    from jupyterhub.authenticators.shared import SharedPasswordAuthenticator

    assert SharedPasswordAuthenticator(config=c).user_password == "hpchub-dev"


def test_dummy_without_password_is_a_config_error() -> None:
    values = mounted_values("values-minimal.yaml")
    with pytest.raises(ConfigError, match=r"auth\.dummy\.password"):
        configure(Config(), values, env={})


def test_idle_culler_service_and_role() -> None:
    c = configured(
        "values-minimal.yaml",
        ["culling.timeout=7200", "culling.maxAge=86400", "culling.every=120", "culling.concurrency=3"],
    )
    svc = next(s for s in c.JupyterHub.services if s["name"] == "idle-culler")
    assert svc["command"][:3] == [sys.executable, "-m", "hpchub.culler"]
    # The culler runs in the hub pod and calls the hub on loopback, on the port it binds
    # (the hub's NetworkPolicy does not admit the hub pod through its own Service).
    assert "--url=http://127.0.0.1:8081/hub/api" in svc["command"]
    assert JupyterHub(config=c).hub_bind_url == "http://:8081"
    assert "--timeout=7200" in svc["command"]
    assert "--max-age=86400" in svc["command"]
    assert "--cull-every=120" in svc["command"]
    assert "--concurrency=3" in svc["command"]
    # ... as jupyterhub-idle-culler's own command line reads them (a misspelt option
    # would stop the culler; one it ignored would cull at its defaults).
    from jupyterhub_idle_culler import IdleCuller

    culler = IdleCuller()
    culler.parse_command_line(svc["command"][3:])
    got = (culler.timeout, culler.max_age, culler.cull_every, culler.concurrency, culler.url)
    assert got == (7200, 86400, 120, 3, "http://127.0.0.1:8081/hub/api")
    role = next(r for r in c.JupyterHub.load_roles if r["name"] == "idle-culler")
    assert role["services"] == ["idle-culler"]
    assert "delete:servers" in role["scopes"]
    # Activity (the proxy's routes, the notebooks' reports) every hub.activityIntervalSeconds.
    assert c.JupyterHub.last_activity_interval == 600
    assert c.Spawner.environment["JUPYTERHUB_ACTIVITY_INTERVAL"] == "600"


def test_activity_interval_reaches_the_proxy_sweep_and_the_notebooks() -> None:
    c = configured("values-minimal.yaml", ["hub.activityIntervalSeconds=120"])
    assert c.JupyterHub.last_activity_interval == 120
    assert c.Spawner.environment["JUPYTERHUB_ACTIVITY_INTERVAL"] == "120"


def test_activity_too_stale_for_the_culling_timeout_is_refused() -> None:
    values = mounted_values("values-minimal.yaml")
    values["culling"] = {"enabled": True, "timeout": 900}
    values["hub"]["activityIntervalSeconds"] = 600
    with pytest.raises(ConfigError, match=r"hub\.activityIntervalSeconds: .*culling\.timeout 900"):
        configure(Config(), values, env={"HPCHUB_DUMMY_PASSWORD": "x"})
    values["culling"]["enabled"] = False  # no culler: nothing to be culled on stale activity
    c = Config()
    configure(c, values, env={"HPCHUB_DUMMY_PASSWORD": "x"})
    assert c.JupyterHub.last_activity_interval == 600


def test_a_levels_and_a_cells_culling_timeouts_reach_the_culler() -> None:
    c = configured(
        "values-nersc-example.yaml",
        ["serviceLevels.exclusive.culling.timeout=2400", "culling.warnBeforeSeconds=900"],
        env={"HPCHUB_OAUTH_CLIENT_SECRET": "s3cret"},
    )
    svc = next(s for s in c.JupyterHub.services if s["name"] == "idle-culler")
    # The shortest timeout (perlmutter's GPU cell in the example) is the culler's own.
    assert "--timeout=1800" in svc["command"]
    policy = CullPolicy.from_json(svc["environment"]["HPCHUB_CULLING"])
    assert policy.rule("perlmutter-gpu") == CullRule(1800, 300)
    assert policy.rule("perlmutter-exclusive") == policy.rule("cori-exclusive") == CullRule(2400, 900)
    assert policy.rule("cori-gpu") == policy.rule("perlmutter-shared") == CullRule(3600, 900)


def test_activity_too_stale_for_a_levels_timeout_is_refused_naming_it() -> None:
    values = mounted_values("values-minimal.yaml")
    values["serviceLevels"]["shared"]["culling"] = {"timeout": 900}
    with pytest.raises(
        ConfigError,
        match=r"HPCHUB-R001 hub\.activityIntervalSeconds: activity up to 600 s old .* serviceLevels\.shared\.culling\.timeout 900 ",
    ):
        configure(Config(), values, env={"HPCHUB_DUMMY_PASSWORD": "x"})
    values["systems"]["spin"]["levels"]["shared"]["culling"] = {"timeout": 1200}  # the cell's wins
    configure(Config(), values, env={"HPCHUB_DUMMY_PASSWORD": "x"})


def test_idle_culler_calls_the_hub_under_its_base_url() -> None:
    c = configured("values-minimal.yaml", ["hub.baseUrl=/jupyter/"])
    svc = next(s for s in c.JupyterHub.services if s["name"] == "idle-culler")
    assert "--url=http://127.0.0.1:8081/jupyter/hub/api" in svc["command"]


def test_culling_off_adds_no_service() -> None:
    c = configured("values-minimal.yaml", ["culling.enabled=false"])
    # Only the chart's token-only services remain: no culler process is started.
    assert sorted(s["name"] for s in c.JupyterHub.services) == ["metrics", "uninstall"]
    assert not [s for s in c.JupyterHub.services if "command" in s]


def test_postgres_url_comes_from_the_environment() -> None:
    sets = ["hub.db.type=postgres", "hub.db.postgres.existingSecret=db"]
    c = configured("values-minimal.yaml", sets, env={"HPCHUB_DB_URL": "postgresql://u:p@db/hub"})
    assert c.JupyterHub.db_url == "postgresql+psycopg://u:p@db/hub"  # the shipped driver
    with pytest.raises(ConfigError, match="HPCHUB_DB_URL"):
        configured("values-minimal.yaml", sets, env={})


def test_spin_pods_get_the_labels_the_network_policy_selects() -> None:
    c = configured("values-minimal.yaml")
    labels = dict(c.KubeSpawner.common_labels)
    assert labels["app.kubernetes.io/name"] == "hpchub"
    assert labels["app.kubernetes.io/instance"] == "site"
    assert c.KubeSpawner.component_label == "spin"
    assert c.KubeSpawner.namespace == "jupyter"
    assert c.KubeSpawner.delete_pvc is False


@pytest.mark.parametrize(
    ("connect", "expected"),
    [
        ({"type": "ClusterIP"}, "http://site-hpchub-hub:8081"),
        (
            {"type": "NodePort", "host": "h.example.org", "nodePort": 30500},
            "http://h.example.org:30500",
        ),
        (
            {"type": "LoadBalancer", "host": "lb.example.org", "port": 8081},
            "http://lb.example.org:8081",
        ),
        (
            {"type": "Ingress", "host": "api.example.org", "scheme": "https"},
            "https://api.example.org",
        ),
    ],
)
def test_hub_connect_url_follows_connect_back(connect: dict, expected: str) -> None:
    names = {"hub": "site-hpchub-hub"}
    assert hub_connect_url({"hub": {"connectBack": connect}}, names) == expected


def test_connect_back_without_host_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"hub\.connectBack\.host"):
        hub_connect_url({"hub": {"connectBack": {"type": "NodePort"}}}, {})


def test_apply_reads_the_file_named_by_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(mounted_values("values-dev.yaml")))
    monkeypatch.setenv("HPCHUB_VALUES", str(path))
    monkeypatch.setenv("HPCHUB_DUMMY_PASSWORD", "hpchub-dev")
    c = Config()
    apply(c)
    assert c.RemoteSpawner.hub_connect_url == "http://hpchub-dev.local:30081"
    assert c.JupyterHub.log_level == "DEBUG"


def test_base_url_prefixes_default_url() -> None:
    c = configured("values-minimal.yaml", ["hub.baseUrl=/jupyter/"])
    assert c.JupyterHub.base_url == "/jupyter/"
    assert c.JupyterHub.default_url == "/jupyter/hub/home"


def test_image_pull_secrets_reach_kubespawner() -> None:
    c = configured("values-minimal.yaml", ["imagePullSecrets[0]=regcred"])
    assert c.KubeSpawner.image_pull_secrets == ["regcred"]


def test_console_and_docs_are_wired_into_the_hub() -> None:
    c = configured("values-nersc-example.yaml", ["console.title=NERSC Jupyter"])
    assert c.JupyterHub.template_paths[0].endswith("hpchub/templates")
    routes = [h[0] for h in c.JupyterHub.extra_handlers]
    assert r"/docs/?" in routes
    assert r"/console/options/([^/]+)" in routes
    assert c.JupyterHub.template_vars["hpchub_title"] == "NERSC Jupyter"


def test_uninstall_hook_gets_a_service_that_can_only_list_and_stop_servers() -> None:
    c = configured("values-minimal.yaml", env={"HPCHUB_UNINSTALL_TOKEN": "t0k"})
    svc = next(s for s in c.JupyterHub.services if s["name"] == "uninstall")
    assert svc["api_token"] == "t0k"
    role = next(r for r in c.JupyterHub.load_roles if r["name"] == "uninstall")
    assert sorted(role["scopes"]) == ["delete:servers", "list:users", "read:servers"]
    off = configured("values-minimal.yaml", ["hub.uninstall.stopServers=false"])
    assert not [s for s in off.JupyterHub.services if s["name"] == "uninstall"]


def test_cluster_ip_connect_back_leaves_remote_notebooks_on_the_hubs_own_url() -> None:
    c = configured("values-minimal.yaml")
    assert c.JupyterHub.hub_connect_url == "http://site-hpchub-hub:8081"
    assert "hub_connect_url" not in c.RemoteSpawner


def test_status_account_without_the_hub_ca_is_a_config_error() -> None:
    values = mounted_values("values-nersc-example.yaml", ["systems.perlmutter.status.user=hpchubstat"])
    assert values["systems"]["perlmutter"]["status"]["user"] == "hpchubstat"  # the schema accepts it
    configure(Config(), values, env={})  # the example enables the hub CA
    values["sshCA"]["enabled"] = False
    with pytest.raises(ConfigError, match=r"systems\.perlmutter\.status\.user"):
        configure(Config(), values, env={})


def test_identity_and_certificate_limits_reach_the_spawners() -> None:
    c = configured("values-nersc-example.yaml", env={"HPCHUB_OAUTH_CLIENT_SECRET": "s3cret"})
    identity = c.DispatchSpawner.identity
    assert identity["lookup"] == {"system": "perlmutter", "user": "hpchub"}
    assert identity["fromAuthState"] == {"uid": "oauth_user.uidNumber", "gid": "oauth_user.gidNumber"}
    ca = c.DispatchSpawner.ssh_ca
    # The service account is never a user certificate's principal.
    assert "hpchub" in ca["denyPrincipals"] and ca["minUid"] == 1000
    assert ca["sourceAddresses"] == ["10.100.8.0/24"]


@pytest.mark.parametrize(
    ("identity", "volumes", "words"),
    [
        (
            {},
            {"home": {"mountPath": "/home/{username}", "hostPath": {"path": "/h"}}},
            "spin.volumes.home: a per-user",
        ),
        ({}, {"s": {"mountPath": "/s", "nfs": {"server": "n", "path": "/s"}}}, "spin.volumes.s: a writable"),
        ({"fromAuthState": {"uid": "uid"}}, {}, "identity.fromAuthState: set both"),
        ({"lookup": {"system": "nosuch", "user": "x"}}, {}, 'HPCHUB-R031 identity.lookup.system: "nosuch"'),
    ],
)
def test_identity_settings_the_loader_refuses_name_the_key(identity, volumes, words) -> None:
    from hpchub.config import ConfigError

    values = grid_values(
        cells={"spin-shared": "kubernetes"},
        levels={"shared": "S"},
        auth={"type": "dummy", "dummy": {"password": "x"}},
        identity=identity,
        spin={"volumes": volumes},
    )
    with pytest.raises(ConfigError) as e:
        configure(Config(), values, env={})
    assert words in str(e.value)


def test_a_spin_scratch_volume_needs_no_uid_source() -> None:
    # emptyDir is the pod's own (z2jh's /dev/shm idiom): no user's files under another's uid.
    values = grid_values(
        cells={"spin-shared": "kubernetes"},
        levels={"shared": "S"},
        auth={"type": "dummy", "dummy": {"password": "x"}},
        spin={"volumes": {"shm": {"mountPath": "/dev/shm", "emptyDir": {"medium": "Memory"}}}},
    )
    c = Config()
    configure(c, values, env={})
    assert c.DispatchSpawner.spin["volumes"]["shm"]["emptyDir"] == {"medium": "Memory"}


def test_ended_retention_days_is_checked_naming_the_key() -> None:
    configured("values-minimal.yaml", ["console.endedRetentionDays=30"])
    assert ends.retention_days() == 30
    values = mounted_values("values-minimal.yaml")
    for bad in (0, -1, 3651, "7", 7.5, True, None):
        values["console"]["endedRetentionDays"] = bad
        with pytest.raises(ConfigError, match=r"console\.endedRetentionDays: .* from 1 to 3650"):
            configure(Config(), values, env={"HPCHUB_DUMMY_PASSWORD": "x"})
    values["console"]["endedRetentionDays"] = 7
    configure(Config(), values, env={"HPCHUB_DUMMY_PASSWORD": "x"})
    assert ends.retention_days() == 7


def test_the_extend_account_is_never_a_users_principal_and_needs_the_hub_ca() -> None:
    sets = [
        "systems.perlmutter.slurm.extend.enabled=true",
        "systems.perlmutter.slurm.extend.user=hpchubext",
        "systems.perlmutter.slurm.extend.maxTime=04:00:00",
    ]
    values = mounted_values("values-nersc-example.yaml", sets)
    c = Config()
    configure(c, values, env={})
    assert "hpchubext" in c.DispatchSpawner.ssh_ca["denyPrincipals"]
    routes = [h[0] for h in c.JupyterHub.extra_handlers]
    assert r"/api/hpchub/servers/([^/]+)/([^/]+)" in routes and r"/console/extend/([^/]+)" in routes
    values["sshCA"]["enabled"] = False
    values["identity"] = {}
    with pytest.raises(ConfigError, match=r"systems\.perlmutter\.slurm\.extend\.enabled"):
        configure(Config(), values, env={})


def test_a_status_account_turned_off_with_null_leaves_no_principal_to_deny() -> None:
    # make up's values with the status account switched off as test_15's per-user mode does
    # (helm --set ...=null): the hub crash-looped on sorted() of {"hpchub", None}.
    sets = ["systems.mini.status.user=null", "systems.mini.status.forceCommand=null"]
    values = mounted_values("values-dev.yaml", sets)
    assert values["systems"]["mini"]["status"]["user"] is None
    c = Config()
    configure(c, values, env={"HPCHUB_DUMMY_PASSWORD": "x"})
    deny = c.DispatchSpawner.ssh_ca["denyPrincipals"]
    assert None not in deny and "hpchubstat" not in deny


def test_every_api_route_of_hpchub_is_served_once_also_when_configured_twice() -> None:
    # The uninstall hook's leftovers API and the walltime API share /api/hpchub/: replacing
    # one's routes dropped the other's (every helm uninstall then failed on a 404).
    values = mounted_values("values-dev.yaml")
    c = Config()
    env = {"HPCHUB_DUMMY_PASSWORD": "x"}
    configure(c, values, env=env)
    configure(c, values, env=env)
    routes = [h[0] for h in c.JupyterHub.extra_handlers]
    for route in (
        r"/api/hpchub/leftovers",
        r"/api/hpchub/leftovers/retry",
        r"/api/hpchub/servers/([^/]+)/([^/]+)",
        r"/api/hpchub/servers/([^/]+)/([^/]+)/extend",
    ):
        assert routes.count(route) == 1, (route, routes)
