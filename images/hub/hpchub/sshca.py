"""The hub's SSH user CA: short-lived certificates for users whose authenticator issues
no SSH credentials (OAuth). Login nodes trust the CA with ``TrustedUserCAKeys``.

A certificate is signed per user on demand (principal = the username), kept in memory
only, and re-signed when less than a quarter of its lifetime (at least 5 minutes) is left,
so a spawn or a poll never presents a certificate that expires mid-handshake.

A trusted CA's certificate is as good as a password for the account it names, and the name
is the identity provider's username, which a user may be able to choose. So (issue 8):

- the CA never signs for root or a system account: a deny list (``sshCA.denyPrincipals``,
  plus the hub's own service account) and a uid floor, with the uid from the trusted
  identity source (``hpchub.identity``: IdP claims or the service account's lookup on the
  login node, never the user's shell);
- every certificate carries ``source-address`` (``sshCA.sourceAddresses``, the hub's egress)
  when configured, and a unique serial (in its key ID too), so the login nodes' logs tie
  each login to one signature;
- login nodes should accept a certificate only for principals their
  ``AuthorizedPrincipalsCommand``/``File`` allows (docs/operator-guide.md), which also
  refuses system accounts on the node itself.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import asyncssh

log = logging.getLogger("hpchub.sshca")

# Clock skew between the hub and login nodes: certificates are valid from a bit earlier.
BACKDATE_SECONDS = 300
MIN_RENEW_SECONDS = 300
# Accounts no user certificate is ever signed for, whatever values say: root and the system
# accounts Debian, RHEL and Slurm/munge sites have. values' sshCA.denyPrincipals adds more.
ALWAYS_DENIED = frozenset(
    {
        "root", "toor", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news",
        "uucp", "proxy", "www-data", "backup", "list", "irc", "gnats", "nobody", "nfsnobody",
        "adm", "admin", "operator", "halt", "shutdown", "ftp", "sshd", "messagebus", "polkitd",
        "systemd-network", "systemd-resolve", "systemd-timesync", "dbus", "munge", "slurm",
        "postgres", "mysql", "ldap", "nscd", "nslcd", "sssd", "chrony", "ntp", "rpc", "rpcuser",
    }
)  # fmt: skip
# What a principal may look like: an account name, nothing a principals file could misread.
_PRINCIPAL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}")
DEFAULT_MIN_UID = 1000


class CertificateRefused(ValueError):
    """The CA will not sign for this name; the message says why, for the user."""


class _Serials:
    """Unique certificate serials: microseconds since the epoch, strictly increasing in the
    process (a restarted hub starts above every serial it issued before)."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, time.time_ns() // 1000)
            return self._last


SERIALS = _Serials()


@dataclass(frozen=True)
class UserCredentials:
    """An SSH private key and the certificate that goes with it (None: plain key)."""

    private_key: asyncssh.SSHKey
    certificate: asyncssh.SSHCertificate | None
    expires: float | None  # epoch seconds; None: does not expire

    @property
    def fingerprint(self) -> str:
        """Identifies the credential in the connection pool (a renewed cert reconnects)."""
        cert = self.certificate.public_data.hex()[-32:] if self.certificate else ""
        return self.private_key.get_fingerprint() + cert

    def valid_for(self, seconds: float) -> bool:
        return self.expires is None or self.expires - time.time() > seconds


