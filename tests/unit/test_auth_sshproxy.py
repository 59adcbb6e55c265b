"""SSHProxyAuthenticator against a real key-issuing HTTP API on loopback."""

from __future__ import annotations

import socket
import time

import asyncssh
import pytest
import pytest_asyncio
from tornado import web

from hpchub.auth.sshproxy import SSHProxyAuthenticator
from tests.harness.tlsca import TestCA
from tests.idp.keyservice import Account, KeyService, start

ALLOC = [{"account": "m1234", "qos": ["interactive"], "partitions": ["regular"]}]


@pytest_asyncio.fixture
async def keyservice():
    svc = KeyService(
        {
            "alice": Account(
                "s3cret",
                "123456",
                groups=["gpu-users"],
                allocations=ALLOC,
                uid=1001,
                gid=100,
            ),
            "bob": Account("hunter2", "654321"),
        }
    )
    server, url = start(svc)
    svc.url = url
    yield svc
    server.stop()


def authenticator(url: str, **kw) -> SSHProxyAuthenticator:
    return SSHProxyAuthenticator(url=url, timeout=5, **kw)


class FakeUser:
    """Only what refresh_user reads: the user's (decrypted) auth_state."""

    def __init__(self, name: str, state: dict):
        self.name, self._state = name, state

    async def get_auth_state(self):
        return self._state


@pytest.mark.asyncio
async def test_password_and_otp_give_a_working_key_and_certificate(keyservice):
    auth = authenticator(keyservice.url)
    result = await auth.authenticate(None, {"username": "bob", "password": "hunter2", "otp": "654321"})
    assert result["name"] == "bob"
    state = result["auth_state"]
    key = asyncssh.import_private_key(state["ssh_private_key"])
    cert = asyncssh.import_certificate(state["ssh_certificate"])
    assert cert.key.public_data == key.public_data
    assert cert.principals == ["bob"]
    # signed by the service's CA, and the expiry is the certificate's own
    assert cert.signing_key.public_data == keyservice.ca.public_data
    assert abs(state["ssh_cert_expires"] - (time.time() + keyservice.cert_lifetime)) < 30
    assert keyservice.requests == ["bob"]


@pytest.mark.asyncio
async def test_json_answer_carries_groups_and_allocations_into_auth_state(keyservice):
    keyservice.fmt = "json"
    result = await authenticator(keyservice.url).authenticate(
        None, {"username": "alice", "password": "s3cret", "otp": "123456"}
    )
    state = result["auth_state"]
    assert state["groups"] == ["gpu-users"]
    assert state["allocations"] == ALLOC
    assert (state["uid"], state["gid"]) == (1001, 100)


@pytest.mark.asyncio
async def test_wrong_otp_is_an_ordinary_failed_login(keyservice):
    result = await authenticator(keyservice.url).authenticate(
        None, {"username": "bob", "password": "hunter2", "otp": "000000"}
    )
    assert result is None


@pytest.mark.asyncio
async def test_missing_otp_is_refused_without_asking_the_service(keyservice):
    result = await authenticator(keyservice.url).authenticate(
        None, {"username": "bob", "password": "hunter2"}
    )
    assert result is None
    assert keyservice.requests == []


@pytest.mark.asyncio
async def test_key_service_error_is_reported_in_words_not_a_traceback(keyservice):
    keyservice.fail_with = 500
    with pytest.raises(web.HTTPError) as exc:
        await authenticator(keyservice.url).authenticate(
            None, {"username": "bob", "password": "hunter2", "otp": "654321"}
        )
    assert exc.value.status_code == 503
    assert "key service" in exc.value.log_message


@pytest.mark.asyncio
async def test_unreachable_key_service_says_so():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(web.HTTPError) as exc:
        await authenticator(f"http://127.0.0.1:{port}/create_pair/default/").authenticate(
            None, {"username": "bob", "password": "x", "otp": "1"}
        )
    assert exc.value.status_code == 503
    assert "unreachable" in exc.value.log_message


