"""hack/install-deps.sh's choice of Debian packages (INSTALL_DEPS_PLAN=1 prints it), on a
machine whose PATH the test makes: Debian's docker.io conflicts with Docker's own docker-ce,
so a machine that has a docker CLI must not be given docker.io (apt would remove the site's
Docker to install it). The real script runs, as root, with a dpkg-query that knows nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "install-deps.sh"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="install-deps.sh runs as root")


def plan(tmp_path: Path, profile: str, *, docker: bool) -> list[str]:
    """The packages install-deps.sh would install, with only these commands on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "id", "mkdir", "grep", "cat"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    # dpkg-query: no package is installed on this machine.
    (bin_dir / "dpkg-query").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "dpkg-query").chmod(0o755)
    if docker:  # any docker CLI (docker-ce's, say); never run by the plan
        (bin_dir / "docker").write_text("#!/bin/sh\nexit 99\n")
        (bin_dir / "docker").chmod(0o755)
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
def test_a_machine_with_a_docker_cli_is_not_given_debians_docker_io(tmp_path: Path, profile: str) -> None:
    packages = plan(tmp_path, profile, docker=True)
    assert "debootstrap" in packages and "gcc" in packages  # the plan is the real one
    assert "docker.io" not in packages, packages


def test_a_machine_without_docker_gets_debians_docker_io(tmp_path: Path) -> None:
    assert "docker.io" in plan(tmp_path, "up", docker=False)


def test_apt_never_removes_a_package_to_install_ours() -> None:
    # The one apt-get install line refuses to remove anything the machine has.
    installs = [
        line for line in SCRIPT.read_text().splitlines() if "apt-get install" in line and "echo" not in line
    ]
    assert len(installs) == 1 and "--no-remove" in installs[0], installs
