"""The command NOTES.txt prints for the SSH CA runs against the cluster and outputs the
line a login node's TrustedUserCAKeys file needs: a real sshd given only that line accepts
a certificate the hub's CA signed inside the hub pod, and refuses one from another CA."""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
from kubernetes import client

from tests.harness import minihpc

from .conftest import HELM, STATE, helm, hub_pod, pod_exec

USER = minihpc.USERS[0]
SIGN = (
    "import os, sys\n"
    "from hpchub.sshca import SSHCertificateAuthority\n"
    "c = SSHCertificateAuthority(os.environ['HPCHUB_SSH_CA_KEY_FILE'], 10).sign(sys.argv[1])\n"
    "print(c.private_key.export_private_key().decode() + c.certificate.export_certificate().decode())\n"
)


def notes_command() -> str:
    from .conftest import RELEASE

    r = helm("get", "notes", RELEASE)
    assert r.returncode == 0, r.stderr
    (line,) = [ln.strip() for ln in r.stdout.splitlines() if "trusted-user-ca-keys" in ln]
    assert line.startswith("kubectl "), line
    return line


@pytest.fixture(scope="module")
def published_line() -> str:
    env = {**os.environ, "PATH": f"{os.path.dirname(HELM)}{os.pathsep}{os.environ['PATH']}"}
    env.setdefault("KUBECONFIG", str(STATE / "kubeconfig"))
    # Exactly what an operator runs: the printed line, through a shell.
    r = subprocess.run(["bash", "-c", notes_command()], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def login_node(tmp_path_factory: pytest.TempPathFactory, published_line: str) -> Iterator[minihpc.SSHD]:
    minihpc.ensure_users()
    sshd = minihpc.SSHD(tmp_path_factory.mktemp("login"))
    sshd.prepare(None)
    Path(f"{sshd.ca_key}.pub").write_text(published_line)
    sshd.start()
    yield sshd
    sshd.stop()


def test_printed_command_outputs_one_trusted_user_ca_keys_line(published_line: str) -> None:
    assert published_line.endswith("\n") and published_line.count("\n") == 1, repr(published_line)
    kind, _blob, comment = published_line.split()
    assert comment == "hpchub-user-ca"
    # It is the public half of the key make up gave the chart (sshCA.privateKey).
    state_pub = (STATE / "ssh-ca" / "ca.pub").read_text().split()
    assert published_line.split()[:2] == state_pub[:2]
    print(shlex.quote(notes_command()), "->", published_line.strip())


def _login(sshd: minihpc.SSHD, credentials: str) -> str:
    pem, _, cert_line = credentials.strip().rpartition("\n")
    key = asyncssh.import_private_key(pem + "\n")
    cert = asyncssh.import_certificate(cert_line)

    async def whoami() -> str:
        known = asyncssh.import_known_hosts(sshd.known_hosts([("127.0.0.1", sshd.port)]))
        async with asyncssh.connect(
            "127.0.0.1", sshd.port, username=USER, client_keys=[(key, cert)], known_hosts=known
        ) as conn:
            return (await conn.run("id -un", check=True)).stdout.strip()

    return asyncio.run(whoami())


def test_sshd_with_the_printed_line_accepts_a_certificate_the_hub_signed(
    kube: client.CoreV1Api, login_node: minihpc.SSHD
) -> None:
    creds = pod_exec(kube, hub_pod(kube).metadata.name, ["python3", "-c", SIGN, USER], container="hub")
    assert _login(login_node, creds) == USER


def test_sshd_with_the_printed_line_refuses_another_cas_certificate(login_node: minihpc.SSHD) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519")
    user_key = asyncssh.generate_private_key("ssh-ed25519")
    cert = other.generate_user_certificate(user_key, "forged", principals=[USER])
    creds = user_key.export_private_key().decode() + cert.export_certificate().decode()
    with pytest.raises(asyncssh.PermissionDenied):
        _login(login_node, creds)
