"""The one config loader: reads the chart's values (mounted as one YAML file) and sets
JupyterHub's traits. `jupyterhub_config.py` only calls `apply(c)`.

Every mapping from a values key to a trait lives here, so a reader can see in one file
what each value does to the hub.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from . import (
    __version__,
    api,
    endings,
    ends,
    extensions,
    leftovers,
    metrics,
    routing,
    servers,
    sqlite,
    valuerules,
)
from .console import setup as setup_console
from .culling import ENV as CULLING_ENV
from .culling import CullPolicy
from .grid import Grid
from .hubsecrets import METRICS_TOKEN, HubSecrets, SecretError
from .reaper import start_with_hub
from .settings import ConsoleSettings
from .values import ConfigError
from .values import lookup as _get

DEFAULT_VALUES_PATH = "/usr/local/etc/hpchub/values.yaml"
# The hub's sqlite database lives on the PVC mounted here (hub.db.type=sqlite-pvc).
DATA_DIR = "/srv/jupyterhub"
# auth.sshproxy.caBundle, mounted by the chart from its ConfigMap.
SSHPROXY_CA_FILE = "/usr/local/etc/hpchub-sshproxy-ca/ca.pem"

AUTHENTICATORS = {
    "oauth": "oauthenticator.generic.GenericOAuthenticator",
    "sshproxy": "hpchub.auth.sshproxy.SSHProxyAuthenticator",
    # "dummy" keeps the name operators know; JupyterHub 5.3+ calls it SharedPasswordAuthenticator.
    "dummy": "jupyterhub.authenticators.shared.SharedPasswordAuthenticator",
}
SPAWNER = "hpchub.spawners.dispatch.DispatchSpawner"
# The chart's template (hpchub.validate) refuses the same, in the same words.
SOURCE_ADDRESSES_REQUIRED = (
    "HPCHUB-R017 sshCA.sourceAddresses: empty, so a certificate copied off the hub would log in from anywhere. "
    "List the hub's egress addresses as the login nodes see them (the cluster nodes' or NAT addresses, "
    'e.g. [10.100.8.0/24]), or [0.0.0.0/0, "::/0"] to accept certificates from any address explicitly'
)


def load_values(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Read the mounted values file ($HPCHUB_VALUES, else the chart's mount path)."""
    path = Path(path or os.environ.get("HPCHUB_VALUES", DEFAULT_VALUES_PATH))
    with path.open() as f:
        values = yaml.safe_load(f) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return values


def _url_base(base_url: str) -> str:
    return "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"


def hub_connect_url(values: Mapping[str, Any], names: Mapping[str, str]) -> str:
    """The URL notebooks use to reach the hub API, from hub.connectBack.

    ClusterIP: the hub Service's in-cluster name (Spin notebooks only).
    NodePort/LoadBalancer/Ingress: the host the HPC network uses, on that Service's port.
    """
    cb = _get(values, "hub.connectBack", {}) or {}
    kind = cb.get("type", "ClusterIP")
    if kind == "ClusterIP":
        return f"http://{names.get('hub', 'hub')}:8081"
    host = cb.get("host")
    if not host:
        raise ConfigError(
            f"HPCHUB-R008 hub.connectBack.host: required when hub.connectBack.type is {kind} "
            "(the name or address login and compute nodes use to reach the hub API)"
        )
    scheme = cb.get("scheme", "http")
    if kind == "NodePort":
        port = cb.get("nodePort")
    elif kind == "LoadBalancer":
        port = cb.get("port", 8081)
    else:  # Ingress: the default port of the scheme
        port = None
    return f"{scheme}://{host}" + (f":{port}" if port else "")


