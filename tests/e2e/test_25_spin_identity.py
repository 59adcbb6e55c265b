"""A Spin notebook runs as its user's own uid/gid from the mini HPC center's account
database — never as what the user's shell prints (issue 8, hole 1).

bob (uid 1001, images/mini-hpc/users.txt) is not the chart's default uid (1000), so a pod
that ignored the lookup would show it. His ``~/.bashrc`` on the shared home prints ``0``
twice and exits for every SSH session: a lookup that ran a command as bob (``id -u; id -g``
through his login shell) read "uid 0, gid 0" and made a root pod with the shared home
mounted. The hub asks the site's service account instead (``getent passwd``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from .conftest import SPIN_SERVER, STATE, Hub, docker_exec, login, pod_exec, spin_pod

BOB, BOB_UID, BOB_GID = "bob", 1001, 100
PASSWORD = os.environ.get("HPCHUB_DEV_PASSWORD", "hpchub-dev")
HOSTILE_BASHRC = (
    '# e2e: what a hostile user writes\nif [ -n "$SSH_CONNECTION" ]; then echo 0; echo 0; exit 0; fi\n'
)


@pytest.fixture(scope="module")
def bob_spin(kube: client.CoreV1Api) -> Iterator[tuple[Hub, dict[str, Any]]]:
    bashrc = STATE / "home" / BOB / ".bashrc"
    saved = bashrc.read_bytes() if bashrc.exists() else None
    bashrc.write_text(HOSTILE_BASHRC)
    os.chown(bashrc, BOB_UID, BOB_GID)
    # The login node's own view: an SSH session of bob now prints "0 0" and runs nothing else.
    hub = login(BOB, PASSWORD)
    try:
        yield hub, hub.start(SPIN_SERVER)
    finally:
        try:
            hub.stop(SPIN_SERVER)
        finally:
            if saved is None:
                bashrc.unlink(missing_ok=True)
            else:
                bashrc.write_bytes(saved)


def test_spin_pod_runs_as_the_account_databases_uid_not_what_the_users_shell_prints(
    kube: client.CoreV1Api, bob_spin: tuple[Hub, dict[str, Any]]
) -> None:
    pod = spin_pod(kube, user=BOB)
    ctx = pod.spec.containers[0].security_context
    assert (ctx.run_as_user, ctx.run_as_group) == (BOB_UID, BOB_GID)
    assert pod_exec(kube, pod.metadata.name, ["id", "-u"]).strip() == str(BOB_UID)
    assert pod_exec(kube, pod.metadata.name, ["id", "-g"]).strip() == str(BOB_GID)


def test_spin_server_of_a_user_whose_uid_is_not_the_default_works_in_their_home(
    kube: client.CoreV1Api, bob_spin: tuple[Hub, dict[str, Any]]
) -> None:
    hub, _ = bob_spin
    assert hub.through_proxy(SPIN_SERVER).status_code == 200
    pod = spin_pod(kube, user=BOB).metadata.name
    assert pod_exec(kube, pod, ["sh", "-c", 'echo "$HOME"']).strip() == f"/home/{BOB}"
    # jupyter_server's own files went to the user's home, not the image's /home/jovyan.
    assert (STATE / "home" / BOB / ".local" / "share" / "jupyter").is_dir()
    marker = f"/home/{BOB}/e2e-from-spin.txt"
    pod_exec(kube, pod, ["sh", "-c", f"echo spin > {marker}"])
    stat = (STATE / "home" / BOB / "e2e-from-spin.txt").stat()
    assert (stat.st_uid, stat.st_gid) == (BOB_UID, BOB_GID)
    # The same file belongs to bob on the login node (the same account, the same files).
    r = docker_exec("hpc-login", "stat", "-c", "%U %G", marker)
    assert r.returncode == 0 and r.stdout.split()[0] == BOB, r.stdout + r.stderr
