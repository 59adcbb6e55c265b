"""A user's uid and gid on the supercomputer, from a source the user cannot write.

Spin pods run as this uid/gid (files they write on the shared file systems must belong to
the user), and the SSH CA refuses to sign for uids below the floor. Values ``identity``
name the sources:

- ``fromAuthState``: keys of ``auth_state`` the authenticator wrote — an OIDC claim as
  ``oauth_user.<claim>``, the key service's ``uid``/``gid``. The identity provider signed
  them and the hub stored them encrypted; no user writes there.
- ``lookup``: ``getent passwd`` on a system's login node, run as the site's service account
  (``identity.lookup.user``) with a certificate whose forced command is that lookup and
  nothing else. The service account's shell and start-up files are the site's, so what it
  prints is the account database. Never a command run *as the user*: their ``~/.bashrc``
  runs first and can print ``0`` (issue 8, hole 1).

With both, the lookup confirms the claims. The uid must map back to the username (no
second account shares it: ``getent passwd <uid>`` names the same user), and uid and gid
must not be below ``identity.minUid`` / ``identity.minGid``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .sshca import CertificateRefused, certificate_authority
from .sshpool import SSHError, SSHTarget, pool

# The service account's forced command (also in the certificate, so it holds even on a
# login node whose sshd_config has no ForceCommand for the account). The hub sends the
# name or uid to look up as the "command"; sshd hands it over in SSH_ORIGINAL_COMMAND.
LOOKUP_COMMAND = 'getent passwd -- "$SSH_ORIGINAL_COMMAND"'
# Names the lookup accepts (POSIX-style account names); anything else is refused unsent.
_ACCOUNT = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
_PASSWD = re.compile(r"([^:\n]+):[^:\n]*:(\d+):(\d+):[^:\n]*:[^:\n]*:[^:\n]*")
CACHE_SECONDS = 3600.0


class IdentityError(Exception):
    """The user's uid/gid cannot be established or is refused; ``status`` is the HTTP
    status the spawn answers with (403: policy, 503: the source is unreachable)."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Identity:
    username: str
    uid: int
    gid: int
    source: str  # for logs and messages: "auth_state" or "lookup on <system>"


@dataclass(frozen=True)
class IdentityConfig:
    uid_key: str = ""
    gid_key: str = ""
    lookup_system: str = ""
    lookup_user: str = ""
    min_uid: int = 1000
    min_gid: int = 100

    @classmethod
    def from_values(cls, identity: Mapping[str, Any] | None) -> IdentityConfig:
        identity = identity or {}
        claims = identity.get("fromAuthState") or {}
        lookup = identity.get("lookup") or {}
        return cls(
            uid_key=str(claims.get("uid") or ""),
            gid_key=str(claims.get("gid") or ""),
            lookup_system=str(lookup.get("system") or ""),
            lookup_user=str(lookup.get("user") or ""),
            min_uid=int(identity.get("minUid", 1000)),
            min_gid=int(identity.get("minGid", 100)),
        )

    @property
    def configured(self) -> bool:
        """A trusted source is configured (else Spin runs every user as spin.uid/gid)."""
        return bool(self.uid_key or self.lookup_system)


def claim(auth_state: Mapping[str, Any] | None, path: str) -> int | None:
    """The integer at a dotted ``path`` of auth_state (``oauth_user.uidNumber``), or None."""
    node: Any = auth_state or {}
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    if isinstance(node, bool):
        return None
    if isinstance(node, int):
        return node
    if isinstance(node, str) and re.fullmatch(r"[0-9]{1,10}", node):
        return int(node)
    return None


_cache: dict[tuple[str, str], tuple[float, Identity]] = {}
# Lookups in flight: a user starting two servers at once is looked up once.
_inflight: dict[tuple[str, str], asyncio.Future[Identity]] = {}