def _spin_with_image_tag(spin: Mapping[str, Any], internal: Mapping[str, Any]) -> dict[str, Any]:
    """spin with its image tag filled in: empty means the chart's appVersion, as for the
    hub and proxy images the chart's templates render (this package's version, which a
    test keeps equal to it, when the values did not come through the chart)."""
    spin = dict(spin)
    image = dict(spin.get("image") or {})
    if not image.get("tag"):
        image["tag"] = str(_get(internal, "chart.appVersion") or __version__)
    spin["image"] = image
    return spin


# The hub image's PostgreSQL driver is psycopg 3. URLs written for psycopg2 (z2jh's
# examples) or Heroku-style ``postgres://`` mean the same database.
_PG_SCHEMES = ("postgresql+psycopg://", "postgresql+psycopg2://", "postgresql://", "postgres://")


def postgres_url(url: str, db: Mapping[str, Any] | None = None) -> str:
    """The SQLAlchemy URL for the hub's PostgreSQL driver; refuses other databases.

    The error names the Secret key and the scheme only: the URL holds the password.
    """
    url = url.strip()
    for scheme in _PG_SCHEMES:
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    key = ((db or {}).get("postgres") or {}).get("urlKey", "url")
    scheme = url.split("://", 1)[0] + "://" if "://" in url else "(no scheme)"
    raise ConfigError(
        f"hub.db.postgres.existingSecret: the URL under key {key!r} is not a PostgreSQL URL "
        f"(it starts with {scheme}; expected postgresql://user:password@host:5432/db)"
    )


def sshproxy_ca_file(sshproxy: Mapping[str, Any], env: Mapping[str, str]) -> str:
    """The path of the key service's CA bundle, which the chart mounts from
    ``auth.sshproxy.caBundle`` (PEM text in values, a file for the HTTP client); '' without."""
    pem = str(sshproxy.get("caBundle") or "")
    if not pem:
        return ""
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise ConfigError(
            "HPCHUB-R015 auth.sshproxy.caBundle: expected the PEM text of the CA certificate(s) "
            "(-----BEGIN CERTIFICATE-----), not a file path; pass the file with --set-file "
            "auth.sshproxy.caBundle=site-ca.pem"
        )
    path = env.get("HPCHUB_SSHPROXY_CA_FILE", SSHPROXY_CA_FILE)
    try:
        mounted = Path(path).read_text()
    except OSError as e:
        raise ConfigError(
            f"auth.sshproxy.caBundle: the bundle is not mounted at {path} ({e.strerror})"
        ) from None
    if "-----BEGIN CERTIFICATE-----" not in mounted:
        raise ConfigError(f"auth.sshproxy.caBundle: {path} holds no PEM certificate")
    return path


