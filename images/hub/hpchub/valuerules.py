"""The cross-key rules over values that the hub's loader checks at start, beside those
its other modules check where they read the keys (config, grid, console, extensions).

Each rule has an id (``HPCHUB-Rnnn``) that the chart's validation template
(chart/hpchub/templates/_helpers-validate.tpl) gives the same rule, in the same words:
a value refused at ``helm install`` is refused by a hub configured without the chart
too, and an operator finds the id in docs/rules.md. tests/chart/rules.yaml lists every
id with one bad-values case that both must refuse (tests/chart/test_rule_parity.py).

Messages quote names as the chart's ``%q`` does (double quotes), so the two read alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from .hubsecrets import API_TOKEN_RE
from .options import OptionsError, parse_slurm_time
from .settings import SingleuserSettings
from .values import ConfigError
from .values import lookup as _get

OAUTH_REQUIRED = ("clientId", "authorizeUrl", "tokenUrl", "userdataUrl", "callbackUrl")
# hub.config traits whose names say they hold a secret (the values file is not a Secret).
_SECRET_TRAIT = re.compile(r"(?i)(secret|token|password|passwd|keys?)$")
_ROLE_NAME = re.compile(r"^[a-z][a-z0-9_~.-]{1,253}[a-z0-9]$")
_TEMPLATE_NAME = re.compile(r"^[a-z0-9_-]+\.html$")


def _q(value: Any) -> str:
    """``value`` quoted as Go's %q quotes a plain string."""
    return json.dumps(str(value), ensure_ascii=False)


def _names(mapping: Mapping[str, Any]) -> str:
    return ", ".join(sorted(mapping))


def check(values: Mapping[str, Any], env: Mapping[str, str]) -> None:
    """Raise ConfigError, starting with the rule id, for the first rule ``values`` break
    (``env``: the hub's environment, where the chart passes the secrets)."""
    _systems(values)
    _auth(values, env)
    _hub_and_spin(values)
    _extensions(values)


def _systems(values: Mapping[str, Any]) -> None:
    for sys_name, system in sorted((values.get("systems") or {}).items()):
        system = system or {}
        singleuser = SingleuserSettings.from_values(system.get("singleuser") or {})  # its defaults
        if singleuser.port_min > singleuser.port_max:
            raise ConfigError(
                f"HPCHUB-R002 systems.{sys_name}.singleuser.portRange: min {singleuser.port_min} is above "
                f"max {singleuser.port_max}, so every notebook's port would be refused; set min <= max"
            )
        partitions = (system.get("slurm") or {}).get("partitions") or {}
        for lvl, cell in sorted((system.get("levels") or {}).items()):
            cell = cell or {}
            backend = cell.get("backend")
            if backend != "kubernetes" and not system.get("ssh"):
                raise ConfigError(
                    f"HPCHUB-R004 systems.{sys_name}.levels.{lvl}.backend: {_q(backend)} needs "
                    f"systems.{sys_name}.ssh (login hosts and knownHosts)"
                )
            if backend != "slurm":
                continue
            fixed = cell.get("slurm") or {}
            if fixed.get("partition") and fixed["partition"] not in partitions:
                raise ConfigError(
                    f"HPCHUB-R005 systems.{sys_name}.levels.{lvl}.slurm.partition: {_q(fixed['partition'])} "
                    f"is not under systems.{sys_name}.slurm.partitions ({_names(partitions)})"
                )
            if not partitions:
                raise ConfigError(
                    f"HPCHUB-R006 systems.{sys_name}.levels.{lvl}.backend: slurm needs "
                    f"systems.{sys_name}.slurm.partitions"
                )
            _slurm_limits(sys_name, lvl, system.get("slurm") or {}, fixed)


def _seconds(value: Any) -> int | None:
    try:
        return parse_slurm_time(value)
    except OptionsError:
        return None  # not a time: the options validator names it at every start