async def resolve(
    config: IdentityConfig,
    username: str,
    auth_state: Mapping[str, Any] | None,
    systems: Mapping[str, Any],
    ssh_ca: Mapping[str, Any],
) -> Identity | None:
    """The user's identity from the configured trusted sources; None when none is
    configured. Raises IdentityError with a message for the user."""
    if not config.configured:
        return None
    uid = gid = None
    source = "auth_state"
    if config.uid_key:
        uid = claim(auth_state, config.uid_key)
        gid = claim(auth_state, config.gid_key) if config.gid_key else None
        if uid is None or (config.gid_key and gid is None):
            raise IdentityError(
                "Your sign-in did not say which uid/gid you have on the supercomputer "
                f"({config.uid_key}, {config.gid_key or 'no gid key'}); sign in again or ask support."
            )
    if config.lookup_system:
        looked = await lookup(config, username, systems, ssh_ca)
        if uid is not None and uid != looked.uid:
            raise IdentityError(
                f"Your sign-in says uid {uid}, but {looked.source} says {username} has uid {looked.uid}; ask support."
            )
        uid, gid, source = looked.uid, (gid if gid is not None else looked.gid), looked.source
    assert uid is not None
    if gid is None:
        raise IdentityError(f"No gid is known for {username} (identity.fromAuthState.gid); ask support.")
    if uid < config.min_uid:
        raise IdentityError(
            f"{username} has uid {uid}, below {config.min_uid}: system accounts cannot use the hub."
        )
    if gid < config.min_gid:
        raise IdentityError(
            f"{username} has gid {gid}, below {config.min_gid}: system groups are not used here."
        )
    return Identity(username, uid, gid, source)


async def lookup(
    config: IdentityConfig, username: str, systems: Mapping[str, Any], ssh_ca: Mapping[str, Any]
) -> Identity:
    """``getent passwd`` by name, then by the uid it gave (must name the same account),
    as the service account; cached for an hour (uids do not change under a running hub)."""
    key = (config.lookup_system, username)
    hit = _cache.get(key)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    pending = _inflight.get(key)
    if pending is None:
        pending = asyncio.ensure_future(_lookup(config, username, systems, ssh_ca))
        _inflight[key] = pending
        pending.add_done_callback(lambda _f: _inflight.pop(key, None))
    return await asyncio.shield(pending)


async def _lookup(
    config: IdentityConfig, username: str, systems: Mapping[str, Any], ssh_ca: Mapping[str, Any]
) -> Identity:
    key = (config.lookup_system, username)
    values = systems.get(config.lookup_system) or {}
    display = str(values.get("displayName", config.lookup_system))
    if not _ACCOUNT.fullmatch(username):
        raise IdentityError(f"{username!r} is not an account name {display} knows.")
    if not ssh_ca.get("enabled") or not config.lookup_user:
        raise IdentityError("identity.lookup needs sshCA.enabled and identity.lookup.user", 500)
    target = SSHTarget.from_values(display, values.get("ssh") or {})
    try:
        creds = certificate_authority(ssh_ca).service_credentials(config.lookup_user, LOOKUP_COMMAND)
    except CertificateRefused as e:
        raise IdentityError(str(e), 500) from e
    entry = await _getent(target, config.lookup_user, creds, username)
    if entry is None or entry[0] != username:
        raise IdentityError(f"{display} has no account {username}.")
    _, uid, gid = entry
    owner = await _getent(target, config.lookup_user, creds, str(uid))
    if owner is None or owner[0] != username:
        other = owner[0] if owner else "no account"
        raise IdentityError(
            f"uid {uid} of {username} on {display} maps back to {other}, not to {username}; ask support."
        )
    found = Identity(username, uid, gid, f"the account database of {display}")
    _cache[key] = (time.monotonic() + CACHE_SECONDS, found)
    return found


async def _getent(target: SSHTarget, service_user: str, creds: Any, key: str) -> tuple[str, int, int] | None:
    try:
        result = await pool.run(target, service_user, creds, [key], timeout=30)
    except SSHError as e:
        raise IdentityError(
            f"{target.system}: cannot look up accounts right now ({e}); try again later.", 503
        ) from e
    if result.exit_status == 2:  # getent: key not found
        return None
    lines = result.stdout.splitlines()
    m = _PASSWD.fullmatch(lines[0]) if result.ok and len(lines) == 1 else None
    if m is None:
        raise IdentityError(
            f"{target.system}: the account lookup of {service_user} answered unexpectedly "
            f"(exit {result.exit_status}); is its forced command getent passwd?",
            503,
        )
    return m.group(1), int(m.group(2)), int(m.group(3))