def _configure_auth(c: Any, values: Mapping[str, Any], env: Mapping[str, str]) -> None:
    auth = values.get("auth") or {}
    kind = auth.get("type", "oauth")
    if kind not in AUTHENTICATORS:
        raise ConfigError(f"auth.type: {kind!r} is not one of {sorted(AUTHENTICATORS)}")
    c.JupyterHub.authenticator_class = AUTHENTICATORS[kind]
    # SSH keys, certificates and allocations travel in encrypted auth_state only.
    c.Authenticator.enable_auth_state = True
    c.Authenticator.allow_all = bool(auth.get("allowAllUsers", False))
    if auth.get("allowedUsers"):
        c.Authenticator.allowed_users = set(auth["allowedUsers"])
    admins = set(_get(values, "hub.adminUsers", []) or [])
    if admins:
        c.Authenticator.admin_users = admins

    if kind == "oauth":
        o = auth.get("oauth") or {}
        c.GenericOAuthenticator.client_id = o.get("clientId", "")
        # The client secret comes from a Secret as an env var, never from the values file.
        secret = env.get("HPCHUB_OAUTH_CLIENT_SECRET")
        if secret:
            c.GenericOAuthenticator.client_secret = secret
        c.GenericOAuthenticator.authorize_url = o.get("authorizeUrl", "")
        c.GenericOAuthenticator.token_url = o.get("tokenUrl", "")
        c.GenericOAuthenticator.userdata_url = o.get("userdataUrl", "")
        c.GenericOAuthenticator.oauth_callback_url = o.get("callbackUrl", "")
        c.GenericOAuthenticator.scope = list(o.get("scope", ["openid"]))
        c.GenericOAuthenticator.username_claim = o.get("usernameClaim", "preferred_username")
        c.GenericOAuthenticator.manage_groups = True
        c.GenericOAuthenticator.auth_state_groups_key = f"oauth_user.{o.get('groupsClaim', 'groups')}"
        if o.get("allowedGroups"):
            c.GenericOAuthenticator.allowed_groups = set(o["allowedGroups"])
        if o.get("adminGroups"):
            c.GenericOAuthenticator.admin_groups = set(o["adminGroups"])
    elif kind == "sshproxy":
        s = auth.get("sshproxy") or {}
        c.SSHProxyAuthenticator.url = s.get("url", "")
        c.SSHProxyAuthenticator.ca_bundle = sshproxy_ca_file(s, env)
        c.SSHProxyAuthenticator.timeout = float(s.get("timeoutSeconds", 20))
    else:  # dummy: development only
        password = env.get("HPCHUB_DUMMY_PASSWORD") or _get(auth, "dummy.password", "")
        if not password:
            raise ConfigError("HPCHUB-R019 auth.dummy.password: required with auth.type=dummy")
        c.SharedPasswordAuthenticator.user_password = password
        # hub.adminUsers log in with their own password (JupyterHub refuses them the shared one).
        admin_password = env.get("HPCHUB_DUMMY_ADMIN_PASSWORD") or _get(auth, "dummy.adminPassword", "")
        if admin_password:
            c.SharedPasswordAuthenticator.admin_password = admin_password


# Spin volume sources no other pod shares: data the pod only reads, or its own scratch
# space (emptyDir), so no user's files sit on them under another user's uid.
_DATA_VOLUMES = ("configMap", "secret", "emptyDir")


def _identity(values: Mapping[str, Any]) -> dict[str, Any]:
    """values ``identity``, checked across keys (the chart checks the same at install)."""
    identity = dict(values.get("identity") or {})
    claims = identity.get("fromAuthState") or {}
    lookup = identity.get("lookup") or {}
    if bool(claims.get("uid")) != bool(claims.get("gid")):
        raise ConfigError(
            "HPCHUB-R030 identity.fromAuthState: set both uid and gid (the auth_state keys that hold them), or neither"
        )
    if lookup.get("system"):
        system = (values.get("systems") or {}).get(lookup["system"])
        if not system or not system.get("ssh"):
            raise ConfigError(
                f'HPCHUB-R031 identity.lookup.system: "{lookup["system"]}" is not a system with ssh settings under systems'
            )
        if not lookup.get("user"):
            raise ConfigError(
                "HPCHUB-R032 identity.lookup.user: required with identity.lookup.system "
                "(the site's service account on its login nodes)"
            )
        if not _get(values, "sshCA.enabled", False):
            raise ConfigError(
                "HPCHUB-R033 identity.lookup: needs sshCA.enabled (the hub signs the service account's certificate)"
            )
    trusted = bool(claims.get("uid") or lookup.get("system"))
    for name, vol in sorted((_get(values, "spin.volumes", {}) or {}).items()):
        vol = vol or {}
        if trusted or any(k in vol for k in _DATA_VOLUMES):
            continue
        if "{username}" in str(vol):
            raise ConfigError(
                f"HPCHUB-R034 spin.volumes.{name}: a per-user ({{username}}) file system needs a trusted uid "
                "source, or every Spin user would run as spin.uid on it: set identity.lookup (system + "
                "service account) or identity.fromAuthState (uid/gid keys)"
            )
        if not vol.get("readOnly"):
            raise ConfigError(
                f"HPCHUB-R035 spin.volumes.{name}: a writable file system needs a trusted uid source, or "
                "every Spin user would share spin.uid on it: set identity.lookup or identity.fromAuthState, "
                "or make it readOnly"
            )
    return identity