class SSHCertificateAuthority:
    """Signs user certificates with the CA key mounted from the chart's Secret."""

    def __init__(
        self,
        private_key_file: str | Path,
        lifetime_minutes: int = 720,
        *,
        deny_principals: Iterable[str] = (),
        min_uid: int = DEFAULT_MIN_UID,
        source_addresses: Iterable[str] = (),
    ) -> None:
        self.private_key_file = Path(private_key_file)
        self.lifetime = max(int(lifetime_minutes), 5) * 60
        self.denied = ALWAYS_DENIED | {p.lower() for p in deny_principals}
        self.min_uid = int(min_uid)
        # Validated here, so a bad CIDR fails at start-up, not at the first login.
        self.source_addresses = [str(ipaddress.ip_network(c, strict=False)) for c in source_addresses]
        self._ca_key: asyncssh.SSHKey | None = None
        self._cache: dict[str, UserCredentials] = {}
        self._service: dict[tuple[str, str], UserCredentials] = {}

    @property
    def ca_key(self) -> asyncssh.SSHKey:
        if self._ca_key is None:
            try:
                self._ca_key = asyncssh.read_private_key(str(self.private_key_file))
            except (OSError, asyncssh.KeyImportError) as e:
                raise RuntimeError(f"cannot read the hub's SSH CA key {self.private_key_file}: {e}") from e
        return self._ca_key

    def renew_margin(self) -> float:
        return max(self.lifetime / 4, MIN_RENEW_SECONDS)

    def cached(self, username: str) -> UserCredentials | None:
        """The user's certificate if it is still fresh (then no signature, no uid check)."""
        creds = self._cache.get(username)
        return creds if creds and creds.valid_for(self.renew_margin()) else None

    def credentials_for(self, username: str, uid: int | None = None) -> UserCredentials:
        """A valid certificate for ``username``, re-signed when close to expiry.

        ``uid``: the account's uid from the trusted identity source, checked against the
        floor; None when the hub has no such source (the login node's principals command is
        then the only uid floor).
        """
        cached = self.cached(username)
        if cached:
            return cached
        creds = self.sign(username, uid)
        self._cache[username] = creds
        return creds

    def check_principal(self, username: str, uid: int | None = None) -> None:
        if not _PRINCIPAL.fullmatch(username):
            raise CertificateRefused(f"no SSH certificate is issued for the name {username!r}")
        if username.lower() in self.denied:
            raise CertificateRefused(
                f"no SSH certificate is issued for {username}: it is a system account (sshCA.denyPrincipals)"
            )
        if uid is not None and uid < self.min_uid:
            raise CertificateRefused(
                f"no SSH certificate is issued for {username}: uid {uid} is below {self.min_uid} "
                "(a system account; identity.minUid)"
            )

    def sign(self, username: str, uid: int | None = None) -> UserCredentials:
        self.check_principal(username, uid)
        # The hub runs commands and no interactive sessions.
        return self._sign(
            username, "hpchub", permit_pty=False, permit_port_forwarding=True, force_command=None
        )

    def service_credentials(self, principal: str, force_command: str | None = None) -> UserCredentials:
        """A certificate for one of the hub's own service accounts on the login nodes (the
        identity lookup, the status account): no deny list (the operator named it; user
        certificates are never signed for it), no forwarding, and with ``force_command``
        the certificate itself restricts what it may run, whatever sshd_config says."""
        key = (principal, force_command)
        cached = self._service.get(key)
        if cached and cached.valid_for(self.renew_margin()):
            return cached
        if not _PRINCIPAL.fullmatch(principal):
            raise CertificateRefused(f"the service account name {principal!r} is not an account name")
        creds = self._sign(
            principal,
            "hpchub-service",
            permit_pty=False,
            permit_port_forwarding=False,
            force_command=force_command,
        )
        self._service[key] = creds
        return creds

    def _sign(
        self,
        principal: str,
        purpose: str,
        *,
        permit_pty: bool,
        permit_port_forwarding: bool,
        force_command: str | None,
    ) -> UserCredentials:
        now = time.time()
        user_key = asyncssh.generate_private_key("ssh-ed25519")
        expires = now + self.lifetime
        serial = SERIALS.next()
        cert = self.ca_key.generate_user_certificate(
            user_key,
            # What sshd logs with every login ("Accepted certificate ID ... (serial N)").
            key_id=f"{purpose}:{principal}:{serial}",
            serial=serial,
            principals=[principal],
            valid_after=int(now - BACKDATE_SECONDS),
            valid_before=int(expires),
            force_command=force_command,
            source_address=self.source_addresses or None,
            permit_x11_forwarding=False,
            permit_agent_forwarding=False,
            permit_port_forwarding=permit_port_forwarding,  # tunnel mode forwards ports
            permit_pty=permit_pty,
            permit_user_rc=False,
        )
        log.info("signed %s certificate for %s (serial %d)", purpose, principal, serial)
        return UserCredentials(private_key=user_key, certificate=cert, expires=expires)


_CAS: dict[tuple[Any, ...], SSHCertificateAuthority] = {}


def certificate_authority(ssh_ca: Mapping[str, Any]) -> SSHCertificateAuthority:
    """The hub's CA for the ``ssh_ca`` settings (one instance per distinct settings, so its
    cache of certificates lives as long as the hub)."""
    key = (
        str(ssh_ca.get("privateKeyFile", "")),
        int(ssh_ca.get("certLifetimeMinutes", 720)),
        tuple(sorted(ssh_ca.get("denyPrincipals") or ())),
        int(ssh_ca.get("minUid", DEFAULT_MIN_UID)),
        tuple(ssh_ca.get("sourceAddresses") or ()),
    )
    ca = _CAS.get(key)
    if ca is None:
        ca = _CAS[key] = SSHCertificateAuthority(
            key[0], key[1], deny_principals=key[2], min_uid=key[3], source_addresses=key[4]
        )
    return ca


def credentials_from_auth_state(auth_state: dict | None, margin: float = 60) -> UserCredentials | None:
    """The key and certificate an authenticator (e.g. sshproxy) put in auth_state.

    None when absent or about to expire (then the hub CA, if enabled, signs one).
    """
    if not auth_state or not auth_state.get("ssh_private_key"):
        return None
    key, cert = _parsed(auth_state["ssh_private_key"], auth_state.get("ssh_certificate") or "")
    expires = auth_state.get("ssh_cert_expires")
    creds = UserCredentials(key, cert, float(expires) if expires else None)
    return creds if creds.valid_for(margin) else None


@lru_cache(maxsize=4096)
def _parsed(private_key: str, certificate: str) -> tuple[asyncssh.SSHKey, asyncssh.SSHCertificate | None]:
    """Parse a key (and certificate) once: an RSA-4096 key costs ~0.5 s of the hub's one
    event loop to import, and every SSH call asks for the user's credentials. Keyed by the
    text itself, so a renewed key or certificate is parsed anew; bounded."""
    key = asyncssh.import_private_key(private_key)
    cert = asyncssh.import_certificate(certificate) if certificate else None
    return key, cert
