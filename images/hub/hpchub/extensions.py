"""The operator's extension points, applied after hpchub's own configuration, with
Zero to JupyterHub's names and meaning: ``hub.services`` and ``hub.loadRoles``,
``console.templates``, ``hub.config`` (traitlets passed through), the files in
``jupyterhub_config.d`` (e.g. from hub.extraFiles) and ``hub.extraConfig`` (Python
snippets run last, in the order of their keys).

The files and snippets run in one namespace, as in z2jh's jupyterhub_config.py: ``c``,
``os``, ``sys``, ``re``, ``glob``, ``url_path_join`` and the ``z2jh`` module's functions
(``get_config``, ``get_secret_value``, ...) are there, and ``values`` (hpchub's). With
hub.existingSecret, the values.yaml in that Secret is merged over the values first (z2jh's
way to keep secret config out of the chart's values).

Pod-level extension points (extraEnv, extraFiles, extraVolumes, containers, security
context, affinity) are the chart's alone; the hub only sees their effects.
"""

from __future__ import annotations

import glob
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import z2jh
from jupyterhub.utils import url_path_join

from .hubsecrets import HubSecrets, SecretError, deep_merge, service_token_env
from .values import ConfigError
from .values import lookup as _lookup

__all__ = ["apply", "roles", "run_config_files", "run_extra_config", "service_token_env", "services"]

# Services and roles the chart adds itself (config.py); an operator's may not replace them.
RESERVED_SERVICES = frozenset({"idle-culler", "uninstall", "metrics"})
# What the chart's template takes for a configurable class name (hub.config.<Class>).
CLASS_NAME = re.compile(r"^[A-Z][A-Za-z0-9_]*$")
DEFAULT_TEMPLATES_DIR = "/usr/local/etc/hpchub-templates"
# Where z2jh (and hpchub's image) keep the hub's config; *.py in its jupyterhub_config.d run.
CONFIG_DIR = "/usr/local/etc/jupyterhub"


def services(values: Mapping[str, Any], secrets: HubSecrets) -> list[dict[str, Any]]:
    """hub.services as JupyterHub.services entries, each with its token. The entry's
    ``name`` is the service's name when given, else its key (as in z2jh); the token is
    always found under the key."""
    specs = sorted((_lookup(values, "hub.services") or {}).items())
    keys: dict[str, str] = {}  # service name -> its key; names are checked before any token
    for key, spec in specs:
        name = str((spec or {}).get("name") or key)
        if name in RESERVED_SERVICES:
            raise ConfigError(
                f"HPCHUB-R043 hub.services.{key}: the chart runs a service named {name} itself; choose another name"
            )
        if name in keys:
            raise ConfigError(
                f"HPCHUB-R044 hub.services.{key}: service name {name} is also hub.services.{keys[name]}'s"
            )
        keys[name] = key
    out = []
    for key, spec in specs:
        spec = dict(spec or {})
        name = str(spec.get("name") or key)
        service = {k: v for k, v in spec.items() if k not in ("apiToken", "api_token", "name")}
        try:
            token = secrets.service_token(key)
        except SecretError as e:
            raise ConfigError(str(e)) from None
        out.append({**service, "name": name, "api_token": token})
    return out