# The hub's own API port in its pod (hub_bind_url below); the culler runs beside it.
HUB_PORT = 8081


def _configure_culler(c: Any, values: Mapping[str, Any], base_url: str, policy: CullPolicy) -> None:
    if not policy.enabled:
        return
    cull = values.get("culling") or {}
    every = int(cull.get("every", 600))
    cmd = [
        sys.executable,
        "-m",
        "hpchub.culler",  # jupyterhub-idle-culler, its token kept out of the log
        # The culler runs in the hub pod: it calls the hub on loopback, not through the
        # hub's Service (the hub's NetworkPolicy admits no traffic from the hub itself).
        f"--url=http://127.0.0.1:{HUB_PORT}{base_url}hub/api",
        # Each server's own timeout is the hook's (hpchub.culler); this is the shortest.
        f"--timeout={policy.shortest_timeout}",
        f"--cull-every={every}",
        f"--concurrency={int(cull.get('concurrency', 10))}",
    ]
    if int(cull.get("maxAge", 0)):
        cmd.append(f"--max-age={int(cull['maxAge'])}")
    # Its stops are recorded as "idle" (hpchub.ends, by this name).
    c.JupyterHub.services.append(
        {"name": ends.CULLER_SERVICE, "command": cmd, "environment": {CULLING_ENV: policy.to_json()}}
    )
    c.JupyterHub.load_roles.append(
        {
            "name": "idle-culler",
            "description": "Stop idle notebooks (and thereby cancel their Slurm jobs).",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": [ends.CULLER_SERVICE],
        }
    )


def _configure_activity(c: Any, values: Mapping[str, Any], policy: CullPolicy) -> None:
    """How fresh the hub's last_activity is: notebooks report theirs (jupyterhub-singleuser's
    JUPYTERHUB_ACTIVITY_INTERVAL) once per interval, and the proxy's routes are checked as
    often (their own request times are not activity: hpchub/proxy.py).

    Each sweep and report is database work on the hub's one event loop (loading the user,
    a commit): with 1,000 servers it is most of what a resting hub does, so the interval
    trades activity granularity for hub CPU (docs/performance.md). A system's
    singleuser.environment may still set its own report interval."""
    interval = int(_get(values, "hub.activityIntervalSeconds", 600))
    timeout = policy.shortest_timeout
    # Activity is at most one interval old: well inside the shortest culling timeout, so a
    # server in use is never culled on stale activity (the chart refuses this at install too).
    if policy.enabled and interval * 2 > timeout:
        raise ConfigError(
            f"HPCHUB-R001 hub.activityIntervalSeconds: activity up to {interval} s old is too stale for "
            f"{policy.shortest_source} {timeout} (a server in use could be culled); keep it at most "
            "half the shortest culling timeout"
        )
    c.JupyterHub.last_activity_interval = interval
    environment = dict(c.Spawner.get("environment") or {})
    environment.setdefault("JUPYTERHUB_ACTIVITY_INTERVAL", str(interval))
    c.Spawner.environment = environment


def _configure_metrics(c: Any, hub: Mapping[str, Any], secrets: HubSecrets) -> None:
    """/hub/metrics: JupyterHub's and hpchub's metrics, for a token with read:metrics.

    The chart generates that token (hub Secret key ``metrics.token``, kept across
    upgrades) for Prometheus; its service may read the metrics and nothing else.
    """
    m = hub.get("metrics") or {}
    c.JupyterHub.authenticate_prometheus = bool(m.get("authenticate", True))
    token = secrets.get(METRICS_TOKEN)
    if token:
        c.JupyterHub.services.append({"name": "metrics", "api_token": token})
        c.JupyterHub.load_roles.append(
            {
                "name": "metrics",
                "description": "Read /hub/metrics (Prometheus).",
                "scopes": ["read:metrics"],
                "services": ["metrics"],
            }
        )


