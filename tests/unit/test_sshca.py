"""The hub's SSH CA and the launcher's quoting of the environment."""

from __future__ import annotations

import time

import asyncssh
import pytest
from asyncssh.public_key import CERT_TYPE_USER

from hpchub.remoteops import export_lines
from hpchub.sshca import CertificateRefused, SSHCertificateAuthority, credentials_from_auth_state
from hpchub.sshpool import SSHTarget, quote_argv


@pytest.fixture
def ca(tmp_path) -> SSHCertificateAuthority:
    key = asyncssh.generate_private_key("ssh-ed25519")
    path = tmp_path / "ca"
    key.write_private_key(str(path))
    return SSHCertificateAuthority(path, lifetime_minutes=60)


def test_certificate_principal_is_the_username_and_lifetime_is_bounded(ca) -> None:
    creds = ca.credentials_for("alice")
    cert = creds.certificate
    assert cert.principals == ["alice"]
    assert creds.expires - time.time() <= 3600 + 5
    # Valid now for that principal, signed by the CA (what sshd's TrustedUserCAKeys checks).
    cert.validate(CERT_TYPE_USER, "alice")
    assert cert.signing_key.public_data == ca.ca_key.public_data
    with pytest.raises(ValueError):
        cert.validate(CERT_TYPE_USER, "mallory")
    assert ca.credentials_for("alice") is creds  # cached while fresh


def test_certificate_is_renewed_before_expiry(ca, monkeypatch) -> None:
    first = ca.credentials_for("alice")
    later = first.expires - ca.renew_margin() + 1
    monkeypatch.setattr(time, "time", lambda: later)
    assert ca.credentials_for("alice") is not first


def test_credentials_from_auth_state(ca) -> None:
    creds = ca.sign("bob")
    state = {
        "ssh_private_key": creds.private_key.export_private_key().decode(),
        "ssh_certificate": creds.certificate.export_certificate().decode(),
        "ssh_cert_expires": creds.expires,
    }
    got = credentials_from_auth_state(state)
    assert got is not None and got.certificate.principals == ["bob"]
    assert (
        credentials_from_auth_state({**state, "ssh_cert_expires": time.time() + 10}) is None
    )  # about to expire
    assert credentials_from_auth_state({}) is None


def test_environment_values_are_quoted_and_names_checked() -> None:
    text = export_lines({"JUPYTERHUB_API_TOKEN": "abc'; rm -rf ~ #", "A": "$(id)"})
    assert text == "export A='$(id)'\nexport JUPYTERHUB_API_TOKEN='abc'\"'\"'; rm -rf ~ #'"
    with pytest.raises(ValueError):
        export_lines({"BAD;NAME": "x"})


def test_argv_is_quoted_word_by_word() -> None:
    assert quote_argv(["scancel", "1; rm -rf ~"]) == "scancel '1; rm -rf ~'"


def test_hosts_with_ports() -> None:
    t = SSHTarget.from_values("X", {"hosts": ["a", "b:2222"], "port": 22})
    assert t.hosts == (("a", 22), ("b", 2222))


def test_keys_from_auth_state_are_parsed_once() -> None:
    # An RSA-4096 import costs ~0.5 s of the event loop; every SSH call asks for credentials.
    key = asyncssh.generate_private_key("ssh-rsa", key_size=2048)
    state = {"ssh_private_key": key.export_private_key().decode()}
    first = credentials_from_auth_state(state)
    again = credentials_from_auth_state(dict(state))
    assert first is not None and again is not None and again.private_key is first.private_key
    other = asyncssh.generate_private_key("ssh-ed25519")
    renewed = credentials_from_auth_state({"ssh_private_key": other.export_private_key().decode()})
    assert renewed is not None and renewed.private_key is not first.private_key


def test_certificates_carry_unique_serials_source_address_and_no_rc(tmp_path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(tmp_path / "ca"))
    ca = SSHCertificateAuthority(tmp_path / "ca", 60, source_addresses=["10.1.2.0/24", "192.0.2.7"])
    certs = [ca.sign("alice").certificate for _ in range(50)]
    serials = [c._serial for c in certs]  # asyncssh has no public accessor (2.24)
    assert len(set(serials)) == 50 and 0 not in serials
    assert certs[0]._key_id == f"hpchub:alice:{serials[0]}"
    options = certs[0].options
    assert [str(n) for n in options["source-address"]] == ["10.1.2.0/24", "192.0.2.7/32"]
    assert not any(k in options for k in ("permit-user-rc", "permit-pty", "permit-agent-forwarding"))


@pytest.mark.parametrize(
    "name", ["root", "ROOT", "daemon", "slurm", "munge", "backup", "-oProxyCommand", "a b"]
)
def test_no_certificate_for_root_system_accounts_or_odd_names(ca, name) -> None:
    with pytest.raises(CertificateRefused):
        ca.credentials_for(name)


def test_uid_floor_and_extra_deny_list(tmp_path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(tmp_path / "ca"))
    ca = SSHCertificateAuthority(tmp_path / "ca", 60, deny_principals=["hpchub"], min_uid=1000)
    with pytest.raises(CertificateRefused, match="uid 999 is below 1000"):
        ca.credentials_for("svc", uid=999)
    with pytest.raises(CertificateRefused, match="system account"):
        ca.credentials_for("hpchub", uid=5000)
    assert ca.credentials_for("alice", uid=1000).certificate.principals == ["alice"]


def test_service_certificate_forces_its_command_and_forwards_nothing(ca) -> None:
    cert = ca.service_credentials("hpchub", 'getent passwd -- "$SSH_ORIGINAL_COMMAND"').certificate
    assert cert.principals == ["hpchub"]
    assert cert.options["force-command"] == 'getent passwd -- "$SSH_ORIGINAL_COMMAND"'
    assert "permit-port-forwarding" not in cert.options and "permit-pty" not in cert.options
