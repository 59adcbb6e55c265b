"""The SSH user CA the chart generates is trusted by a real sshd through the public key
line the hub publishes (hpchub.sshca_publish) — the line NOTES.txt's kubectl command
prints — and a certificate the hub's CA signs is then accepted; one from another CA is not."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from hpchub.sshca import SSHCertificateAuthority
from hpchub.sshca_publish import public_key_line
from tests.chart.helm import CONFIG, find, render
from tests.harness import minihpc

pytestmark = pytest.mark.integration
USER = minihpc.USERS[0]


@pytest.fixture(scope="module")
def chart_ca_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CA private key exactly as the chart generates it (Helm's genPrivateKey)."""
    docs = render([CONFIG / "values-dev.yaml"])
    pem = base64.b64decode(find(docs, "Secret", "t-hpchub-ssh-ca")["data"]["ca"])
    path = tmp_path_factory.mktemp("ca") / "ca"
    path.write_bytes(pem)
    os.chmod(path, 0o600)
    return path


@pytest.fixture(scope="module")
def login_node(tmp_path_factory: pytest.TempPathFactory, chart_ca_key: Path) -> Iterator[minihpc.SSHD]:
    """A real sshd whose TrustedUserCAKeys file holds only the published line."""
    minihpc.ensure_users()
    sshd = minihpc.SSHD(tmp_path_factory.mktemp("login"))
    sshd.prepare(None)
    Path(f"{sshd.ca_key}.pub").write_text(public_key_line(chart_ca_key))
    sshd.start()
    yield sshd
    sshd.stop()


def test_debian_ssh_keygen_cannot_read_the_chart_generated_key(chart_ca_key: Path) -> None:
    # Why NOTES no longer says `ssh-keygen -y -f ca`: the key is PKCS#8, which OpenSSH 9.2
    # (Debian 12) refuses for ed25519.
    proc = minihpc.run("ssh-keygen", "-y", "-f", str(chart_ca_key), check=False)
    assert proc.returncode != 0, proc.stdout


def test_published_line_is_one_openssh_public_key_line(chart_ca_key: Path) -> None:
    line = public_key_line(chart_ca_key)
    assert line.endswith("\n") and line.count("\n") == 1
    kind, blob, comment = line.split()
    assert (kind, comment) == ("ssh-ed25519", "hpchub-user-ca")
    # It is the public half of the CA key the hub signs with.
    ca = asyncssh.read_private_key(str(chart_ca_key))
    assert asyncssh.import_public_key(line).public_data == ca.public_data
    assert base64.b64decode(blob) == ca.public_data


async def _whoami(sshd: minihpc.SSHD, key: asyncssh.SSHKey, cert: asyncssh.SSHCertificate) -> str:
    known = asyncssh.import_known_hosts(sshd.known_hosts([("127.0.0.1", sshd.port)]))
    async with asyncssh.connect(
        "127.0.0.1", sshd.port, username=USER, client_keys=[(key, cert)], known_hosts=known
    ) as conn:
        return (await conn.run("id -un", check=True)).stdout.strip()


async def test_sshd_trusting_the_published_line_accepts_a_hub_signed_certificate(
    login_node: minihpc.SSHD, chart_ca_key: Path
) -> None:
    creds = SSHCertificateAuthority(chart_ca_key, lifetime_minutes=10).sign(USER)
    assert await _whoami(login_node, creds.private_key, creds.certificate) == USER


async def test_certificate_from_another_ca_is_refused(login_node: minihpc.SSHD, tmp_path: Path) -> None:
    # The control: sshd really checks the CA (a forged certificate does not get in).
    other = tmp_path / "other-ca"
    other.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
    creds = SSHCertificateAuthority(other, lifetime_minutes=10).sign(USER)
    with pytest.raises(asyncssh.PermissionDenied):
        await _whoami(login_node, creds.private_key, creds.certificate)