def _slurm_limits(sys_name: str, lvl: str, slurm: Mapping[str, Any], fixed: Mapping[str, Any]) -> None:
    """A Slurm cell's settings against its partition's limits, as the options validator
    applies them at every start (level values over systems.<s>.slurm.defaults; no
    partition means Slurm's default one, held to the loosest limit of any partition)."""
    partitions = slurm.get("partitions") or {}
    defaults = slurm.get("defaults") or {}
    origin = {
        k: f"systems.{sys_name}.levels.{lvl}.slurm.{k}"
        if k in fixed
        else f"systems.{sys_name}.slurm.defaults.{k}"
        for k in ("partition", "qos", "constraint", "nodes", "time", "gpus")
        if k in fixed or k in defaults
    }
    eff = {**defaults, **fixed}
    if "partition" in defaults and defaults["partition"] not in partitions:
        raise ConfigError(
            f"HPCHUB-R036 systems.{sys_name}.slurm.defaults.partition: {_q(defaults['partition'])} is not "
            f"under systems.{sys_name}.slurm.partitions ({_names(partitions)})"
        )
    for key, listed in (("constraint", "constraints"), ("qos", "qos")):
        allowed = slurm.get(listed) or []
        if key in eff and allowed and eff[key] not in allowed:
            raise ConfigError(
                f"HPCHUB-R037 {origin[key]}: {_q(eff[key])} is not in systems.{sys_name}.slurm.{listed} "
                f"({', '.join(str(a) for a in allowed)})"
            )
    limits: dict[str, Any] = {}
    if "partition" in eff:
        limits = dict(partitions.get(eff["partition"]) or {})
        which = f"partition {_q(eff['partition'])}"
        detail = f"systems.{sys_name}.slurm.partitions.{eff['partition']}.{{}} is {{}}"
    else:
        for p in (p or {} for _, p in sorted(partitions.items())):
            for k in ("maxNodes", "maxGpus"):
                if k in p and (k not in limits or int(p[k]) > int(limits[k])):
                    limits[k] = p[k]
            if p.get("maxTime") and (
                not limits.get("maxTime")
                or (_seconds(p["maxTime"]) or 0) > (_seconds(limits["maxTime"]) or 0)
            ):
                limits["maxTime"] = p["maxTime"]
        which = "any partition"
        detail = f"no partition is set, so Slurm picks one; the largest {{}} under systems.{sys_name}.slurm.partitions is {{}}"
    for key, most in (("gpus", "maxGpus"), ("nodes", "maxNodes")):
        if key in eff and most in limits and int(eff[key] or 0) > int(limits[most]):
            raise ConfigError(
                f"HPCHUB-R038 {origin[key]}: {eff[key]} is more than {which} allows "
                f"({detail.format(most, limits[most])})"
            )
    if "time" in eff and limits.get("maxTime"):
        wanted, most = _seconds(eff["time"]), _seconds(limits["maxTime"])
        if wanted is not None and most is not None and wanted > most:
            raise ConfigError(
                f"HPCHUB-R039 {origin['time']}: {eff['time']} is longer than {which} allows "
                f"({detail.format('maxTime', limits['maxTime'])})"
            )


def _auth(values: Mapping[str, Any], env: Mapping[str, str]) -> None:
    auth = values.get("auth") or {}
    kind = auth.get("type", "oauth")
    if kind == "oauth":
        o = auth.get("oauth") or {}
        for key in OAUTH_REQUIRED:
            if not o.get(key):
                raise ConfigError(
                    f"HPCHUB-R011 auth.oauth.{key}: required with auth.type=oauth (to try the chart without "
                    "an identity provider, set auth.type=dummy and auth.dummy.password)"
                )
        # The chart passes the client secret as HPCHUB_OAUTH_CLIENT_SECRET (from either).
        if not (env.get("HPCHUB_OAUTH_CLIENT_SECRET") or o.get("clientSecret") or o.get("existingSecret")):
            raise ConfigError(
                "HPCHUB-R012 auth.oauth.existingSecret: required with auth.type=oauth (a Secret with key "
                "client-secret), or set auth.oauth.clientSecret"
            )
    elif kind == "sshproxy":
        if not (auth.get("sshproxy") or {}).get("url"):
            raise ConfigError(
                "HPCHUB-R013 auth.sshproxy.url: required with auth.type=sshproxy (the key-issuing API)"
            )
    elif kind == "dummy":
        dummy = auth.get("dummy") or {}
        password = env.get("HPCHUB_DUMMY_PASSWORD") or dummy.get("password")
        admin_password = env.get("HPCHUB_DUMMY_ADMIN_PASSWORD") or dummy.get("adminPassword")
        if _get(values, "hub.adminUsers") and not admin_password:
            raise ConfigError(
                "HPCHUB-R020 auth.dummy.adminPassword: required with auth.type=dummy and hub.adminUsers "
                "(admins log in with it, 32+ characters; without it they cannot log in at all)"
            )
        if admin_password and admin_password == password:
            raise ConfigError("HPCHUB-R021 auth.dummy.adminPassword: must differ from auth.dummy.password")


