"""Users' uid/gid come from the login node's account database, read by the site's service
account, against the real sshd (issue 8, hole 1). What a user's shell prints never counts.
"""

from __future__ import annotations

import pwd
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from hpchub.identity import LOOKUP_COMMAND, IdentityConfig, IdentityError, _cache, resolve
from hpchub.sshca import SSHCertificateAuthority
from hpchub.sshpool import SSHPool, SSHTarget
from tests.harness import minihpc

# One event loop for the module: the hub's SSH pool (hpchub.sshpool.pool) keeps connections.
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]
MALLORY = minihpc.HOSTILE_USER
# Prints a uid and gid of 0 and exits before the hub's command runs.
LYING_RC = "echo 0; echo 0; exit 0\n"


def systems(sshd: minihpc.SSHD) -> dict:
    hosts = [("127.0.0.1", sshd.port)]
    return {
        "mini": {
            "displayName": "Mini HPC",
            "ssh": {"hosts": [f"{h}:{p}" for h, p in hosts], "knownHosts": sshd.known_hosts(hosts)},
        }
    }


CONFIG = IdentityConfig(lookup_system="mini", lookup_user=minihpc.SERVICE_USER)


def ssh_ca(sshd: minihpc.SSHD) -> dict:
    return {"enabled": True, "privateKeyFile": str(sshd.ca_key), "certLifetimeMinutes": 10}


@pytest.fixture
def mallory(sshd: minihpc.SSHD) -> Iterator[pwd.struct_passwd]:
    """A user whose shell start-up file prints "0 0" for this sshd's SSH sessions."""
    minihpc.ensure_users((MALLORY,))
    _cache.clear()
    with sshd.shell_startup(MALLORY, LYING_RC):
        yield pwd.getpwnam(MALLORY)


async def test_the_users_shell_can_lie_about_the_uid(sshd: minihpc.SSHD, mallory: pwd.struct_passwd) -> None:
    """Why nothing run as the user is asked: the old lookup, `id -u; id -g` as the user
    through their login shell, reads uid 0 and gid 0 (positive control for the test below)."""
    pool = SSHPool()
    creds = SSHCertificateAuthority(sshd.ca_key, 10).credentials_for(MALLORY)
    target = SSHTarget.from_values("Mini HPC", systems(sshd)["mini"]["ssh"])
    r = await pool.run(target, MALLORY, creds, ["/bin/sh", "-c", "id -u; id -g"])
    pool.close_all()
    assert r.stdout.split() == ["0", "0"]


async def test_the_lookup_reads_the_account_database_not_the_users_shell(
    sshd: minihpc.SSHD, mallory: pwd.struct_passwd
) -> None:
    sessions = sshd.sessions(MALLORY)
    found = await resolve(CONFIG, MALLORY, None, systems(sshd), ssh_ca(sshd))
    assert found is not None
    assert (found.uid, found.gid) == (mallory.pw_uid, mallory.pw_gid) and found.uid >= 1000
    assert sshd.sessions(MALLORY) == sessions, "the lookup ran something as the user"


async def test_a_uid_shared_with_another_account_is_refused(sshd: minihpc.SSHD) -> None:
    """An alias account with hpcalice's uid (a second passwd line): its uid maps back to
    hpcalice, so it is not trusted as the alias's own."""
    alice = pwd.getpwnam("hpcalice")
    alias = "hpcalias"
    if minihpc.run("id", alias, check=False).returncode != 0:
        minihpc.run(
            "useradd", "--non-unique", "--uid", str(alice.pw_uid), "--no-create-home", alias, check=False
        )
    assert pwd.getpwnam(alias).pw_uid == alice.pw_uid
    _cache.clear()
    with pytest.raises(IdentityError) as e:
        await resolve(CONFIG, alias, None, systems(sshd), ssh_ca(sshd))
    assert "maps back to hpcalice" in e.value.message
    # Positive control: the account that owns the uid resolves.
    assert (await resolve(CONFIG, "hpcalice", None, systems(sshd), ssh_ca(sshd))).uid == alice.pw_uid


