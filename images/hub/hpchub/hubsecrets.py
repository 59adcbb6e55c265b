"""The hub's secrets, wherever the chart put them: the operator's own Secret
(``hub.existingSecret``, mounted as files, under hpchub's key names or Zero to
JupyterHub's) first, then the chart's Secret (passed as environment variables).

z2jh reads a self-managed Secret beside its own and lets it win, key by key
(``z2jh.get_secret_value``); this module does the same for both key layouts, so a Secret
written for z2jh works unchanged. Unlike z2jh, the chart generates no tokens beside an
existing Secret (a render without cluster access would change them at every GitOps
sync), so what the hub needs and the Secret lacks is refused here, naming the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

# Where the chart mounts hub.existingSecret in the hub container (z2jh's path).
EXISTING_SECRET_DIR = "/usr/local/etc/jupyterhub/existing-secret"

COOKIE_SECRET = "hub.cookie-secret"
CRYPT_KEY = "hub.crypt-key"
PROXY_TOKEN = "proxy.token"
UNINSTALL_TOKEN = "hub.uninstall-token"
METRICS_TOKEN = "hub.metrics-token"
VALUES = "values.yaml"

# z2jh's key for the same secret (its chart Secret's layout, which its docs tell
# operators to mirror).
Z2JH_NAMES = {
    COOKIE_SECRET: "hub.config.JupyterHub.cookie_secret",
    CRYPT_KEY: "hub.config.CryptKeeper.keys",
    PROXY_TOKEN: "hub.config.ConfigurableHTTPProxy.auth_token",
}
# The variable the chart's own Secret reaches the hub in.
ENV_NAMES = {
    COOKIE_SECRET: "JPY_COOKIE_SECRET",
    CRYPT_KEY: "JUPYTERHUB_CRYPT_KEY",
    PROXY_TOKEN: "CONFIGPROXY_AUTH_TOKEN",
    UNINSTALL_TOKEN: "HPCHUB_UNINSTALL_TOKEN",
    METRICS_TOKEN: "HPCHUB_METRICS_TOKEN",
}
# What the values.yaml of an existing Secret may set: the keys only the hub reads (z2jh
# keeps e.g. an authenticator's client_secret there). Everything else is read by the
# chart at install, where a Secret's content cannot reach.
SECRET_VALUES_KEYS = ("hub.config", "hub.extraConfig", "hub.services", "hub.loadRoles", "custom")

# Service API tokens: 32-64 characters a header carries unchanged. JupyterHub never
# matches a token longer than 64; shorter than 32 is weaker than the chart's own.
API_TOKEN_RULE = "32 to 64 characters: letters, digits and - _ . ~ + / ="
API_TOKEN_RE = re.compile(r"^[A-Za-z0-9._~+/=-]{32,64}$")


class SecretError(ValueError):
    """A secret the hub needs is missing or malformed; the message names the key."""


def service_key(name: str) -> str:
    """The Secret key of hub.services.<name>'s API token (the same in z2jh)."""
    return f"hub.services.{name}.apiToken"


def service_token_env(name: str) -> str:
    """The environment variable the chart passes hub.services.<name>'s token in."""
    return "HPCHUB_SERVICE_TOKEN_" + name.upper().replace("-", "_")


def derived_token(purpose: str, cookie_secret: str) -> str:
    """A token derived one-way from the cookie secret, as the chart derives the uninstall
    and metrics tokens (``printf "hpchub-<purpose>:%s" cookie | sha256sum``)."""
    return hashlib.sha256(f"hpchub-{purpose}:{cookie_secret}".encode()).hexdigest()


def patch_command(secret: str, key: str) -> str:
    """The shell command that adds a fresh random ``key`` to the operator's Secret."""
    return f'kubectl patch secret {secret} -p "{{\\"stringData\\": {{\\"{key}\\": \\"$(openssl rand -hex 32)\\"}}}}"'


