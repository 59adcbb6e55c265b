"""Logging in through the real authenticators: password + OTP against a key-issuing API,
and OAuth/OIDC against an identity provider -- both real HTTP servers started here."""

from __future__ import annotations

import base64
import copy
import json
import re
import sqlite3

import pytest
from cryptography.fernet import Fernet, InvalidToken
from playwright.sync_api import expect

from ..harness.minihpc import Hub
from ..idp import keyservice, oidc
from .helpers import local_hub, sshproxy_login, start_hub

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ALICE_ALLOC = [{"account": "m1000", "qos": ["normal"], "partitions": ["debug"]}]


@pytest.fixture(scope="module")
def key_service(loop_thread):
    svc = keyservice.KeyService(
        {
            "alice": keyservice.Account("pw-alice", "246810", groups=["gpu-users"], allocations=ALICE_ALLOC),
            "newbie": keyservice.Account("pw-newbie", "135790", allocations=[]),
            "brief": keyservice.Account("pw-brief", "112233"),
        },
        fmt="json",
    )
    server, url = loop_thread.call(keyservice.start, svc)
    svc.url = url
    yield svc
    loop_thread.call(server.stop)


@pytest.fixture(scope="module")
def sshproxy_hub(tmp_path_factory, base_values, key_service):
    values = copy.deepcopy(base_values)
    values["auth"] = {
        "type": "sshproxy",
        "allowAllUsers": True,
        "sshproxy": {"url": key_service.url},
    }
    # refresh_user (the certificate check) at most every 3 s instead of every minute
    traits = {"SSHProxyAuthenticator": {"auth_refresh_age": 3}}
    hub = start_hub(tmp_path_factory, "hub-sshproxy", values, traits=traits)
    yield hub
    hub.stop()


@pytest.fixture(scope="module")
def idp(loop_thread):
    users = {
        "gina": {"password": "pw-gina", "groups": ["gpu-users", "staff"]},
        "hank": {"password": "pw-hank", "groups": ["staff"]},
    }
    provider = oidc.Provider("hpchub-test", "client-secret-123", users)
    server, _ = loop_thread.call(oidc.start, provider)
    yield provider
    loop_thread.call(server.stop)


@pytest.fixture(scope="module")
def oauth_hub(tmp_path_factory, base_values, idp):
    hub = local_hub(tmp_path_factory.mktemp("hub-oauth"), base_values)
    hub.values["auth"] = {
        "type": "oauth",
        "allowAllUsers": True,
        "oauth": {
            "clientId": idp.client_id,
            "authorizeUrl": idp.base + "/authorize",
            "tokenUrl": idp.base + "/token",
            "userdataUrl": idp.base + "/userinfo",
            "callbackUrl": hub.public + "/hub/oauth_callback",
            "scope": ["openid", "profile"],
            "usernameClaim": "preferred_username",
            "groupsClaim": "groups",
        },
    }
    hub.extra_env["HPCHUB_OAUTH_CLIENT_SECRET"] = idp.client_secret
    hub.start()
    yield hub
    hub.stop()


