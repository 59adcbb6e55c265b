"""The SSH layer against the real sshd: host keys, failover, connection reuse, idle close,
handshake limits, certificate renewal with a tunnel, expired credentials."""

from __future__ import annotations

import asyncio
import time

import pytest

from hpchub.sshca import SSHCertificateAuthority
from hpchub.sshpool import HostKeyError, OutputTooLarge, SSHError, SSHPool, SSHTarget
from tests.harness import minihpc

pytestmark = pytest.mark.integration
USER = "hpcalice"


def target(
    sshd: minihpc.SSHD, hosts: list[tuple[str, int]], known: str | None = None, **extra: object
) -> SSHTarget:
    return SSHTarget.from_values(
        "Mini HPC",
        {
            "hosts": [f"{h}:{p}" for h, p in hosts],
            "knownHosts": sshd.known_hosts(hosts) if known is None else known,
            "connectTimeoutSeconds": 3,
            **extra,
        },
    )


async def test_dead_login_host_is_tried_once_then_skipped(sshd: minihpc.SSHD) -> None:
    hung = minihpc.HungLoginHost()  # this test's own: no earlier test has marked it dead
    try:
        pool = SSHPool()
        ca = SSHCertificateAuthority(sshd.ca_key, 10)
        t = target(sshd, [hung.address, ("127.0.0.1", sshd.port)])
        r = await pool.run(t, USER, ca.credentials_for(USER), ["id", "-un"])
        assert r.ok and r.stdout.strip() == USER and r.label == f"127.0.0.1:{sshd.port}"
        assert (hung.accepted, hung.abandoned) == (1, 1), "the first host listed was not tried first"
        # The next call reuses the connection: no new connect at all.
        connects = pool.connects
        await pool.run(t, USER, ca.credentials_for(USER), ["true"])
        assert pool.connects == connects
        # Another user's first connection skips the host marked dead.
        r = await pool.run(t, "hpcbob", ca.credentials_for("hpcbob"), ["id", "-un"])
        assert r.ok and r.stdout.strip() == "hpcbob" and hung.accepted == 1
        pool.close_all()
    finally:
        hung.close()


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


async def test_idle_connections_are_closed_and_sshd_holds_nothing(sshd: minihpc.SSHD) -> None:
    pool = SSHPool()
    t = target(sshd, [("127.0.0.1", sshd.port)], idleSeconds=1)
    ca = SSHCertificateAuthority(sshd.ca_key, 10)
    for user in minihpc.USERS:
        assert (await pool.run(t, user, ca.credentials_for(user), ["true"])).ok
    assert pool.open_connections() == len(minihpc.USERS)
    await async_wait_for(lambda: pool.open_connections() == 0, 30, "idle connections to close")
    # The next call simply connects again.
    assert (await pool.run(t, USER, ca.credentials_for(USER), ["id", "-un"])).stdout.strip() == USER
    pool.close_all()


async def test_handshakes_per_login_host_are_limited(sshd: minihpc.SSHD) -> None:
    # 3 users x 4 credentials each = 12 connects at once; at most 2 handshakes may run together.
    pool = SSHPool()
    t = target(sshd, [("127.0.0.1", sshd.port)], maxConcurrentHandshakes=2)
    cas = [SSHCertificateAuthority(sshd.ca_key, 10) for _ in range(4)]
    results = await asyncio.gather(
        *(pool.run(t, u, ca.credentials_for(u), ["true"]) for u in minihpc.USERS for ca in cas)
    )
    assert all(r.ok for r in results) and pool.connects == 12
    assert pool.max_handshakes_seen == 2
    pool.close_all()