def _hub_and_spin(values: Mapping[str, Any]) -> None:
    if _get(values, "hub.db.type", "sqlite-pvc") == "postgres" and not _get(
        values, "hub.db.postgres.existingSecret"
    ):
        raise ConfigError(
            "HPCHUB-R026 hub.db.postgres.existingSecret: required with hub.db.type=postgres "
            "(a Secret holding the database URL)"
        )
    spin = values.get("spin") or {}
    if spin.get("defaultVersion") and spin["defaultVersion"] not in (spin.get("versions") or {}):
        raise ConfigError(
            f"HPCHUB-R027 spin.defaultVersion: {_q(spin['defaultVersion'])} is not a key of spin.versions"
        )
    if "uidLookup" in spin:
        raise ConfigError(
            "HPCHUB-R028 spin.uidLookup: removed (it ran `id` as the user, whose shell start-up files can "
            "print any uid); set identity.lookup.system and identity.lookup.user (a service account on the "
            "login nodes, see the operator guide)"
        )
    if "uidFromAuthState" in spin:
        raise ConfigError(
            "HPCHUB-R029 spin.uidFromAuthState: removed; set identity.fromAuthState.uid and .gid to the "
            "auth_state keys that hold them (e.g. uid and gid for the key service, oauth_user.uidNumber "
            "for an OIDC claim)"
        )


def _extensions(values: Mapping[str, Any]) -> None:
    """The z2jh-style extension points, as written in the values file (what a Secret's
    values.yaml adds is checked where it is read, hpchub.hubsecrets)."""
    for cls, traits in sorted((_get(values, "hub.config") or {}).items()):
        for trait in sorted(traits or {} if isinstance(traits, Mapping) else {}):
            if _SECRET_TRAIT.search(trait):
                raise ConfigError(
                    f"HPCHUB-R042 hub.config.{cls}.{trait}: looks like a secret, and hub.config is written to "
                    "the hub's values file. Put it in a Secret, pass it with hub.extraEnv "
                    "(valueFrom.secretKeyRef) and set the trait in hub.extraConfig from os.environ (the "
                    "cookie secret, auth_state key and proxy token: hub.existingSecret)"
                )
    for key, svc in sorted((_get(values, "hub.services") or {}).items()):
        svc = svc or {}
        if "api_token" in svc:
            raise ConfigError(
                f"HPCHUB-R045 hub.services.{key}.api_token: use hub.services.{key}.apiToken (kept in a "
                "Secret, never in the hub's values file), or leave it empty to have one derived"
            )
        # The token itself is never printed: this message reaches logs.
        if svc.get("apiToken") and not API_TOKEN_RE.fullmatch(str(svc["apiToken"])):
            raise ConfigError(
                f"HPCHUB-R046 hub.services.{key}.apiToken: must be 32 to 64 characters: letters, digits and "
                "- _ . ~ + / = (z2jh takes any string; JupyterHub never matches a token longer than 64, and a "
                "shorter one is weaker than the chart's own). Make one with openssl rand -hex 32 and give it "
                "to the service too, or leave apiToken empty to have one derived"
            )
    roles: dict[str, str] = {}
    for key, role in sorted((_get(values, "hub.loadRoles") or {}).items()):
        name = str((role or {}).get("name") or key)
        if not _ROLE_NAME.match(name):
            raise ConfigError(
                f"HPCHUB-R047 hub.loadRoles.{key}: {_q(name)} is not a role name JupyterHub accepts "
                "(lowercase letters, digits and -_~., 3-255 characters, starting with a letter); "
                f"set hub.loadRoles.{key}.name"
            )
        if name in roles:
            raise ConfigError(
                f"HPCHUB-R048 hub.loadRoles.{key}: role name {name} is also hub.loadRoles.{roles[name]}'s"
            )
        roles[name] = key
    for name in sorted(_get(values, "console.templates") or {}):
        if not _TEMPLATE_NAME.match(name):
            raise ConfigError(
                f"HPCHUB-R050 console.templates.{name}: not a template file name (e.g. login.html, "
                "home.html, page.html)"
            )
