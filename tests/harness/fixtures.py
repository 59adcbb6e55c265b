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
