"""How a Slurm job ended, read from the real answers of Slurm 22.05 (the mini HPC center's,
captured from `scontrol show job -o`, and slurmstepd's lines in a job's output), and the
cause each state means."""

from __future__ import annotations

import pytest

from hpchub.schedulers.base import END_MARK, EndDetails, end_section, end_sections
from hpchub.schedulers.slurm import (
    SlurmScheduler,
    duration,
    memory_per_node,
    oom_in_output,
    scontrol_fields,
    size,
)

SLURM = SlurmScheduler()
USER = "hpcalice"


def line(job: str, state: str, reason: str, exit_code: str, extra: str = "") -> str:
    """A `scontrol show job -o` line as Slurm 22.05 prints it (fields in its order)."""
    return (
        f"JobId={job} JobName=hpchub-0123 UserId={USER}(1001) GroupId={USER}(1001) MCS_label=N/A "
        f"Priority=4294901759 Nice=0 Account=(null) QOS=(null) JobState={state} Reason={reason} "
        f"Dependency=(null) Requeue=0 Restarts=0 BatchFlag=1 Reboot=0 ExitCode={exit_code} RunTime=00:01:24 "
        "TimeLimit=00:01:00 TimeMin=N/A SubmitTime=2026-12-06T02:05:04 StartTime=2026-12-06T02:05:04 "
        "Partition=debug NodeList=mini01 BatchHost=mini01 NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 "
        f"TRES=cpu=1,mem=1000M,node=1,billing=1 {extra}MinCPUsNode=1 MinMemoryCPU=1000M MinTmpDiskNode=0 "
        f"Command=(null) WorkDir=/home/{USER} StdErr=/home/{USER}/.hpchub/jobs/0123.out Power="
    )


def answer(scontrol: str = "", scontrol_rc: int = 0, sacct: str = "", sacct_rc: int = 1) -> dict:
    text = (
        f"{scontrol}\n\n{END_MARK} scontrol {scontrol_rc}\n"
        f"{sacct or 'Slurm accounting storage is disabled'}\n\n{END_MARK} sacct {sacct_rc}\n"
    )
    return end_sections(text)


@pytest.mark.parametrize(
    ("state", "reason", "exit_code", "cause"),
    [
        ("TIMEOUT", "TimeLimit", "143:0", "time_limit"),
        ("NODE_FAIL", "NodeDown", "143:0", "node_failure"),
        ("PREEMPTED", "None", "143:0", "preempted"),
        ("CANCELLED", "None", "143:0", "cancelled"),
        ("OUT_OF_MEMORY", "OutOfMemory", "0:125", "out_of_memory"),
        ("FAILED", "NonZeroExitCode", "1:0", "exited"),
        ("COMPLETED", "None", "0:0", "exited"),
        ("BOOT_FAIL", "None", "0:0", "node_failure"),
        ("REVOKED", "None", "0:0", "unknown"),
    ],
)
def test_each_state_has_its_cause(state: str, reason: str, exit_code: str, cause: str) -> None:
    d = SLURM.parse_end("6", USER, answer(line("6", state, reason, exit_code)), "")
    assert d is not None and (d.state, d.exit_code) == (state, exit_code)
    assert d.reason == ("" if reason == "None" else reason)
    assert (d.elapsed_seconds, d.limit_seconds, d.nodes) == (84, 60, "mini01")
    assert d.requested_memory_bytes == 1000 * 2**20 and d.source == "scontrol"
    assert SLURM.end_cause(d) == cause


