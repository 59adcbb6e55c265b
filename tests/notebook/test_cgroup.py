"""A kernel's memory cgroup and why it died, on fake /proc and cgroup trees (v1 and v2).
The real OOM kill is in test_lab_standin_hub.py (a real cgroup v1 with a small limit)."""

from __future__ import annotations

import signal
from pathlib import Path

from hpchub_notebook.cgroup import format_bytes, memory_cgroup
from hpchub_notebook.kernels import death_of


def fake(tmp: Path, cgroup_lines: str, files: dict[str, str]) -> tuple[Path, Path]:
    proc, root = tmp / "proc", tmp / "cg"
    (proc / "42").mkdir(parents=True)
    (proc / "42" / "cgroup").write_text(cgroup_lines)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return proc, root


def test_cgroup_v1_counter_and_limit(tmp_path):
    proc, root = fake(
        tmp_path,
        "9:name=systemd:/\n4:memory:/slurm/uid_1000/job_7\n0::/\n",
        {
            "memory/slurm/uid_1000/job_7/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
            "memory/slurm/uid_1000/job_7/memory.limit_in_bytes": str(4 << 30),
        },
    )
    cg = memory_cgroup(42, proc, root)
    assert cg is not None and cg.version == 1
    assert cg.oom_kills() == 2 and cg.limit_bytes() == 4 << 30


def test_cgroup_v2_counter_and_limit(tmp_path):
    proc, root = fake(
        tmp_path,
        "0::/kubepods/pod1/c1\n",
        {
            "kubepods/pod1/c1/memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
            "kubepods/pod1/c1/memory.max": "268435456\n",
        },
    )
    cg = memory_cgroup(42, proc, root)
    assert cg is not None and cg.version == 2 and cg.oom_kills() == 1 and cg.limit_bytes() == 256 << 20


def test_in_a_cgroup_namespace_the_mount_is_the_cgroup(tmp_path):
    proc, root = fake(tmp_path, "0::/\n", {"memory.events": "oom_kill 0\n", "memory.max": "max\n"})
    cg = memory_cgroup(42, proc, root)
    assert cg is not None and cg.oom_kills() == 0 and cg.limit_bytes() is None


def test_unlimited_v1_and_missing_files_are_unknown(tmp_path):
    proc, root = fake(
        tmp_path,
        "4:memory:/a\n",
        {
            "memory/a/memory.oom_control": "oom_kill_disable 0\n",
            "memory/a/memory.limit_in_bytes": "9223372036854771712",
        },
    )
    cg = memory_cgroup(42, proc, root)
    assert cg is not None and cg.oom_kills() is None and cg.limit_bytes() is None
    assert memory_cgroup(43, proc, root) is None  # the process is gone


def test_sigkill_with_a_new_oom_kill_is_out_of_memory():
    d = death_of("k", -signal.SIGKILL, 0, 1, 256 << 20, 0.0)
    assert d.reason == "oom"
    assert d.message.startswith("The kernel was killed because it ran out of memory (limit 256 MiB)")


def test_sigkill_without_an_oom_kill_is_a_kill_and_an_exit_is_an_exit():
    assert death_of("k", -signal.SIGKILL, 1, 1, None, 0.0).reason == "killed"
    assert (
        death_of("k", -signal.SIGKILL, None, None, None, 0.0).message == "The kernel was killed by SIGKILL."
    )
    assert death_of("k", 1, 0, 1, None, 0.0).reason == "exited"


def test_bytes_read_as_a_person_reads_them():
    assert format_bytes(256 << 20) == "256 MiB" and format_bytes(int(1.5 * (1 << 30))) == "1.5 GiB"