@pytest.mark.parametrize("kind", ["local port", "remote socket"])
async def test_renewed_certificate_moves_the_tunnel_and_closes_the_old_connection(
    sshd: minihpc.SSHD, kind: str
) -> None:
    import socket

    pool = SSHPool()
    pool.RETIRE_GRACE = 0.5
    t = target(sshd, [("127.0.0.1", sshd.port)])
    label = f"127.0.0.1:{sshd.port}"
    ca = SSHCertificateAuthority(sshd.ca_key, 10)
    old = ca.credentials_for(USER)
    # A forward to sshd itself: what answers on the port (or socket) is an SSH banner.
    if kind == "local port":
        tunnel = await pool.forward(
            t, USER, old, label, local=True, listen=("127.0.0.1", 0), dest=("127.0.0.1", sshd.port)
        )
        port = tunnel.port
        address: tuple[str, int] | str = ("127.0.0.1", port)
    else:
        # The hub-API forward of tunnel mode: a socket sshd binds as the user in their home.
        rundir = minihpc.Path(f"/home/{USER}/.hpchub/test-{sshd.session}")
        await pool.run(t, USER, old, ["mkdir", "-p", "-m", "700", str(rundir)])
        address = str(rundir / "api.sock")
        tunnel = await pool.forward(
            t, USER, old, label, local=False, listen=address, dest=("127.0.0.1", sshd.port)
        )
        port = tunnel.port

    def banner() -> bytes:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        with socket.socket(family) as s:
            s.settimeout(5)
            s.connect(address)
            return s.recv(64)

    assert (await asyncio.to_thread(banner)).startswith(b"SSH-2.0")
    first = tunnel.conn
    renewed = ca.sign(USER)  # what credentials_for does when the certificate nears expiry
    assert renewed.fingerprint != old.fingerprint
    assert (await pool.run(t, USER, renewed, ["true"])).ok
    # The tunnel now rides on the new connection, same port; the old one closes.
    assert tunnel.conn is not first and tunnel.port == port and not tunnel.closed
    assert (await asyncio.to_thread(banner)).startswith(b"SSH-2.0")
    await async_wait_for(lambda: first.is_closed(), 30, "the old connection to close")
    assert pool.open_connections(USER) == 1
    pool.close_tunnel(tunnel)
    if isinstance(address, str):
        await pool.run(t, USER, renewed, ["rm", "-rf", str(minihpc.Path(address).parent)])
    pool.close_all()


async def test_expired_credentials_use_the_open_connection_else_ask_to_sign_in(sshd: minihpc.SSHD) -> None:
    pool = SSHPool()
    t = target(sshd, [("127.0.0.1", sshd.port)])
    with pytest.raises(SSHError, match="sign in again"):
        await pool.run(t, USER, None, ["true"])
    creds = SSHCertificateAuthority(sshd.ca_key, 10).credentials_for(USER)
    await pool.run(t, USER, creds, ["true"])
    connects = pool.connects
    r = await pool.run(t, USER, None, ["id", "-un"])
    assert r.stdout.strip() == USER and pool.connects == connects
    pool.close_all()


async def async_wait_for(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.2)


async def test_output_is_capped_per_command_and_the_connection_stays_usable(sshd: minihpc.SSHD) -> None:
    pool = SSHPool()
    creds = SSHCertificateAuthority(sshd.ca_key, 10).credentials_for(USER)
    t = target(sshd, [("127.0.0.1", sshd.port)], maxOutputBytes=100_000)
    # Exactly the cap (stdout and stderr together) is read whole.
    r = await pool.run(t, USER, creds, ["sh", "-c", "head -c 60000 /dev/zero; head -c 40000 /dev/zero >&2"])
    assert r.ok and len(r.stdout) == 60_000 and len(r.stderr) == 40_000
    # One byte more, on either stream, and the command is stopped with a clear error.
    for argv in (
        ["head", "-c", "100001", "/dev/zero"],
        ["sh", "-c", "head -c 60000 /dev/zero; head -c 40001 /dev/zero >&2"],
        ["yes"],
    ):
        with pytest.raises(OutputTooLarge) as e:
            await pool.run(t, USER, creds, argv)
        assert "Mini HPC" in str(e.value) and argv[0] in str(e.value) and "100000 bytes" in str(e.value)
    # The endless `yes` got its channel closed: it does not run on, and the pooled
    # connection still serves the next command.
    connects = pool.connects
    r = await pool.run(t, USER, creds, ["id", "-un"])
    assert r.ok and r.stdout.strip() == USER and pool.connects == connects
    minihpc.wait_for(
        lambda: (
            not [
                p
                for p in minihpc.run("pgrep", "-u", USER, "-x", "yes", check=False).stdout.split()
                if f"HPCHUB_TEST_SESSION={sshd.session}".encode()
                in minihpc.Path(f"/proc/{p}/environ").read_bytes().split(b"\0")
            ]
        ),
        15,
        "the remote `yes` to end",
    )


