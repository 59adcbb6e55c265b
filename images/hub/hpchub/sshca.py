"""The hub's SSH user CA: short-lived certificates for users whose authenticator issues
no SSH credentials (OAuth). Login nodes trust the CA with ``TrustedUserCAKeys``.

A certificate is signed per user on demand (principal = the username), kept in memory
only, and re-signed when less than a quarter of its lifetime (at least 5 minutes) is left,
so a spawn or a poll never presents a certificate that expires mid-handshake.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import asyncssh

# Clock skew between the hub and login nodes: certificates are valid from a bit earlier.
BACKDATE_SECONDS = 300
MIN_RENEW_SECONDS = 300


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

    def __init__(self, private_key_file: str | Path, lifetime_minutes: int = 720) -> None:
        self.private_key_file = Path(private_key_file)
        self.lifetime = max(int(lifetime_minutes), 5) * 60
        self._ca_key: asyncssh.SSHKey | None = None
        self._cache: dict[str, UserCredentials] = {}

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

    def credentials_for(self, username: str, force_command: str | None = None) -> UserCredentials:
        """A valid certificate for ``username``, re-signed when close to expiry.

        ``force_command`` (the status account): the certificate itself restricts what it
        may run, whatever the login node's sshd_config says.
        """
        key = f"{username}\0{force_command or ''}"
        cached = self._cache.get(key)
        if cached and cached.valid_for(self.renew_margin()):
            return cached
        creds = self.sign(username, force_command=force_command)
        self._cache[key] = creds
        return creds

    def sign(self, username: str, force_command: str | None = None) -> UserCredentials:
        now = time.time()
        user_key = asyncssh.generate_private_key("ssh-ed25519")
        expires = now + self.lifetime
        cert = self.ca_key.generate_user_certificate(
            user_key,
            key_id=f"hpchub:{username}:{int(now)}",
            principals=[username],
            valid_after=int(now - BACKDATE_SECONDS),
            valid_before=int(expires),
            # The hub runs commands and no interactive sessions.
            permit_x11_forwarding=False,
            permit_agent_forwarding=False,
            permit_pty=False,
            permit_user_rc=False,
            permit_port_forwarding=not force_command,
            force_command=force_command or None,
        )
        return UserCredentials(private_key=user_key, certificate=cert, expires=expires)


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
