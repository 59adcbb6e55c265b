"""The SSH layer against the real sshd: host keys, failover, connection reuse."""

from __future__ import annotations

import time

import pytest

from hpchub.ssh import HostKeyError, SSHError, SSHPool, SSHTarget
from hpchub.sshca import SSHCertificateAuthority
from tests.harness import minihpc

pytestmark = pytest.mark.integration
USER = "hpcalice"


def target(sshd: minihpc.SSHD, hosts: list[tuple[str, int]], known: str | None = None) -> SSHTarget:
    return SSHTarget.from_values(
        "Mini HPC",
        {
            "hosts": [f"{h}:{p}" for h, p in hosts],
            "knownHosts": sshd.known_hosts(hosts) if known is None else known,
            "connectTimeoutSeconds": 3,
        },
    )


async def test_dead_login_host_costs_one_connect_timeout_then_is_skipped(
    sshd: minihpc.SSHD, dead_login_host: tuple[str, int]
) -> None:
    pool = SSHPool()
    creds = SSHCertificateAuthority(sshd.ca_key, 10).credentials_for(USER)
    t = target(sshd, [dead_login_host, ("127.0.0.1", sshd.port)])
    t0 = time.monotonic()
    r = await pool.run(t, USER, creds, ["id", "-un"])
    first = time.monotonic() - t0
    assert r.ok and r.stdout.strip() == USER and r.label == f"127.0.0.1:{sshd.port}"
    # One connect timeout (3s) for the hung host, then a normal login: under two timeouts.
    assert first < 2 * 3, f"failover took {first:.1f}s (connect timeout 3s)"
    # The next call reuses the connection: no new connect, no timeout paid again.
    connects = pool.connects
    t0 = time.monotonic()
    await pool.run(t, USER, creds, ["true"])
    assert pool.connects == connects and time.monotonic() - t0 < 1
    pool.close_all()


async def test_unknown_host_key_is_refused_with_a_clear_error(sshd: minihpc.SSHD) -> None:
    pool = SSHPool()
    creds = SSHCertificateAuthority(sshd.ca_key, 10).credentials_for(USER)
    # Another key for the same host: what a changed (or spoofed) login node looks like.
    wrong = f"[127.0.0.1]:{sshd.port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGu2mO4cT0hU1oP7bC1Zx0a2y7b3Vf9qG6wq5n8rXc1d\n"
    for known in ("", wrong):
        with pytest.raises(SSHError) as e:
            await pool.run(target(sshd, [("127.0.0.1", sshd.port)], known), USER, creds, ["true"])
        assert "host key" in str(e.value) and "Mini HPC" in str(e.value)
    pool.close_all()


async def test_a_certificate_for_another_user_is_refused(sshd: minihpc.SSHD) -> None:
    pool = SSHPool()
    creds = SSHCertificateAuthority(sshd.ca_key, 10).credentials_for("hpcbob")
    with pytest.raises(SSHError) as e:
        await pool.run(target(sshd, [("127.0.0.1", sshd.port)]), USER, creds, ["true"])
    assert "refused the SSH login" in str(e.value)
    assert not isinstance(e.value, HostKeyError)
    pool.close_all()
