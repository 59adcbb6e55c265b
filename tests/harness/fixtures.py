"""Session fixtures every suite on the mini HPC center shares (integration, faults):
import them into a conftest.py."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import minihpc


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    d = minihpc.make_workdir()
    yield d
    if not os.environ.get("HPCHUB_KEEP_WORKDIR"):  # keep logs for debugging on request
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm(workdir: Path) -> Iterator[minihpc.Slurm]:
    minihpc.ensure_users()
    s = minihpc.Slurm(workdir)
    s.prepare()
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def sshd(workdir: Path, slurm: minihpc.Slurm) -> Iterator[minihpc.SSHD]:
    """The login node: sshd on a loopback port, its users' shells seeing the session's Slurm."""
    minihpc.ensure_venv()
    d = minihpc.SSHD(workdir)
    d.prepare(slurm.conf)
    d.start()
    yield d
    d.stop()
