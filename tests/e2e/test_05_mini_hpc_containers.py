"""`make up` starts the mini HPC center without harming containers it did not create: a
container named like one of its own (hpc-login, hpc-ctl, hpc-c1, hpc-c2) but not labelled
by it is refused and left alone; its own are replaced when stale and kept when current.

Real Docker, with names of this test's own (the center's names belong to the running
center), through the functions hack/mini-hpc/up.sh runs (hack/mini-hpc/containers.sh)."""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from .conftest import ROOT

LIB = ROOT / "hack" / "mini-hpc" / "containers.sh"
UP = ROOT / "hack" / "mini-hpc" / "up.sh"
# Both built locally by make up (hack/kind/debian-base.sh, images/base/build.sh).
IMAGE = "hpchub-kind/debian:bookworm"
OTHER_IMAGE = "hpchub/debian-base:bookworm"


def docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)


def lib(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs ``script`` in bash with the library sourced, as up.sh does."""
    return subprocess.run(
        ["bash", "-c", f'set -euo pipefail; source "{LIB}"; {script}', "bash", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def inspect(name: str, fmt: str) -> str:
    r = docker("container", "inspect", "-f", fmt, name)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture
def names() -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for n in made:
        docker("rm", "-f", n)


def test_a_container_up_sh_did_not_create_is_refused_and_left_running(names: list[str]) -> None:
    name = f"hpc-e2e-{uuid.uuid4().hex[:8]}"
    names.append(name)
    # Someone else's container, even of the very image the center runs.
    r = docker("run", "-d", "--name", name, "--network", "none", IMAGE, "sleep", "600")
    assert r.returncode == 0, r.stderr
    before = inspect(name, "{{.Id}}")
    r = lib('mini_hpc_start "$1" "$2" none -- sleep 600', name, IMAGE)
    assert r.returncode != 0, r.stdout
    assert f"refusing to touch container(s) it did not create:\n  {name} ({IMAGE}, running)" in r.stderr
    assert inspect(name, "{{.Id}} {{.State.Running}}") == f"{before} true"
    r = lib('mini_hpc_claim hpc-e2e-free "$1"', name)
    assert r.returncode != 0 and name in r.stderr


def test_a_stale_container_of_its_own_is_replaced_and_a_current_one_kept(names: list[str]) -> None:
    name = f"hpc-e2e-{uuid.uuid4().hex[:8]}"
    names.append(name)
    r = docker(
        "run",
        "-d",
        "--name",
        name,
        "--label",
        "hpchub.mini-hpc=1",
        "--network",
        "none",
        OTHER_IMAGE,
        "sleep",
        "600",
    )
    assert r.returncode == 0, r.stderr
    stale = inspect(name, "{{.Id}}")
    r = lib('mini_hpc_start "$1" "$2" none -- sleep 600', name, IMAGE)
    assert r.returncode == 0, r.stderr
    current = inspect(name, "{{.Id}}")
    assert current != stale
    assert inspect(
        name, '{{.Config.Image}} {{index .Config.Labels "hpchub.mini-hpc"}} {{.State.Running}}'
    ) == (f"{IMAGE} 1 true")
    r = lib('mini_hpc_start "$1" "$2" none -- sleep 600', name, IMAGE)
    assert r.returncode == 0, r.stderr
    assert inspect(name, "{{.Id}}") == current


def test_up_sh_claims_every_name_it_starts_before_starting_anything() -> None:
    text = UP.read_text()
    started = re.findall(r"^start (\S+) ", text, re.M)
    (claim,) = re.findall(r"^mini_hpc_claim (.+)$", text, re.M)
    assert sorted(claim.split()) == sorted(started) == ["hpc-c1", "hpc-c2", "hpc-ctl", "hpc-login"]
    assert text.index("mini_hpc_claim ") < text.index("build.sh") < text.index("\nstart hpc-")


def test_one_of_its_own_started_with_other_arguments_is_replaced(names: list[str]) -> None:
    # A kept login node whose --add-host names the kind node's old address cannot reach the
    # hub after the cluster is made again: the arguments are part of "current".
    name = f"hpc-e2e-{uuid.uuid4().hex[:8]}"
    names.append(name)
    start = 'mini_hpc_start "$1" "$2" none --add-host "hpchub-dev.local:$3" -- sleep 600'
    r = lib(start, name, IMAGE, "192.0.2.7")
    assert r.returncode == 0, r.stderr
    first = inspect(name, "{{.Id}}")
    r = lib(start, name, IMAGE, "192.0.2.7")
    assert r.returncode == 0, r.stderr
    assert inspect(name, "{{.Id}}") == first
    r = lib(start, name, IMAGE, "192.0.2.8")
    assert r.returncode == 0, r.stderr
    assert inspect(name, "{{.Id}}") != first
    assert inspect(name, "{{.HostConfig.ExtraHosts}}") == "[hpchub-dev.local:192.0.2.8]"
