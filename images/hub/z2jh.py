"""Zero to JupyterHub's ``z2jh`` helper module, for hub.extraConfig snippets and
jupyterhub_config.d files written for z2jh: ``from z2jh import get_config,
get_secret_value`` works here with z2jh's signatures and meaning.

- ``get_config("a.b.c", default=None)``: a value of the chart's values, with the
  values.yaml of hub.existingSecret merged over them (as z2jh does), and z2jh's
  ``Chart.*``/``Release.*`` entries.
- ``get_secret_value(key, default=<unset>)``: a key of hub.existingSecret, else of the
  chart's own Secret; z2jh's names for the hub's secrets (``hub.config.JupyterHub.cookie_secret``,
  ``hub.config.CryptKeeper.keys``, ``hub.config.ConfigurableHTTPProxy.auth_token``,
  ``hub.services.<name>.apiToken``) and hpchub's both work. Raises when neither has it and
  no default is given.
- ``get_name(name)``, ``get_name_env(name, suffix="")``: the chart's resource names for
  z2jh's short names (``hub``, ``proxy``, ``proxy-api``, ``proxy-public``,
  ``hub-existing-secret``, ``hub-existing-secret-or-default``).
- ``set_config_if_not_none(cparent, name, key)``.

During the hub's configuration these read what hpchub's loader read (``bind``); imported
anywhere else they read the mounted files themselves.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from hpchub.hubsecrets import ENV_NAMES, Z2JH_NAMES, HubSecrets, deep_merge

_UNSET = "never-explicitly-set"  # z2jh's sentinel
_bound: dict[str, Any] = {}


def bind(values: Mapping[str, Any], secrets: HubSecrets) -> None:
    """Called by hpchub's loader: the values (already merged with the existing Secret's
    values.yaml) and secrets its configuration uses."""
    _bound["values"] = values
    _bound["secrets"] = secrets


def _secrets() -> HubSecrets:
    if "secrets" not in _bound:
        _bound["secrets"] = HubSecrets.from_values(_values(), os.environ)
    return _bound["secrets"]


def _values() -> Mapping[str, Any]:
    if "values" not in _bound:
        from hpchub.config import load_values

        values = load_values()
        _bound["values"] = deep_merge(values, HubSecrets.from_values(values, os.environ).values_overlay())
    return _bound["values"]


def _config() -> dict[str, Any]:
    """The values as z2jh's get_config sees them: with Chart and Release at the top."""
    values = _values()
    internal = values.get("_internal") or {}
    chart = internal.get("chart") or {}
    release = internal.get("release") or {}
    return {
        **values,
        "Chart": {"Name": "hpchub", "Version": chart.get("version"), "AppVersion": chart.get("appVersion")},
        "Release": {"Name": release.get("name"), "Namespace": release.get("namespace"), "Service": "Helm"},
    }


def get_config(key: str, default: Any = None) -> Any:
    """config['a']['b']['c'] for "a.b.c"; ``default`` where the path does not resolve."""
    value: Any = _config()
    for level in key.split("."):
        if not isinstance(value, Mapping) or level not in value:
            return default
        value = value[level]
    return value


# z2jh's Secret keys that name one of hpchub's.
_FROM_Z2JH = {z: ours for ours, z in Z2JH_NAMES.items()}


def get_secret_value(key: str, default: Any = _UNSET) -> Any:
    """A key of hub.existingSecret, else of the chart's Secret."""
    secrets = _secrets()
    ours = _FROM_Z2JH.get(key, key)
    if ours in ENV_NAMES or ours.startswith("hub.services."):
        value = secrets.get(ours)  # one of the hub's own, under either name
    else:
        value = secrets.raw(key)  # any other key of the operator's Secret, as written
    if value is not None:
        return value
    if default != _UNSET:
        return default
    raise Exception(f"{key} not found in either k8s Secret!")  # z2jh's exception and message


def get_name(name: str) -> str:
    """The full name of one of the chart's resources, by z2jh's short name."""
    values = _values()
    names = (values.get("_internal") or {}).get("names") or {}
    existing = str((values.get("hub") or {}).get("existingSecret") or "")
    known = {
        "hub": names.get("hub"),
        "proxy": names.get("proxy"),
        "proxy-api": names.get("proxyApi"),
        "proxy-public": names.get("proxyPublic"),
        "hub-existing-secret": existing,
        "hub-existing-secret-or-default": existing or names.get("hubSecret"),
    }
    if known.get(name) is None:
        raise Exception(f"{name}: not a resource of the hpchub chart (it has {', '.join(sorted(known))})")
    return str(known[name])


def get_name_env(name: str, suffix: str = "") -> str:
    """The environment variable Kubernetes sets for a Service, e.g.
    get_name_env("hub", "_SERVICE_PORT")."""
    return os.environ[(get_name(name) + suffix).upper().replace("-", "_")]


def set_config_if_not_none(cparent: Any, name: str, key: str) -> None:
    """Set trait ``name`` of ``cparent`` to get_config(key) unless that is None."""
    data = get_config(key)
    if data is not None:
        setattr(cparent, name, data)
