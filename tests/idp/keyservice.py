"""A real key-issuing HTTP API in the style of NERSC's sshproxy, for tests.

POST with HTTP basic auth ``username:password+otp``; answers with a fresh ed25519 private
key and a user certificate signed by the service's CA (principal = username). ``fmt``
selects sshproxy's text answer or a JSON answer that also carries groups/allocations.

Run standalone (for manual browser checks): ``python tests/idp/keyservice.py PORT``.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import asyncssh
from tornado import httpserver, netutil, web


@dataclass
class Account:
    password: str
    otp: str
    groups: list[str] = field(default_factory=list)
    allocations: list[dict[str, Any]] = field(default_factory=list)
    uid: int | None = None
    gid: int | None = None


@dataclass
class KeyService:
    accounts: dict[str, Account]
    fmt: str = "text"  # "text" (sshproxy) or "json"
    cert_lifetime: int = 3600
    ca: asyncssh.SSHKey = field(default_factory=lambda: asyncssh.generate_private_key("ssh-ed25519"))
    requests: list[str] = field(default_factory=list)
    # Test hooks: an HTTP status to answer with instead, or a principal to sign for instead.
    fail_with: int | None = None
    wrong_principal: str | None = None

    def issue(self, username: str) -> tuple[str, str]:
        key = asyncssh.generate_private_key("ssh-ed25519")
        now = int(time.time())
        principal = self.wrong_principal or username
        cert = self.ca.generate_user_certificate(
            key,
            f"hpchub-test-{username}",
            principals=[principal],
            valid_after=now - 60,
            valid_before=now + self.cert_lifetime,
        )
        return key.export_private_key("openssh").decode(), cert.export_certificate().decode().strip()


class CreatePairHandler(web.RequestHandler):
    def initialize(self, service: KeyService) -> None:
        self.service = service

    def check_xsrf_cookie(self) -> None:
        pass

    def post(self, _key_type: str = "default") -> None:
        svc = self.service
        header = self.request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            raise web.HTTPError(401)
        username, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        svc.requests.append(username)
        if svc.fail_with:
            raise web.HTTPError(svc.fail_with)
        account = svc.accounts.get(username)
        if account is None or secret != account.password + account.otp:
            raise web.HTTPError(403)
        private_key, cert = svc.issue(username)
        if svc.fmt == "json":
            self.set_header("Content-Type", "application/json")
            body: dict[str, Any] = {
                "private_key": private_key,
                "certificate": cert,
                "groups": account.groups,
                "allocations": account.allocations,
            }
            if account.uid is not None:
                body["uid"], body["gid"] = account.uid, account.gid
            self.finish(json.dumps(body))
        else:
            self.set_header("Content-Type", "text/plain")
            self.finish(private_key + cert + "\n")


def make_app(service: KeyService) -> web.Application:
    return web.Application([(r"/create_pair/([a-z]+)/?", CreatePairHandler, {"service": service})])


def start(
    service: KeyService, ssl_context: ssl.SSLContext | None = None
) -> tuple[httpserver.HTTPServer, str]:
    """Listen on a free loopback port in the running IOLoop; returns (server, url).
    With ``ssl_context`` (tests/harness/tlsca.py) the service speaks HTTPS."""
    sockets = netutil.bind_sockets(0, "127.0.0.1")
    server = httpserver.HTTPServer(make_app(service), ssl_options=ssl_context)
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    scheme = "https" if ssl_context else "http"
    return server, f"{scheme}://127.0.0.1:{port}/create_pair/default/"


if __name__ == "__main__":  # pragma: no cover - manual use
    import asyncio
    import sys

    async def main() -> None:
        svc = KeyService({"alice": Account("pw", "123456", groups=["gpu-users"])})
        server = httpserver.HTTPServer(make_app(svc))
        server.listen(int(sys.argv[1]), "127.0.0.1")
        await asyncio.Event().wait()

    asyncio.run(main())