@pytest.mark.asyncio
async def test_certificate_for_another_user_is_refused(keyservice):
    keyservice.wrong_principal = "mallory"
    with pytest.raises(web.HTTPError) as exc:
        await authenticator(keyservice.url).authenticate(
            None, {"username": "bob", "password": "hunter2", "otp": "654321"}
        )
    assert "not valid for 'bob'" in exc.value.log_message


@pytest.mark.asyncio
async def test_login_does_not_outlive_the_certificate(keyservice):
    keyservice.cert_lifetime = 200  # shorter than the default 300 s margin
    auth = authenticator(keyservice.url)
    result = await auth.authenticate(None, {"username": "bob", "password": "hunter2", "otp": "654321"})
    assert await auth.refresh_user(FakeUser("bob", result["auth_state"])) is False
    auth.expiry_margin = 60
    assert await auth.refresh_user(FakeUser("bob", result["auth_state"])) is True
    assert await auth.refresh_user(FakeUser("bob", {})) is False


def test_login_form_asks_for_an_otp_and_refreshes_often():
    auth = SSHProxyAuthenticator()
    assert auth.request_otp is True
    assert "OTP" in auth.otp_prompt
    assert 0 < auth.auth_refresh_age <= 60
    assert auth.refresh_pre_spawn is True


# --- The key service behind TLS from the site's private CA (auth.sshproxy.caBundle) ---


@pytest_asyncio.fixture
async def tls_keyservice(tmp_path):
    """The key service over HTTPS with a certificate from a CA made here; yields
    (service, url, path of the CA bundle as the chart mounts it)."""
    ca = TestCA("site CA")
    svc = KeyService({"bob": Account("hunter2", "654321")})
    server, url = start(svc, ca.server_context(tmp_path / "tls"))
    bundle = tmp_path / "ca.pem"
    bundle.write_text(ca.pem)
    yield svc, url, str(bundle)
    server.stop()


BOB = {"username": "bob", "password": "hunter2", "otp": "654321"}


@pytest.mark.asyncio
async def test_key_service_with_a_private_ca_works_with_the_ca_bundle(tls_keyservice):
    svc, url, bundle = tls_keyservice
    assert url.startswith("https://")
    result = await authenticator(url, ca_bundle=bundle).authenticate(None, BOB)
    assert result["name"] == "bob" and result["auth_state"]["ssh_certificate"]
    assert svc.requests == ["bob"]


@pytest.mark.asyncio
async def test_key_service_with_a_private_ca_is_refused_without_the_bundle(tls_keyservice):
    svc, url, _ = tls_keyservice
    with pytest.raises(web.HTTPError) as exc:
        await authenticator(url).authenticate(None, BOB)
    assert exc.value.status_code == 503
    assert "could not be verified" in exc.value.log_message
    assert svc.requests == []  # the password never left the hub


@pytest.mark.asyncio
async def test_impostor_with_another_cas_certificate_gets_no_password(tls_keyservice, tmp_path):
    # Someone answering at the key service's address with a certificate of their own CA.
    _, _, bundle = tls_keyservice
    impostor = KeyService({"bob": Account("hunter2", "654321")})
    server, url = start(impostor, TestCA("attacker CA").server_context(tmp_path / "evil"))
    try:
        with pytest.raises(web.HTTPError) as exc:
            await authenticator(url, ca_bundle=bundle).authenticate(None, BOB)
    finally:
        server.stop()
    assert exc.value.status_code == 503
    assert impostor.requests == []


@pytest.mark.asyncio
async def test_certificate_of_the_right_ca_for_another_host_is_refused(tmp_path):
    # The site CA signed it, but for another name: a stolen certificate of another service.
    ca = TestCA("site CA")
    svc = KeyService({"bob": Account("hunter2", "654321")})
    server, url = start(svc, ca.server_context(tmp_path / "other", hosts=("mail.example.org",)))
    bundle = tmp_path / "ca.pem"
    bundle.write_text(ca.pem)
    try:
        with pytest.raises(web.HTTPError) as exc:
            await authenticator(url, ca_bundle=str(bundle)).authenticate(None, BOB)
    finally:
        server.stop()
    assert exc.value.status_code == 503
    assert svc.requests == []