def _configure_secrets(c: Any, values: Mapping[str, Any], secrets: HubSecrets) -> None:
    """The hub's own secrets and the chart's services' tokens. From the chart's Secret,
    JupyterHub reads the cookie secret, auth_state keys and proxy token from its
    environment itself; from hub.existingSecret (mounted, hpchub's or z2jh's key names)
    they are set here."""
    try:
        if secrets.existing:
            c.JupyterHub.cookie_secret = secrets.cookie_secret()
            c.CryptKeeper.keys = secrets.crypt_keys()
            c.ConfigurableHTTPProxy.auth_token = secrets.require("proxy.token")
        _configure_metrics(c, values.get("hub") or {}, secrets)
        # The chart's pre-delete hook stops every server with this token (hpchub/uninstall.py).
        token = secrets.uninstall_token() if _get(values, "hub.uninstall.stopServers", True) else None
    except SecretError as e:
        raise ConfigError(str(e)) from None
    if token:
        c.JupyterHub.services.append({"name": "uninstall", "api_token": token})
        c.JupyterHub.load_roles.append(
            {
                "name": "uninstall",
                "description": "Stop every user server before helm uninstall removes the hub.",
                "scopes": ["list:users", "read:servers", "delete:servers"],
                "services": ["uninstall"],
            }
        )


def retention_days(values: Mapping[str, Any]) -> int:
    """``console.endedRetentionDays``, checked as the schema checks it (hpchub.settings; a 0
    would forget every ending at the hourly prune)."""
    return ConsoleSettings.from_values(values.get("console") or {}).ended_retention_days