def deep_merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """``b`` over ``a``, mappings merged key by key (z2jh's merge of an existing Secret's
    values.yaml over the chart's values)."""
    out = dict(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(out.get(k), Mapping) and isinstance(v, Mapping) else v
    return out


class HubSecrets:
    """One lookup for every secret of the hub.

    ``existing``: the name of hub.existingSecret ('' without one); ``directory``: where it
    is mounted; ``env``: the hub's environment (the chart's Secret)."""

    def __init__(self, existing: str, directory: str | os.PathLike[str], env: Mapping[str, str]) -> None:
        self.existing = existing
        self.directory = Path(directory)
        self.env = env

    @classmethod
    def from_values(cls, values: Mapping[str, Any], env: Mapping[str, str]) -> HubSecrets:
        existing = str(((values.get("hub") or {}).get("existingSecret")) or "")
        return cls(existing, env.get("HPCHUB_EXISTING_SECRET_DIR", EXISTING_SECRET_DIR), env)

    def where(self) -> str:
        return f"hub.existingSecret ({self.existing}, mounted at {self.directory})"

    def raw(self, key: str) -> str | None:
        """A key of the operator's Secret exactly as written; None without it."""
        if not self.existing:
            return None
        path = self.directory / key
        # A mounted Secret's keys are files; ".." and "/" cannot be keys.
        if "/" in key or key.startswith(".") or not path.is_file():
            return None
        return path.read_text()

    def from_existing(self, key: str) -> str | None:
        """``key`` from the operator's Secret, under hpchub's or z2jh's name; both set to
        different values is refused (which one is meant?)."""
        ours = self.raw(key)
        z2jh_name = Z2JH_NAMES.get(key)
        theirs = self.raw(z2jh_name) if z2jh_name else None
        if ours is not None and theirs is not None and ours.strip() != theirs.strip():
            raise SecretError(
                f"{self.where()}: keys {key} and {z2jh_name} (z2jh's name) differ; keep one of them"
            )
        value = ours if ours is not None else theirs
        return value.strip() if value is not None else None

    def get(self, key: str) -> str | None:
        """The operator's Secret first (it wins, as in z2jh), then the chart's."""
        found = self.from_existing(key)
        if found:
            return found
        env = ENV_NAMES.get(key)
        if key.startswith("hub.services.") and key.endswith(".apiToken"):
            env = service_token_env(key[len("hub.services.") : -len(".apiToken")])
        return (self.env.get(env) or None) if env else None

    def require(self, key: str) -> str:
        value = self.get(key)
        if not value:
            z2jh_name = Z2JH_NAMES.get(key)
            also = f" (or z2jh's name {z2jh_name})" if z2jh_name else ""
            raise SecretError(
                f"{self.where()}: no key {key}{also}; add it: {patch_command(self.existing, key)}"
            )
        return value

    # -- the hub's own secrets, read here only with an existing Secret (else JupyterHub
    # reads the chart's from its environment itself) --

    def cookie_secret(self) -> str:
        value = self.require(COOKIE_SECRET)
        if not re.fullmatch(r"(?:[0-9a-fA-F]{2})+", value):
            raise SecretError(f"{self.where()}: {COOKIE_SECRET}: expected hex (openssl rand -hex 32)")
        return value

    def crypt_keys(self) -> list[str]:
        """The auth_state keys: one, or several separated by ';' (the first encrypts)."""
        keys = [k.strip() for k in self.require(CRYPT_KEY).split(";") if k.strip()]
        for k in keys:
            if not _is_crypt_key(k):
                raise SecretError(
                    f"{self.where()}: {CRYPT_KEY}: each key must be 32 bytes, hex (openssl rand -hex 32) or base64"
                )
        return keys

    def uninstall_token(self) -> str | None:
        """The uninstall hook's token: the Secret's, else derived from its cookie secret
        (z2jh's layout has none); without an existing Secret, the chart's."""
        if self.existing:
            return self.from_existing(UNINSTALL_TOKEN) or derived_token("uninstall", self.cookie_secret())
        return self.get(UNINSTALL_TOKEN)

    def service_token(self, key: str) -> str:
        """hub.services.<key>'s token: the existing Secret's key (which wins over an
        explicit apiToken, as in z2jh), else the chart's."""
        token = self.get(service_key(key))
        if not token:
            if self.existing:
                raise SecretError(
                    f"hub.services.{key}: no API token: {self.where()} has no key {service_key(key)} "
                    f"and hub.services.{key}.apiToken is not set; add it: "
                    f"{patch_command(self.existing, service_key(key))}"
                )
            raise SecretError(
                f"hub.services.{key}: its API token did not reach the hub (env {service_token_env(key)})"
            )
        if not API_TOKEN_RE.fullmatch(token):
            raise SecretError(
                f"HPCHUB-R046 {service_key(key)}: must be {API_TOKEN_RULE} (openssl rand -hex 32)"
            )
        return token

    def values_overlay(self) -> dict[str, Any]:
        """values.yaml of the existing Secret (z2jh's way to keep secret config out of the
        chart's values), checked to hold only what the hub reads."""
        text = self.raw(VALUES)
        if not text:
            return {}
        print(f"Loading {self.directory / VALUES}", flush=True)  # as z2jh does
        try:
            overlay = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            # Only where: PyYAML's message quotes the line, which may hold a secret.
            mark = getattr(e, "problem_mark", None)
            at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise SecretError(f"{self.where()}: {VALUES} is not YAML{at}") from None
        if not isinstance(overlay, Mapping):
            raise SecretError(f"{self.where()}: {VALUES}: expected a mapping at the top level")
        for path in _leaves(overlay, 2):
            if not any(path == k or path.startswith(k + ".") for k in SECRET_VALUES_KEYS):
                raise SecretError(
                    f"{self.where()}: {VALUES} sets {path}, which the chart reads at install, not the "
                    f"hub; put it in your values file (a Secret's values.yaml may set "
                    f"{', '.join(SECRET_VALUES_KEYS)})"
                )
        for name, spec in ((overlay.get("hub") or {}).get("services") or {}).items():
            for token_key in ("apiToken", "api_token"):
                if token_key in (spec or {}):
                    raise SecretError(
                        f"{self.where()}: {VALUES} sets hub.services.{name}.{token_key}; put the token "
                        f"in the Secret itself, key {service_key(name)} (as z2jh reads it)"
                    )
        for section, key in (
            ("JupyterHub", "cookie_secret"),
            ("CryptKeeper", "keys"),
            ("ConfigurableHTTPProxy", "auth_token"),
        ):
            if key in (((overlay.get("hub") or {}).get("config") or {}).get(section) or {}):
                raise SecretError(
                    f"{self.where()}: {VALUES} sets hub.config.{section}.{key}; put it in the Secret "
                    f"itself, key hub.config.{section}.{key}"
                )
        return dict(overlay)


def _leaves(tree: Mapping[str, Any], depth: int, prefix: str = "") -> list[str]:
    """Dotted paths of ``tree`` down to ``depth`` levels."""
    out = []
    for k, v in tree.items():
        path = f"{prefix}{k}"
        if depth > 1 and isinstance(v, Mapping) and v:
            out += _leaves(v, depth - 1, path + ".")
        else:
            out.append(path)
    return out


def _is_crypt_key(key: str) -> bool:
    """What JupyterHub's CryptKeeper accepts: 32 bytes as 64 hex or 44 base64 characters,
    or raw."""
    if len(key) == 64 and re.fullmatch(r"[0-9a-fA-F]{64}", key):
        return True
    if len(key) == 44:
        try:
            return len(base64.urlsafe_b64decode(key.encode())) == 32
        except (binascii.Error, ValueError):
            return False
    return len(key.encode()) == 32