def test_a_job_killed_over_its_memory_without_cgroups_is_out_of_memory() -> None:
    # What the mini HPC center's Slurm (jobacct_gather, OverMemoryKill) answered, verbatim.
    output = (
        "hpchub: job 1 starting the server on mini01\n"
        "slurmstepd-mini01: error: StepId=1.batch exceeded memory limit (221052928 > 209715200), being killed\n"
        "slurmstepd-mini01: error: Exceeded job memory limit\n"
        "slurmstepd-mini01: error: *** JOB 1 ON mini01 CANCELLED AT 2026-12-06T02:03:57 ***\n"
        "slurmstepd-mini01: error: StepId=1.batch exceeded memory limit (231052928 > 209715200), being killed\n"
    )
    text = line("1", "FAILED", "JobLaunchFailure", "0:9", "MinMemoryNode=200M ").replace(
        " MinMemoryCPU=1000M", ""
    )
    d = SLURM.parse_end("1", USER, answer(text), output)
    assert d is not None and d.out_of_memory and SLURM.end_cause(d) == "out_of_memory"
    assert d.max_rss_bytes == 231052928 and d.requested_memory_bytes == 200 * 2**20
    # Another job's line in the output says nothing about this one.
    assert oom_in_output(output, "2") == (False, None, None)


def test_sacct_fills_in_what_scontrol_no_longer_knows() -> None:
    sacct = (
        f"7|OUT_OF_MEMORY|0:125|00:05:01|01:00:00|4G||{USER}\n"
        "7.batch|OUT_OF_MEMORY|0:125|00:05:01||4G|4012M|\n"
        "7.extern|COMPLETED|0:0|00:05:01||4G|0|\n"
    )
    purged = "slurm_load_jobs error: Invalid job id specified"
    d = SLURM.parse_end("7", USER, answer(purged, 1, sacct, 0), "")
    assert d == EndDetails(
        state="OUT_OF_MEMORY",
        exit_code="0:125",
        elapsed_seconds=301,
        limit_seconds=3600,
        max_rss_bytes=4012 * 2**20,
        requested_memory_bytes=4 * 2**30,
        source="sacct",
    )
    assert SLURM.end_cause(d) == "out_of_memory"


def test_another_users_job_and_forged_lines_are_not_believed() -> None:
    theirs = line("8", "TIMEOUT", "TimeLimit", "0:0").replace(f"UserId={USER}(", "UserId=hpcbob(")
    assert SLURM.parse_end("8", USER, answer(theirs), "") is None
    twice = line("8", "TIMEOUT", "TimeLimit", "0:0") + "\n" + line("8", "COMPLETED", "None", "0:0")
    assert SLURM.parse_end("8", USER, answer(twice), "") is None
    sacct = "8|TIMEOUT|0:0|00:01:00|00:01:00|1G||hpcbob\n"
    assert SLURM.parse_end("8", USER, answer("", 1, sacct, 0), "") is None
    # A section named twice (marks printed by the job itself) is dropped.
    text = f"x\n{END_MARK} scontrol 0\ny\n{END_MARK} scontrol 0\n"
    assert "scontrol" not in end_sections(text)


def test_sizes_and_durations_as_slurm_spells_them() -> None:
    assert [size(v) for v in ("4000M", "1.50G", "4012K", "0", "512", "n/a", "9" * 30)] == [
        4000 * 2**20,
        int(1.5 * 2**30),
        4012 * 1024,
        None,
        512 * 2**20,
        None,
        None,
    ]
    assert [duration(v) for v in ("00:01:00", "1-02:03:04", "05:06", "UNLIMITED", "Partition_Limit")] == [
        60,
        93784,
        306,
        None,
        None,
    ]
    fields = scontrol_fields(line("9", "RUNNING", "None", "0:0").replace("NumCPUs=1", "NumCPUs=4"), "9")
    assert fields is not None and memory_per_node(fields) == 4000 * 2**20  # MinMemoryCPU x CPUs


def test_the_end_script_runs_and_marks_every_answer() -> None:
    import subprocess

    script = end_section("one", "printf 'no newline'") + end_section("two", "sh -c 'echo two; exit 3'")
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True).stdout
    assert {k: (v[0].strip(), v[1]) for k, v in end_sections(out).items()} == {
        "one": ("no newline", 0),
        "two": ("two", 3),
    }