def roles(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """hub.loadRoles as JupyterHub.load_roles entries: ``name`` when given, else the key."""
    return [
        {**dict(role or {}), "name": str((role or {}).get("name") or key)}
        for key, role in sorted((_lookup(values, "hub.loadRoles") or {}).items())
    ]


def pass_through(c: Any, values: Mapping[str, Any]) -> None:
    """hub.config: each section updates the traits of that class, after hpchub's own."""
    for section, traits in (_lookup(values, "hub.config") or {}).items():
        if not CLASS_NAME.match(section):
            raise ConfigError(
                f"HPCHUB-R040 hub.config.{section}: not a configurable class name (they start with an "
                "upper-case letter: JupyterHub, Spawner, GenericOAuthenticator...); misplaced config? "
                "(hub.loadRoles and hub.services are keys of their own)"
            )
        if not isinstance(traits, Mapping):
            raise ConfigError(f"hub.config.{section}: expected a mapping of traits")
        replaced = sorted({"services", "load_roles"} & set(traits)) if section == "JupyterHub" else []
        if replaced:
            use = "hub.services" if replaced[0] == "services" else "hub.loadRoles"
            raise ConfigError(
                f"HPCHUB-R041 hub.config.JupyterHub.{replaced[0]}: use {use} instead (the chart adds its "
                "own services and roles, which this would replace)"
            )
        print(f"Loading pass-through config section hub.config.{section}", flush=True)  # as z2jh
        c[section].update(dict(traits))


def namespace(c: Any, values: Mapping[str, Any]) -> dict[str, Any]:
    """What z2jh's jupyterhub_config.py has in scope for the files and snippets it runs."""
    return {
        "__name__": "hpchub_extra_config",
        "c": c,
        "values": values,
        "os": os,
        "sys": sys,
        "re": re,
        "glob": glob,
        "url_path_join": url_path_join,
        "get_config": z2jh.get_config,
        "get_secret_value": z2jh.get_secret_value,
        "get_name": z2jh.get_name,
        "get_name_env": z2jh.get_name_env,
        "set_config_if_not_none": z2jh.set_config_if_not_none,
    }


def run_config_files(scope: dict[str, Any], config_dir: str | os.PathLike[str]) -> None:
    """Every *.py in ``config_dir``/jupyterhub_config.d, sorted by name (z2jh runs them
    after hub.config and before hub.extraConfig)."""
    directory = Path(config_dir) / "jupyterhub_config.d"
    for path in sorted(glob.glob(f"{directory}/*.py")):
        print(f"Loading {directory} config: {os.path.basename(path)}", flush=True)  # as z2jh
        code = Path(path).read_text()
        try:
            exec(compile(code, path, "exec"), scope)  # noqa: S102 - the operator's config
        except Exception as e:
            raise ConfigError(f"{path}: {type(e).__name__}: {e}") from e


def run_extra_config(scope: dict[str, Any], values: Mapping[str, Any]) -> None:
    """hub.extraConfig: snippets run in the sorted order of their keys."""
    for name, code in sorted((_lookup(values, "hub.extraConfig") or {}).items()):
        print(f"Loading extra config: {name}", flush=True)  # as z2jh; operators grep for it
        if not isinstance(code, str):
            raise ConfigError(f"hub.extraConfig.{name}: expected Python code as a string")
        try:
            exec(compile(code, f"hub.extraConfig.{name}", "exec"), scope)  # noqa: S102 - the operator's config
        except Exception as e:
            raise ConfigError(f"hub.extraConfig.{name}: {type(e).__name__}: {e}") from e


def templates_dir(values: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
    """Where console.templates are mounted, when there are any."""
    if not _lookup(values, "console.templates"):
        return None
    path = env.get("HPCHUB_TEMPLATES_DIR", DEFAULT_TEMPLATES_DIR)
    if not os.path.isdir(path):
        raise ConfigError(f"console.templates: not mounted at {path} (HPCHUB_TEMPLATES_DIR)")
    return path


def apply(
    c: Any,
    values: Mapping[str, Any],
    env: Mapping[str, str],
    secrets: HubSecrets | None = None,
    config_dir: str | os.PathLike[str] | None = None,
) -> None:
    """Everything above, in z2jh's order: services and roles, templates, hub.config, the
    jupyterhub_config.d files, then hub.extraConfig last (it sees and may change all the rest)."""
    secrets = secrets or HubSecrets.from_values(values, env)
    try:
        values = deep_merge(values, secrets.values_overlay())
    except SecretError as e:
        raise ConfigError(str(e)) from None
    z2jh.bind(values, secrets)
    c.JupyterHub.services = [*c.JupyterHub.get("services", []), *services(values, secrets)]
    c.JupyterHub.load_roles = [*c.JupyterHub.get("load_roles", []), *roles(values)]
    path = templates_dir(values, env)
    if path:
        paths = [p for p in (c.JupyterHub.get("template_paths") or []) if p != path]
        c.JupyterHub.template_paths = [path, *paths]
    pass_through(c, values)
    scope = namespace(c, values)
    run_config_files(scope, config_dir or CONFIG_DIR)
    run_extra_config(scope, values)
