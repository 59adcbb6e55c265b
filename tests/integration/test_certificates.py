"""The hub's SSH user CA against the real sshd of the mini HPC center (issue 8, hole 7).

Login nodes trust the CA, so a certificate is as good as a password for every account it
names. The hub never signs for root or system accounts (a deny list, and a uid floor from
the trusted identity lookup); the login node accepts a certificate only for principals its
``AuthorizedPrincipalsCommand`` prints (ordinary accounts: their own name); certificates
carry ``source-address`` (the hub's egress) and a unique serial for the audit trail.
"""

from __future__ import annotations

from pathlib import Path

import asyncssh
import pytest

from hpchub.sshca import CertificateRefused, SSHCertificateAuthority
from tests.harness import minihpc

pytestmark = pytest.mark.integration


async def whoami(
    sshd: minihpc.SSHD,
    user: str,
    key: asyncssh.SSHKey,
    cert: asyncssh.SSHCertificate,
    source: str = "127.0.0.1",
) -> str:
    """Log in to the real sshd as ``user`` with key + certificate, from address ``source``."""
    known = asyncssh.import_known_hosts(sshd.known_hosts([("127.0.0.1", sshd.port)]))
    async with asyncssh.connect(
        "127.0.0.1",
        sshd.port,
        username=user,
        client_keys=[(key, cert)],
        known_hosts=known,
        local_addr=(source, 0),
        agent_path=None,
        config=None,
    ) as conn:
        return (await conn.run("id -un", check=True)).stdout.strip()


def raw_certificate(ca_key: Path, principal: str) -> tuple[asyncssh.SSHKey, asyncssh.SSHCertificate]:
    """A certificate straight from the CA key, as a misconfigured or stolen signer would
    make it: the login node must refuse it on its own."""
    ca = asyncssh.read_private_key(str(ca_key))
    key = asyncssh.generate_private_key("ssh-ed25519")
    cert = ca.generate_user_certificate(key, f"raw:{principal}", principals=[principal], valid_before="+10m")
    return key, cert


@pytest.mark.parametrize("name", ["root", "daemon", minihpc.SYSTEM_USER, minihpc.SERVICE_USER])
def test_the_hub_never_signs_for_root_or_a_system_account(
    hub: minihpc.Hub, sshd: minihpc.SSHD, name: str
) -> None:
    """A user whose IdP username is a system account's name starts a server: refused
    before any certificate is made, and sshd never sees a login attempt for that account."""
    hub.ensure_user(name)
    before = sshd.log_lines_about(name)
    r = hub.start_server(name, "mini-shared")
    assert r.status_code == 403, f"{r.status_code} {r.text}"
    assert "certificate" in r.json()["message"], r.text
    assert sshd.log_lines_about(name) == before, "the hub tried to log in as a system account"
    assert hub.server_model(name, "mini-shared") is None


@pytest.mark.parametrize("name", ["root", "daemon", "nobody", "sshd"])
def test_the_hub_ca_refuses_deny_listed_principals(sshd: minihpc.SSHD, name: str) -> None:
    ca = SSHCertificateAuthority(sshd.ca_key, 10)
    with pytest.raises(CertificateRefused):
        ca.credentials_for(name)


async def test_login_node_refuses_a_trusted_certificate_for_a_system_account(sshd: minihpc.SSHD) -> None:
    # Positive control: the same kind of certificate for an ordinary account logs in.
    assert await whoami(sshd, "hpcalice", *raw_certificate(sshd.ca_key, "hpcalice")) == "hpcalice"
    with pytest.raises(asyncssh.PermissionDenied):
        await whoami(sshd, minihpc.SYSTEM_USER, *raw_certificate(sshd.ca_key, minihpc.SYSTEM_USER))


async def test_a_certificate_for_one_user_cannot_log_in_as_another(sshd: minihpc.SSHD) -> None:
    creds = SSHCertificateAuthority(sshd.ca_key, 10).credentials_for("hpcalice")
    assert await whoami(sshd, "hpcalice", creds.private_key, creds.certificate) == "hpcalice"
    for other in ("hpcbob", minihpc.SERVICE_USER, minihpc.SYSTEM_USER):
        with pytest.raises(asyncssh.PermissionDenied):
            await whoami(sshd, other, creds.private_key, creds.certificate)


async def test_a_certificate_used_from_outside_its_source_address_is_refused(sshd: minihpc.SSHD) -> None:
    # The hub's egress is 127.0.0.2 here; the same loopback host at 127.0.0.1 is "outside".
    ca = SSHCertificateAuthority(sshd.ca_key, 10, source_addresses=["127.0.0.2/32"])
    creds = ca.credentials_for("hpcbob")
    assert await whoami(sshd, "hpcbob", creds.private_key, creds.certificate, source="127.0.0.2") == "hpcbob"
    with pytest.raises(asyncssh.PermissionDenied):
        await whoami(sshd, "hpcbob", creds.private_key, creds.certificate, source="127.0.0.1")


async def test_every_certificate_has_its_own_serial_in_the_login_nodes_log(sshd: minihpc.SSHD) -> None:
    ca = SSHCertificateAuthority(sshd.ca_key, 10)
    before = set(sshd.serials("hpccarol"))
    for _ in range(3):
        creds = ca.sign("hpccarol")
        assert await whoami(sshd, "hpccarol", creds.private_key, creds.certificate) == "hpccarol"
    new = [s for s in sshd.serials("hpccarol") if s not in before]
    assert len(new) == 3 and len(set(new)) == 3 and 0 not in new, sshd.serials("hpccarol")