def configure(
    c: Any,
    values: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    config_dir: str | os.PathLike[str] | None = None,
) -> None:
    """Set JupyterHub traits on the config object `c` from the chart's values;
    ``config_dir`` is the directory of jupyterhub_config.py (its jupyterhub_config.d runs)."""
    env = os.environ if env is None else env
    internal = values.get("_internal") or {}  # names and release info added by the chart
    names: Mapping[str, str] = internal.get("names") or {}
    hub = values.get("hub") or {}

    grid = Grid.from_values(values)  # fails early, naming the key, on an inconsistent grid
    valuerules.check(values, env)  # the chart's cross-key rules, for a hub set up without it
    # hpchub's own metrics next to JupyterHub's at /hub/metrics (hpchub/metrics.py).
    metrics.register_systems(values.get("systems") or {}, end_causes=endings.CAUSES)
    metrics.install(rows=servers.hub_server_rows)
    # How servers end (hpchub.ends): who asked for a stop is known to the finished request
    # (tornado's log_function, JupyterHub's own request log chained); kept this many days.
    c.JupyterHub.tornado_settings = {
        **c.JupyterHub.get("tornado_settings", {}),
        "log_function": ends.log_request,
    }
    ends.configure(retention_days(values))

    base_url = _url_base(hub.get("baseUrl", "/"))
    c.JupyterHub.base_url = base_url
    c.JupyterHub.allow_named_servers = True
    # No count limit: the dispatcher refuses every name that is not a cell (404) and drops
    # its row, so the grid itself bounds a user's servers.
    c.JupyterHub.named_server_limit_per_user = 0
    c.JupyterHub.default_url = base_url + "hub/home"
    # Servers on the supercomputer and in Spin outlive the hub (restart, helm upgrade).
    c.JupyterHub.cleanup_servers = False
    c.JupyterHub.cleanup_proxy = False
    # A server's activity is what its notebook server reports, not every request the proxy
    # carried (a background Lab tab's polls): hpchub/proxy.py.
    c.JupyterHub.proxy_class = "hpchub.proxy.NotebookActivityProxy"
    c.ConfigurableHTTPProxy.should_start = False
    c.ConfigurableHTTPProxy.api_url = f"http://{names.get('proxyApi', 'proxy-api')}:8001"
    c.JupyterHub.hub_bind_url = f"http://:{HUB_PORT}"
    # The proxy and Spin reach the hub through its in-cluster Service; only notebooks on the
    # supercomputer use the connect-back address (NodePort, LoadBalancer or Ingress).
    c.JupyterHub.hub_connect_url = f"http://{names.get('hub', 'hub')}:8081"
    if _get(values, "hub.connectBack.type", "ClusterIP") != "ClusterIP":
        c.RemoteSpawner.hub_connect_url = hub_connect_url(values, names)
    c.JupyterHub.log_level = "DEBUG" if hub.get("debug") else "INFO"
    c.Spawner.debug = bool(hub.get("debug"))

    db = hub.get("db") or {}
    if db.get("type", "sqlite-pvc") == "postgres":
        url = env.get("HPCHUB_DB_URL")
        if not url:
            raise ConfigError(
                "hub.db.postgres.existingSecret: the database URL did not reach the hub "
                "(env HPCHUB_DB_URL is empty)"
            )
        c.JupyterHub.db_url = postgres_url(url, db)
        # An external database is the operator's to back up: its schema is changed only
        # when they opt in (JupyterHub refuses to start on an out-of-date schema otherwise).
        c.JupyterHub.upgrade_db = bool(db.get("upgrade", False))
    else:
        c.JupyterHub.db_url = f"sqlite:///{DATA_DIR}/jupyterhub.sqlite"
        # JupyterHub copies the sqlite file to a dated backup before it upgrades it.
        c.JupyterHub.upgrade_db = True
        # Write-ahead log: a commit no longer holds the hub's one event loop for a
        # journal create/sync/delete (hpchub.sqlite says why and when not to).
        lite = db.get("sqlite") or {}
        sqlite.configure(lite.get("journalMode", "wal"), lite.get("synchronous", "full"))
        sqlite.checkpoint(f"{DATA_DIR}/jupyterhub.sqlite")
    c.JupyterHub.cookie_secret_file = f"{DATA_DIR}/jupyterhub_cookie_secret"  # only if env unset

    for name, system in (values.get("systems") or {}).items():
        if _get(system, "status.user") and not _get(values, "sshCA.enabled", False):
            raise ConfigError(
                f"HPCHUB-R018 systems.{name}.status.user: the status account's certificate is signed by the "
                "hub's SSH CA; set sshCA.enabled: true (or leave status.user empty for per-user queries)"
            )
        if _get(system, "slurm.extend.enabled") and not _get(values, "sshCA.enabled", False):
            raise ConfigError(
                f"HPCHUB-R055 systems.{name}.slurm.extend.enabled: the extend account's certificate is signed by "
                "the hub's SSH CA; set sshCA.enabled: true"
            )
    if _get(values, "sshCA.enabled", False) and not _get(values, "sshCA.sourceAddresses", []):
        raise ConfigError(SOURCE_ADDRESSES_REQUIRED)
    c.JupyterHub.spawner_class = SPAWNER
    # JupyterHub's own check of a started server reads a user-run program's reply.
    routing.cap_hub_clients()
    c.DispatchSpawner.systems = dict(values.get("systems") or {})
    c.DispatchSpawner.service_levels = dict(values.get("serviceLevels") or {})
    c.DispatchSpawner.spin = _spin_with_image_tag(values.get("spin") or {}, internal)
    identity = _identity(values)
    c.DispatchSpawner.identity = identity
    # The hub's service accounts on the login nodes: the identity lookup, the status and the
    # extend accounts. A user whose IdP name equals one would otherwise get its certificate.
    services = {_get(identity, "lookup.user", "")} | {
        _get(s or {}, key, "")
        for s in (values.get("systems") or {}).values()
        for key in ("status.user", "slurm.extend.user")
    }
    c.DispatchSpawner.ssh_ca = {
        "enabled": bool(_get(values, "sshCA.enabled", False)),
        "certLifetimeMinutes": int(_get(values, "sshCA.certLifetimeMinutes", 720)),
        # The CA's private key is mounted from its Secret; the path is all the hub keeps.
        "privateKeyFile": env.get("HPCHUB_SSH_CA_KEY_FILE", "/usr/local/etc/hpchub-ssh-ca/ca"),
        # Never a user certificate for root, a system account or a service account.
        # An account set to null (``--set ...status.user=null``: per-user mode) is no account.
        "denyPrincipals": sorted({*(_get(values, "sshCA.denyPrincipals", []) or []), *services} - {"", None}),
        "minUid": int(identity.get("minUid", 1000)),
        "sourceAddresses": list(_get(values, "sshCA.sourceAddresses", []) or []),
    }
    # Spin pods carry the chart's selector labels so its NetworkPolicy applies to them.
    release = internal.get("release") or {}
    c.KubeSpawner.namespace = release.get("namespace", env.get("POD_NAMESPACE", "default"))
    c.KubeSpawner.component_label = "spin"
    c.KubeSpawner.common_labels = {
        "app.kubernetes.io/name": "hpchub",
        "app.kubernetes.io/instance": release.get("name", "hpchub"),
        "app.kubernetes.io/managed-by": "kubespawner",
    }
    c.KubeSpawner.port = 8888
    # Names, or {name: ...} as in a pod spec (the schema allows both).
    c.KubeSpawner.image_pull_secrets = [
        s["name"] if isinstance(s, dict) else s for s in values.get("imagePullSecrets") or []
    ]
    # Spin volumes are existing claims, NFS or hostPath: the hub creates and deletes no PVCs
    # (and its Role grants no PVC verbs).
    c.KubeSpawner.storage_pvc_ensure = False
    c.KubeSpawner.delete_pvc = False
    c.Spawner.start_timeout = int(_get(values, "spin.startTimeout", 300))
    c.Spawner.http_timeout = 120

    _configure_auth(c, values, env)
    c.JupyterHub.services = []
    c.JupyterHub.load_roles = []
    culling = CullPolicy.from_values(values)
    _configure_activity(c, values, culling)
    _configure_culler(c, values, base_url, culling)
    secrets = HubSecrets.from_values(values, env)
    _configure_secrets(c, values, secrets)

    # What a stop has not confirmed gone (servers, reaper rows): the uninstall hook reads it.
    kept = [h for h in (c.JupyterHub.get("extra_handlers") or []) if h not in leftovers.HANDLERS]
    c.JupyterHub.extra_handlers = kept + leftovers.HANDLERS
    # The console: /hub/home template, its form and stop handlers, docs before login.
    setup_console(c, values, grid)
    # hpchub's API beside JupyterHub's: a server's walltime status, Extend (hpchub/api.py).
    # Replaces only its own routes (configure may run twice on one config): /api/hpchub/ is
    # shared with the uninstall hook's leftovers API, whose loss failed every uninstall.
    own = api.handlers(grid, culling)
    routes = {h[0] for h in own}
    c.JupyterHub.extra_handlers = [h for h in c.JupyterHub.extra_handlers if h[0] not in routes] + own
    # Last: the operator's extension points (hub.services, hub.loadRoles, console.templates,
    # hub.config, jupyterhub_config.d, hub.extraConfig), which may override anything above.
    extensions.apply(c, values, env, secrets, config_dir)


def apply(
    c: Any, path: str | os.PathLike[str] | None = None, config_dir: str | os.PathLike[str] | None = None
) -> None:
    """Entry point for jupyterhub_config.py (``config_dir``: its directory)."""
    configure(c, load_values(path), config_dir=config_dir)
    # Cancellations left pending by an earlier hub process resume once this one runs.
    start_with_hub()
    ends.start_with_hub()  # endings past console.endedRetentionDays are pruned