def test_password_and_otp_login_shows_console_limited_by_allocations(
    browser, sshproxy_hub, key_service, artifacts
):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    page.goto(sshproxy_hub.public + "/hub/login")
    expect(page.get_by_label("One-time password (OTP)")).to_be_visible()
    page.screenshot(path=artifacts / "login-sshproxy.png")
    sshproxy_login(page, sshproxy_hub, "alice", "pw-alice", "246810")
    page.wait_for_url("**/hub/home")
    # groups came from the key service (auth_state), so the GPU level is not refused for
    # the group -- but alice's only allocation may not use the gpu partition
    gpu = page.locator("#cell-mini-gpu")
    expect(gpu).to_contain_text("None of your allocations may use the gpu partition")
    expect(page.locator("#cell-mini-exclusive [data-js-start]")).to_be_visible()
    # The key, certificate and allocations are in the database only encrypted with the
    # hub's crypt key (JupyterHub's Fernet over the JSON auth_state).
    state = stored_auth_state(sshproxy_hub, "alice")
    assert state["ssh_private_key"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert state["ssh_certificate"].split()[0] == "ssh-ed25519-cert-v01@openssh.com"
    assert state["allocations"] == ALICE_ALLOC
    ctx.close()


def stored_auth_state(hub: Hub, user: str) -> dict:
    """alice's auth_state as the hub's sqlite file holds it: the encrypted column decrypts
    with the hub's key, and no other byte of the file carries the key or certificate."""
    db = hub.dir / "jupyterhub.sqlite"
    with sqlite3.connect(db) as conn:
        (row,) = conn.execute("SELECT encrypted_auth_state FROM users WHERE name = ?", (user,)).fetchone()
    assert row, f"no auth_state stored for {user}"
    fernet = Fernet(base64.urlsafe_b64encode(bytes.fromhex(hub.crypt_key)))
    try:
        state = json.loads(fernet.decrypt(bytes(row)))
    except InvalidToken:
        pytest.fail(
            f"users.encrypted_auth_state of {user} is not encrypted with the hub's crypt key: {bytes(row)[:60]!r}"
        )
    raw = db.read_bytes() + b"".join(p.read_bytes() for p in db.parent.glob("jupyterhub.sqlite-*"))
    for secret in (state["ssh_private_key"].splitlines()[1], state["ssh_certificate"].split()[1][:40]):
        assert secret.encode() not in raw, "SSH credentials in plain text in the hub database"
    return state


def test_user_without_allocation_may_only_use_the_login_node(browser, sshproxy_hub):
    ctx = browser.new_context()
    page = ctx.new_page()
    sshproxy_login(page, sshproxy_hub, "newbie", "pw-newbie", "135790")
    page.wait_for_url("**/hub/home")
    expect(page.locator("#cell-mini-shared [data-js-start]")).to_be_visible()
    for cell in ("mini-exclusive", "mini-configurable"):
        expect(page.locator(f"#cell-{cell}")).to_contain_text("You have no allocation to charge on Mini HPC")
    ctx.close()


def test_wrong_otp_is_refused_on_the_login_page(browser, sshproxy_hub, key_service):
    ctx = browser.new_context()
    page = ctx.new_page()
    sshproxy_login(page, sshproxy_hub, "alice", "pw-alice", "000000")
    expect(page.locator(".login_error")).to_contain_text("Invalid username or password")
    ctx.close()


def test_oauth_login_maps_idp_groups_to_console_roles(browser, oauth_hub, artifacts):
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(oauth_hub.public + "/hub/login")
    page.get_by_role("button", name=re.compile("Sign in with")).click()
    page.get_by_label("Username").fill("gina")
    page.get_by_label("Password").fill("pw-gina")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/hub/home")
    expect(page.locator("#cell-mini-gpu [data-js-start]")).to_be_visible()
    ctx.close()

    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(oauth_hub.public + "/hub/login")
    page.get_by_role("button", name=re.compile("Sign in with")).click()
    page.get_by_label("Username").fill("hank")
    page.get_by_label("Password").fill("pw-hank")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/hub/home")
    expect(page.locator("#cell-mini-gpu")).to_contain_text("Needs membership in gpu-users")
    groups = {g for g in oauth_hub.rest("GET", "/users/hank")["groups"]}
    assert groups == {"staff"}
    ctx.close()


def test_login_ends_when_the_ssh_certificate_expires(browser, sshproxy_hub, key_service):
    # valid for 315 s; the hub asks for a new login 300 s before expiry: in ~15 s
    key_service.cert_lifetime = 315
    try:
        ctx = browser.new_context()
        page = ctx.new_page()
        sshproxy_login(page, sshproxy_hub, "brief", "pw-brief", "112233")
        page.wait_for_url("**/hub/home")
    finally:
        key_service.cert_lifetime = 3600
    page.wait_for_timeout(18_000)
    page.goto(sshproxy_hub.public + "/hub/home")
    expect(page).to_have_url(re.compile(r"/hub/login"))
    expect(page.get_by_label("One-time password (OTP)")).to_be_visible()
    ctx.close()
