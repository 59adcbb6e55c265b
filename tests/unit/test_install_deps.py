"""hack/install-deps.sh's choice of Debian packages (INSTALL_DEPS_PLAN=1 prints it), on a
machine whose PATH the test makes: Debian's docker.io conflicts with Docker's own docker-ce,
so a machine that has a Docker engine (dockerd, or a docker CLI whose engine answers) must
not be given docker.io (apt would remove the site's Docker to install it); a docker CLI alone
is no engine (a fresh CI machine has one, and no dockerd). The real script runs, as root,
with a dpkg-query that knows nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "install-deps.sh"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="install-deps.sh runs as root")


def plan(tmp_path: Path, profile: str, *, docker: str = "", dockerd: bool = False) -> list[str]:
    """The packages install-deps.sh would install, with only these commands on PATH:
    ``docker`` "answers" (its engine answers ``docker info``), "cli" (a CLI alone) or ""
    (none); ``dockerd`` installed or not."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "id", "mkdir", "grep", "cat", "timeout"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    fakes = {"dpkg-query": "exit 1"}  # no package is installed on this machine
    if docker:
        fakes["docker"] = (
            "exit 0" if docker == "answers" else "echo 'Cannot connect to the Docker daemon' >&2; exit 1"
        )
    if dockerd:
        fakes["dockerd"] = "exit 99"  # never run by the plan
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    r = subprocess.run(
        ["/bin/bash", str(SCRIPT), profile],
        env={"PATH": str(bin_dir), "INSTALL_DEPS_PLAN": "1", "HPCHUB_TOOLS": str(tmp_path / "tools")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


@pytest.mark.parametrize("profile", ["up", "all"])
@pytest.mark.parametrize(("docker", "dockerd"), [("cli", True), ("answers", False)])
def test_a_machine_with_a_docker_engine_is_not_given_debians_docker_io(
    tmp_path: Path, profile: str, docker: str, dockerd: bool
) -> None:
    packages = plan(tmp_path, profile, docker=docker, dockerd=dockerd)
    assert "debootstrap" in packages and "gcc" in packages  # the plan is the real one
    assert "docker.io" not in packages, packages


@pytest.mark.parametrize("docker", ["", "cli"])
def test_a_machine_without_a_docker_engine_gets_debians_docker_io(tmp_path: Path, docker: str) -> None:
    # "cli": a docker client with no dockerd and no engine answering (this project's CI machine).
    assert "docker.io" in plan(tmp_path, "up", docker=docker)


def test_apt_never_removes_a_package_to_install_ours() -> None:
    # The one apt-get install line refuses to remove anything the machine has.
    installs = [
        line for line in SCRIPT.read_text().splitlines() if "apt-get install" in line and "echo" not in line
    ]
    assert len(installs) == 1 and "--no-remove" in installs[0], installs
