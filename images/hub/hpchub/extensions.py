"""The operator's extension points, applied after hpchub's own configuration, with
Zero to JupyterHub's names and meaning: ``hub.services`` and ``hub.loadRoles``,
``console.templates``, ``hub.config`` (traitlets passed through) and ``hub.extraConfig``
(Python snippets run last, in the order of their keys).

Pod-level extension points (extraEnv, extraFiles, extraVolumes, containers, security
context, affinity) are the chart's alone; the hub only sees their effects.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .values import ConfigError
from .values import lookup as _lookup

# Services and roles the chart adds itself (config.py); an operator's may not replace them.
RESERVED_SERVICES = frozenset({"idle-culler", "uninstall", "metrics"})
DEFAULT_TEMPLATES_DIR = "/usr/local/etc/hpchub-templates"


def service_token_env(name: str) -> str:
    """The environment variable the chart passes hub.services.<name>'s token in."""
    return "HPCHUB_SERVICE_TOKEN_" + name.upper().replace("-", "_")


def services(values: Mapping[str, Any], env: Mapping[str, str]) -> list[dict[str, Any]]:
    """hub.services as JupyterHub.services entries, each with its token from the env."""
    out = []
    for name, spec in sorted((_lookup(values, "hub.services") or {}).items()):
        if name in RESERVED_SERVICES:
            raise ConfigError(f"hub.services.{name}: the chart runs a service of that name itself")
        service = {k: v for k, v in dict(spec or {}).items() if k not in ("apiToken", "api_token", "name")}
        token = env.get(service_token_env(name))
        if not token:
            raise ConfigError(
                f"hub.services.{name}: its API token did not reach the hub "
                f"(env {service_token_env(name)}; with hub.existingSecret, that Secret needs key "
                f"hub.services.{name}.apiToken)"
            )
        out.append({**service, "name": name, "api_token": token})
    return out


def roles(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """hub.loadRoles as JupyterHub.load_roles entries (the key is the role's name)."""
    return [
        {**dict(role or {}), "name": name}
        for name, role in sorted((_lookup(values, "hub.loadRoles") or {}).items())
    ]


def pass_through(c: Any, values: Mapping[str, Any]) -> None:
    """hub.config: each section updates the traits of that class, after hpchub's own."""
    for section, traits in (_lookup(values, "hub.config") or {}).items():
        if not section[:1].isupper():
            raise ConfigError(
                f"hub.config.{section}: not a configurable class name (they start with an upper-case "
                "letter, e.g. JupyterHub or Spawner); misplaced config?"
            )
        if not isinstance(traits, Mapping):
            raise ConfigError(f"hub.config.{section}: expected a mapping of traits")
        if section == "JupyterHub" and {"services", "load_roles"} & set(traits):
            raise ConfigError(
                "hub.config.JupyterHub: use hub.services and hub.loadRoles for services and roles"
            )
        c[section].update(dict(traits))


def run_extra_config(c: Any, values: Mapping[str, Any]) -> None:
    """hub.extraConfig: snippets run in the sorted order of their keys, with ``c``,
    ``values`` and ``get_config("a.b.c", default)`` in scope."""
    for name, code in sorted((_lookup(values, "hub.extraConfig") or {}).items()):
        scope = {
            "c": c,
            "values": values,
            "get_config": lambda key, default=None: _lookup(values, key, default),
            "__name__": f"hub.extraConfig.{name}",
        }
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


def apply(c: Any, values: Mapping[str, Any], env: Mapping[str, str]) -> None:
    """Everything above, in z2jh's order: services and roles, templates, hub.config, then
    hub.extraConfig last (it sees and may change all the rest)."""
    c.JupyterHub.services = [*c.JupyterHub.get("services", []), *services(values, env)]
    c.JupyterHub.load_roles = [*c.JupyterHub.get("load_roles", []), *roles(values)]
    path = templates_dir(values, env)
    if path:
        paths = [p for p in (c.JupyterHub.get("template_paths") or []) if p != path]
        c.JupyterHub.template_paths = [path, *paths]
    pass_through(c, values)
    run_extra_config(c, values)