def _sshd_with(workdir, slurm: minihpc.Slurm, name: str, option: str, value: str):  # noqa: ANN001, ANN202
    """This test's own sshd, with one sshd_config option changed."""
    import re

    d = minihpc.SSHD(workdir / name)
    d.dir = workdir / name / "sshd"
    d.workdir.mkdir(exist_ok=True)
    d.prepare(slurm.conf)
    conf = d.dir / "sshd_config"
    conf.write_text(re.sub(rf"(?m)^{option} .*$", f"{option} {value}", conf.read_text()))
    d.start()
    return d


@pytest.fixture()
def throttled_sshd(workdir, slurm: minihpc.Slurm):  # noqa: ANN001, ANN201
    """An sshd that drops every connection beyond 2 unauthenticated ones (MaxStartups 2:100:2)."""
    d = _sshd_with(workdir, slurm, "throttled", "MaxStartups", "2:100:2")
    yield d
    d.stop()


async def test_connections_dropped_by_a_busy_sshd_are_retried(throttled_sshd: minihpc.SSHD) -> None:
    sshd = throttled_sshd
    pool = SSHPool()
    t = target(sshd, [("127.0.0.1", sshd.port)], connectTimeoutSeconds=10)
    cas = [SSHCertificateAuthority(sshd.ca_key, 10) for _ in range(4)]
    assert (await pool.run(t, USER, cas[0].credentials_for(USER), ["true"])).ok  # the host answers
    # 12 handshakes at once, 8 allowed by the pool: sshd drops all past 2 pending.
    results = await asyncio.gather(
        *(pool.run(t, u, ca.credentials_for(u), ["true"]) for u in minihpc.USERS for ca in cas),
        return_exceptions=True,
    )
    assert all(not isinstance(r, Exception) and r.ok for r in results), results
    assert "past MaxStartups" in sshd.proc.log.read_text()  # sshd did drop some
    pool.close_all()


@pytest.fixture()
def few_sessions_sshd(workdir, slurm: minihpc.Slurm):  # noqa: ANN001, ANN201
    """An sshd that allows 3 sessions per connection (MaxSessions 3)."""
    d = _sshd_with(workdir, slurm, "few-sessions", "MaxSessions", "3")
    yield d
    d.stop()


async def test_commands_on_one_connection_stay_below_sshds_max_sessions(
    few_sessions_sshd: minihpc.SSHD,
) -> None:
    """A burst of commands over one connection (what the identity lookup account carries
    during a burst of sign-ins): the pool queues them below MaxSessions, and a session
    that sshd does refuse fails that command only, not the connection."""
    sshd = few_sessions_sshd
    ca = SSHCertificateAuthority(sshd.ca_key, 10)
    creds = ca.credentials_for(USER)
    hosts = [("127.0.0.1", sshd.port)]

    async def burst(pool: SSHPool, t: SSHTarget) -> list[object]:
        return await asyncio.gather(
            *(pool.run(t, USER, creds, ["sleep", "1"]) for _ in range(15)), return_exceptions=True
        )

    # Positive control: more sessions at once than sshd allows get refused.
    pool = SSHPool()
    over = target(sshd, hosts, maxSessionsPerConnection=12)
    results = await burst(pool, over)
    refused = [r for r in results if isinstance(r, SSHError)]
    assert refused and all("refused a new session" in str(r) for r in refused), results
    assert pool.connects == 1, "a refused session must not drop the connection"
    assert (await pool.run(over, USER, creds, ["true"])).ok
    pool.close_all()

    pool = SSHPool()
    below = target(sshd, hosts, maxSessionsPerConnection=3)
    results = await burst(pool, below)
    assert all(not isinstance(r, Exception) and r.ok for r in results), results
    assert pool.connects == 1
    pool.close_all()
