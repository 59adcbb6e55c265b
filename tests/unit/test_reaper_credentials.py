"""The reaper signs in as the user the way a spawner does (its credentials are awaited)."""

from __future__ import annotations

import asyncssh

from hpchub.reaper import HubActions
from hpchub.sshca import UserCredentials

SYSTEMS = {"mini": {"displayName": "Mini HPC", "ssh": {"hosts": ["127.0.0.1:22"], "knownHosts": ""}}}


async def test_reaper_credentials_are_the_users_key_from_auth_state() -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    state = {"ssh_private_key": key.export_private_key().decode()}

    async def auth_state(name: str) -> dict | None:
        return state if name == "hpcalice" else None

    act = HubActions(systems=SYSTEMS, ssh_ca={"enabled": False}, auth_state=auth_state, identity={})
    creds = await act.credentials("Mini HPC", "hpcalice")
    assert isinstance(creds, UserCredentials)
    assert creds.private_key.public_data == key.public_data


async def test_reaper_credentials_of_a_user_without_any_are_none() -> None:
    async def auth_state(name: str) -> dict | None:
        return None

    act = HubActions(systems=SYSTEMS, ssh_ca={"enabled": False}, auth_state=auth_state, identity={})
    assert await act.credentials("Mini HPC", "hpcbob") is None
