"""Slurm host lists expanded as ``scontrol show hostnames`` does (checked against the real
scontrol, which `make test` installs)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hpchub import hostlist

LISTS = [
    "mini01",
    "nid[001-003,010]",
    "a[1-2]b[3-4]",
    "node1,node2",
    "tux[8-10],login",
    "x[09-11]",
    "c[098-101]",
    "gpu[01-02],mini01",
    "nid[7]",
]
INVALID = ["n[1-3]-ib", "a[1-2],b[7]c", "n[3-1]", "n[a-b]", "n[[1-2]]"]
# scontrol guesses at these; slurmctld never prints them, so a node list like that is refused.
STRICTER = ["n[1-2", "n1-2]", "n[1-2],"]


def scontrol_hostnames(tmp_path: Path, text: str) -> list[str] | None:
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=x\nSlurmctldHost=localhost\nNodeName=n1 CPUs=1\nPartitionName=p Nodes=n1\n")
    scontrol = shutil.which("scontrol")
    assert scontrol, "scontrol not found: run hack/install-deps.sh"
    r = subprocess.run(
        [scontrol, "show", "hostnames", text],
        capture_output=True,
        text=True,
        env={**os.environ, "SLURM_CONF": str(conf)},
    )
    return r.stdout.split() if r.returncode == 0 else None


@pytest.mark.parametrize("text", LISTS)
def test_expands_like_scontrol(tmp_path: Path, text: str) -> None:
    expected = scontrol_hostnames(tmp_path, text)
    assert expected, f"scontrol refused {text!r}"
    assert hostlist.expand(text) == expected
    assert hostlist.first(text) == expected[0]


@pytest.mark.parametrize("text", INVALID)
def test_refuses_what_scontrol_refuses(tmp_path: Path, text: str) -> None:
    with pytest.raises(hostlist.HostlistError):
        hostlist.expand(text)
    assert not scontrol_hostnames(tmp_path, text)


@pytest.mark.parametrize("text", STRICTER)
def test_refuses_malformed_lists_scontrol_guesses_at(text: str) -> None:
    with pytest.raises(hostlist.HostlistError):
        hostlist.expand(text)


def test_huge_ranges_are_refused() -> None:
    with pytest.raises(hostlist.HostlistError, match="too large"):
        hostlist.expand("n[0-99999999]")
