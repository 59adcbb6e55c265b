"""Password + OTP login exchanged for an SSH key and certificate (NERSC's sshproxy style).

The login form asks for username, password and one-time password. The authenticator posts
them to the site's key-issuing API (HTTP basic auth, the OTP appended to the password as
sshproxy expects), and keeps what comes back -- an OpenSSH private key and a user
certificate -- in encrypted ``auth_state`` only. Nothing is written to disk.

The API may answer with

* ``text/plain``: the private key (PEM) followed by the certificate line (sshproxy), or
* ``application/json``: ``{"private_key", "certificate", "groups"?, "allocations"?,
  "uid"?, "gid"?}``.

The login does not outlive the certificate: ``refresh_user`` reports the user's auth as
expired once the certificate is (about to be), and JupyterHub then asks for a new login.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
from typing import Any

import asyncssh
from jupyterhub.auth import Authenticator
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Float, Integer, Unicode, default


class KeyServiceError(Exception):
    """The key-issuing API answered with something that is not a usable key + certificate."""


def parse_key_response(body: bytes, content_type: str) -> dict[str, Any]:
    """Split the API's answer into auth_state fields (without validating them)."""
    text = body.decode("utf-8", "replace")
    if content_type.split(";")[0].strip() == "application/json":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise KeyServiceError(f"the key service sent invalid JSON: {e}") from None
        if not isinstance(data, dict):
            raise KeyServiceError("the key service sent JSON that is not an object")
        out = {
            "ssh_private_key": data.get("private_key") or data.get("ssh_private_key") or "",
            "ssh_certificate": (data.get("certificate") or data.get("ssh_certificate") or "").strip(),
        }
        for key in ("groups", "allocations", "uid", "gid"):
            if key in data:
                out[key] = data[key]
        return out
    # sshproxy: the private key PEM, then the certificate as one line.
    end_marker = "-----END OPENSSH PRIVATE KEY-----"
    if end_marker not in text:
        raise KeyServiceError("the key service's answer holds no OpenSSH private key")
    key, _, rest = text.partition(end_marker)
    cert_lines = [ln.strip() for ln in rest.splitlines() if "-cert-v01@openssh.com" in ln]
    if not cert_lines:
        raise KeyServiceError("the key service's answer holds no SSH certificate")
    return {"ssh_private_key": key + end_marker + "\n", "ssh_certificate": cert_lines[0]}


def check_credentials(state: dict[str, Any], username: str) -> dict[str, Any]:
    """Validate key and certificate; add ``ssh_cert_expires`` (epoch seconds)."""
    try:
        key = asyncssh.import_private_key(state["ssh_private_key"])
    except (KeyError, asyncssh.KeyImportError) as e:
        raise KeyServiceError(f"the key service sent an unreadable private key ({e})") from None
    try:
        cert = asyncssh.import_certificate(state["ssh_certificate"])
    except (KeyError, asyncssh.KeyImportError) as e:
        raise KeyServiceError(f"the key service sent an unreadable certificate ({e})") from None
    if cert.key.public_data != key.public_data:
        raise KeyServiceError("the key service's certificate is not for the key it sent")
    if cert.principals and username not in cert.principals:
        raise KeyServiceError(f"the key service's certificate is not valid for {username!r}")
    # asyncssh keeps the validity window private; there is no public accessor (2.24).
    expires = int(getattr(cert, "valid_before", None) or cert._valid_before)
    if expires <= time.time():
        raise KeyServiceError("the key service sent a certificate that has already expired")
    return {**state, "ssh_cert_expires": expires}


class SSHProxyAuthenticator(Authenticator):
    """Username, password and OTP, exchanged for an SSH key + certificate at `url`."""

    url = Unicode(
        "",
        help="URL of the key-issuing API (e.g. https://sshproxy.example.org/create_pair/default/).",
    ).tag(config=True)
    ca_bundle = Unicode(
        "",
        help="Path of a PEM file with the CA certificate(s) that sign the key API's TLS "
        "certificate (the chart mounts auth.sshproxy.caBundle there); empty: the system's CAs.",
    ).tag(config=True)
    timeout = Float(20.0, help="Seconds to wait for the key-issuing API.").tag(config=True)
    expiry_margin = Integer(
        300,
        help="Ask for a new login this many seconds before the SSH certificate expires, so no "
        "server is started with a certificate about to lapse.",
    ).tag(config=True)

    @default("request_otp")
    def _default_request_otp(self):
        return True

    @default("otp_prompt")
    def _default_otp_prompt(self):
        return "One-time password (OTP):"

    @default("auth_refresh_age")
    def _default_auth_refresh_age(self):
        # Check the certificate's expiry at least once a minute.
        return 60

    @default("refresh_pre_spawn")
    def _default_refresh_pre_spawn(self):
        return True

    def _request(self, username: str, password: str, otp: str) -> HTTPRequest:
        basic = base64.b64encode(f"{username}:{password}{otp}".encode()).decode()
        return HTTPRequest(
            self.url,
            method="POST",
            body=b"",
            headers={"Authorization": f"Basic {basic}", "Accept": "application/json, text/plain"},
            ca_certs=self.ca_bundle or None,
            request_timeout=self.timeout,
            connect_timeout=self.timeout,
            validate_cert=True,
        )

    async def authenticate(self, handler, data):
        username = (data.get("username") or "").strip()
        password = data.get("password") or ""
        otp = (data.get("otp") or "").strip()
        if not username or not password or not otp:
            return None
        if not self.url:
            raise web.HTTPError(500, "The key service is not configured (auth.sshproxy.url).")
        try:
            resp = await AsyncHTTPClient().fetch(self._request(username, password, otp))
        except HTTPClientError as e:
            if e.code in (401, 403):
                self.log.info("sshproxy refused %s (%s)", username, e.code)
                return None  # JupyterHub shows "Invalid username or password"
            self.log.error("sshproxy error for %s: %s", username, e)
            raise web.HTTPError(
                503, "The key service could not issue your SSH key; please try again later."
            ) from None
        except ssl.SSLError as e:
            # Not signed by the configured CA, or not for this host: a missing caBundle or an
            # impostor. The handshake failed before the password was sent.
            self.log.error(
                "sshproxy at %s: TLS certificate not trusted (%s); check auth.sshproxy.caBundle", self.url, e
            )
            raise web.HTTPError(
                503,
                "The key service's certificate could not be verified, so your password was not "
                "sent. Please tell your center's support.",
            ) from None
        except OSError as e:
            self.log.error("sshproxy at %s unreachable: %s", self.url, e)
            raise web.HTTPError(
                503, "The key service is unreachable; please try again in a few minutes."
            ) from None
        try:
            state = parse_key_response(resp.body, resp.headers.get("Content-Type", "text/plain"))
            state = check_credentials(state, username)
        except KeyServiceError as e:
            self.log.error("sshproxy answer for %s unusable: %s", username, e)
            raise web.HTTPError(502, f"Login failed: {e}.") from None
        return {"name": username, "auth_state": state}

    async def refresh_user(self, user, handler=None):
        """False (log in again) once the SSH certificate is within `expiry_margin` of expiring."""
        state = await user.get_auth_state()
        if not state or not state.get("ssh_cert_expires"):
            return False
        if float(state["ssh_cert_expires"]) - self.expiry_margin <= time.time():
            self.log.info("SSH certificate of %s expires; asking for a new login", user.name)
            return False
        return True
