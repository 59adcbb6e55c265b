"""A small real OAuth2/OIDC provider for tests (authorization-code flow).

/authorize shows a sign-in form (username + password); on success it redirects back to the
client's redirect_uri with a one-time code. /token swaps the code (client id + secret
checked) for a bearer token; /userinfo returns ``preferred_username`` and ``groups``.
Enough for oauthenticator's GenericOAuthenticator, exercised through a real browser.

Run standalone: ``python tests/idp/oidc.py PORT`` (users alice/bob, password "pw").
"""

from __future__ import annotations

import base64
import html
import json
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlencode

from tornado import httpserver, netutil, web


@dataclass
class Provider:
    client_id: str
    client_secret: str
    users: dict[str, dict]  # name -> {"password": ..., "groups": [...]}
    codes: dict[str, dict] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    base: str = ""


class _Base(web.RequestHandler):
    def initialize(self, provider: Provider) -> None:
        self.p = provider

    def check_xsrf_cookie(self) -> None:
        pass


class AuthorizeHandler(_Base):
    def get(self) -> None:
        if self.get_argument("client_id") != self.p.client_id:
            raise web.HTTPError(400, "unknown client")
        self._form()

    def _form(self, error: str = "") -> None:
        hidden = "".join(
            f'<input type="hidden" name="{k}" value="{html.escape(self.get_argument(k, ""))}">'
            for k in ("client_id", "redirect_uri", "state", "scope", "response_type")
        )
        self.finish(
            "<!doctype html><html lang='en'><head><title>Test IdP sign-in</title></head><body>"
            "<h1>Test identity provider</h1>"
            + (f"<p role='alert'>{html.escape(error)}</p>" if error else "")
            + "<form method='post'>"
            + hidden
            + "<label for='u'>Username</label> <input id='u' name='username'> "
            "<label for='p'>Password</label> <input id='p' name='password' type='password'> "
            "<button type='submit'>Sign in</button></form></body></html>"
        )

    def post(self) -> None:
        name = self.get_argument("username")
        user = self.p.users.get(name)
        if not user or user["password"] != self.get_argument("password"):
            self.set_status(403)
            return self._form("wrong username or password")
        code = secrets.token_urlsafe(16)
        self.p.codes[code] = {
            "user": name,
            "redirect_uri": self.get_argument("redirect_uri"),
        }
        query = urlencode({"code": code, "state": self.get_argument("state", "")})
        self.redirect(f"{self.get_argument('redirect_uri')}?{query}")


class TokenHandler(_Base):
    def post(self) -> None:
        client_id = self.get_argument("client_id", "")
        client_secret = self.get_argument("client_secret", "")
        header = self.request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            client_id, _, client_secret = base64.b64decode(header[6:]).decode().partition(":")
        if (client_id, client_secret) != (self.p.client_id, self.p.client_secret):
            raise web.HTTPError(401, "bad client credentials")
        grant = self.p.codes.pop(self.get_argument("code", ""), None)
        if grant is None or grant["redirect_uri"] != self.get_argument("redirect_uri", grant["redirect_uri"]):
            raise web.HTTPError(400, "invalid_grant")
        token = secrets.token_urlsafe(24)
        self.p.tokens[token] = grant["user"]
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"access_token": token, "token_type": "Bearer", "expires_in": 3600}))


class UserinfoHandler(_Base):
    def get(self) -> None:
        token = self.request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        name = self.p.tokens.get(token)
        if name is None:
            raise web.HTTPError(401)
        self.set_header("Content-Type", "application/json")
        info = {
            "sub": name,
            "preferred_username": name,
            "groups": self.p.users[name].get("groups", []),
        }
        self.finish(json.dumps(info))


def make_app(provider: Provider) -> web.Application:
    kw = {"provider": provider}
    return web.Application(
        [
            (r"/authorize", AuthorizeHandler, kw),
            (r"/token", TokenHandler, kw),
            (r"/userinfo", UserinfoHandler, kw),
        ]
    )


def start(provider: Provider) -> tuple[httpserver.HTTPServer, str]:
    sockets = netutil.bind_sockets(0, "127.0.0.1")
    server = httpserver.HTTPServer(make_app(provider))
    server.add_sockets(sockets)
    provider.base = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    return server, provider.base


if __name__ == "__main__":  # pragma: no cover - manual use
    import asyncio
    import sys

    async def main() -> None:
        users = {
            "alice": {"password": "pw", "groups": ["gpu-users"]},
            "bob": {"password": "pw"},
        }
        server = httpserver.HTTPServer(make_app(Provider("hpchub", "secret", users)))
        server.listen(int(sys.argv[1]), "127.0.0.1")
        await asyncio.Event().wait()

    asyncio.run(main())