async def test_a_system_account_is_refused_by_the_uid_floor(sshd: minihpc.SSHD) -> None:
    _cache.clear()
    with pytest.raises(IdentityError) as e:
        await resolve(CONFIG, minihpc.SYSTEM_USER, None, systems(sshd), ssh_ca(sshd))
    assert "below 1000" in e.value.message


async def test_the_service_account_can_run_nothing_but_the_lookup(sshd: minihpc.SSHD, tmp_path: Path) -> None:
    """Its certificate and the login node both force the lookup: a command sent along is
    only a (failed) account name, and no port forwarding is allowed."""
    ca = SSHCertificateAuthority(sshd.ca_key, 10)
    creds = ca.service_credentials(minihpc.SERVICE_USER, LOOKUP_COMMAND)
    target = SSHTarget.from_values("Mini HPC", systems(sshd)["mini"]["ssh"])
    pool = SSHPool()
    marker = tmp_path / "written-by-the-service-account"
    tmp_path.chmod(0o777)
    r = await pool.run(target, minihpc.SERVICE_USER, creds, ["sh", "-c", f"touch {marker}; echo ran"])
    assert r.exit_status == 2 and "ran" not in r.stdout and not marker.exists()
    r = await pool.run(target, minihpc.SERVICE_USER, creds, ["hpcalice"])
    assert r.ok and r.stdout.startswith("hpcalice:")  # positive control: the lookup itself
    _, conn = await pool.connection(target, minihpc.SERVICE_USER, creds)
    with pytest.raises(asyncssh.ChannelOpenError):
        await conn.open_connection("127.0.0.1", sshd.port)
    pool.close_all()


async def test_the_principal_is_bound_to_the_uid_the_identity_provider_signed(
    sshd: minihpc.SSHD, mallory: pwd.struct_passwd
) -> None:
    """What binds the SSH principal (docs/security.md): it is the sign-in's username. A user
    who could choose "hpcalice" as their name at the identity provider, but whose IdP-signed
    uid claim is their own, gets no certificate when identity.fromAuthState.uid is set with
    identity.lookup: the account database gives hpcalice another uid, and no login happens."""
    from hpchub.remoteops import user_credentials
    from hpchub.sshca import CertificateRefused

    alice = pwd.getpwnam("hpcalice")
    both = {
        "fromAuthState": {"uid": "oauth_user.uidNumber", "gid": "oauth_user.gidNumber"},
        "lookup": {"system": "mini", "user": minihpc.SERVICE_USER},
    }

    def claims(who: pwd.struct_passwd) -> dict:
        return {"oauth_user": {"uidNumber": who.pw_uid, "gidNumber": who.pw_gid}}

    def ca(minutes: int) -> dict:
        # One CA instance per case: a certificate cached for hpcalice by one case is not
        # handed to the next.
        return {**ssh_ca(sshd), "certLifetimeMinutes": minutes}

    _cache.clear()
    sessions = sshd.sessions("hpcalice")
    with pytest.raises(CertificateRefused) as e:
        await user_credentials("mini", "hpcalice", ca(11), claims(mallory), both, systems(sshd))
    assert f"says uid {mallory.pw_uid}" in str(e.value) and f"has uid {alice.pw_uid}" in str(e.value)
    assert sshd.sessions("hpcalice") == sessions, "a login as hpcalice happened"
    # Positive control: alice's own claim gets a certificate that logs in as hpcalice.
    creds = await user_credentials("mini", "hpcalice", ca(12), claims(alice), both, systems(sshd))
    target = SSHTarget.from_values("Mini HPC", systems(sshd)["mini"]["ssh"])
    pool = SSHPool()
    assert (await pool.run(target, "hpcalice", creds, ["id", "-un"])).stdout.strip() == "hpcalice"
    pool.close_all()
    # The limit the docs state: with the lookup alone the name is all there is, so a chosen
    # name gets that account's certificate (the IdP must not let users pick names, or the
    # site sets fromAuthState.uid as above).
    lookup_only = {"lookup": both["lookup"]}
    creds = await user_credentials("mini", "hpcalice", ca(13), claims(mallory), lookup_only, systems(sshd))
    assert creds.certificate is not None and creds.certificate.principals == ["hpcalice"]
