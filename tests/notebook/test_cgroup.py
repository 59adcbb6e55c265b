"""A kernel's memory cgroup and why it died, on fake /proc and cgroup trees (v1 and v2).
The real OOM kill is in test_lab_standin_hub.py (a real cgroup v1 with a small limit)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from hpchub_notebook.cgroup import format_bytes, memory_cgroup
from hpchub_notebook.kernels import Watched, being_killed, death_of


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


def fake_process(tmp: Path, stat: str, pending: tuple[str, str] = ("0" * 16, "0" * 16)) -> Path:
    proc = tmp / "proc"
    (proc / "7").mkdir(parents=True)
    (proc / "7" / "stat").write_text(stat)
    (proc / "7" / "status").write_text(f"Name:\tpython\nSigPnd:\t{pending[0]}\nShdPnd:\t{pending[1]}\n")
    return proc


def test_a_kernel_is_being_killed_from_the_pending_sigkill_until_it_is_reaped(tmp_path):
    """The OOM killer counts its kill when it sends SIGKILL; the victim frees its memory after.
    Until it is gone, its cgroup's counter must not become the kernel's baseline (the bug: CI
    named an OOM kill "killed by SIGKILL")."""
    running = "7 (python) R 1 7 7 0 -1 4194560 0 0"  # flags 0x400100: no PF_EXITING
    assert not being_killed(7, fake_process(tmp_path / "a", running))
    assert being_killed(7, fake_process(tmp_path / "b", running, ("0" * 13 + "100", "0" * 16)))
    assert being_killed(7, fake_process(tmp_path / "c", running, ("0" * 16, "0" * 13 + "100")))
    # a comm with spaces and parentheses does not shift the fields; PF_EXITING is read
    assert being_killed(7, fake_process(tmp_path / "d", "7 (a) b (c) R 1 7 7 0 -1 4194564 0 0"))
    assert not being_killed(7, fake_process(tmp_path / "e", "7 (a) b (c) R 1 7 7 0 -1 4194560 0 0"))
    assert being_killed(7, fake_process(tmp_path / "f", "7 (python) Z 1 7 7 0 -1 4194560 0 0"))
    assert being_killed(8, fake_process(tmp_path / "g", running))  # gone
    assert being_killed(None)


def test_a_real_process_is_alive_then_a_zombie_once_killed():
    child = subprocess.Popen(["sleep", "60"])
    try:
        assert not being_killed(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        # not reaped yet: a zombie, still "being killed"
        for _ in range(100):
            if (Path("/proc") / str(child.pid) / "stat").read_text().rpartition(")")[2].split()[0] == "Z":
                break
            os.sched_yield()
        assert being_killed(child.pid)
    finally:
        child.kill()
        child.wait()
    assert being_killed(child.pid)


def test_a_count_becomes_the_baseline_only_once_a_later_look_finds_the_kernel_well():
    """The kernel's cgroup counts the OOM kill just before its SIGKILL is sent: a look in
    between sees the new count and a kernel not yet being killed. The death that follows
    must still read as out of memory."""
    w = Watched()
    w.looked(0, healthy=True)  # the first look
    w.looked(0, healthy=True)
    w.looked(1, healthy=True)  # counted, SIGKILL not sent yet
    w.looked(1, healthy=False)  # now being killed
    assert w.oom_kills == 0
    assert death_of("k", -signal.SIGKILL, w.oom_kills, 1, None, 0.0).reason == "oom"
    # an earlier kill in the same cgroup (another kernel) is in the baseline two looks on
    w = Watched()
    for count in (3, 3, 3):
        w.looked(count, healthy=True)
    assert w.oom_kills == 3 and death_of("k", -signal.SIGKILL, w.oom_kills, 3, None, 0.0).reason == "killed"
