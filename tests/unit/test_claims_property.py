"""Every parser fed from a user's shell or job, fed hostile text (hypothesis): any input up to
``ssh.maxOutputBytes`` (1 MiB, what the SSH layer lets through) parses in < 50 ms and
< 16 MiB, and yields validated values or the parser's refusal — never another exception.

The time is the CPU time of the parsing thread, best of three runs (the machine is shared:
this bounds how the parsers grow with their input, it is not a benchmark); the memory is
tracemalloc's peak.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpchub import claims, hostlist
from hpchub.claims import ClaimRefused
from hpchub.launcher import parse_ended
from hpchub.remoteops import parse_marks, run_directory
from hpchub.schedulers import TransientSchedulerError
from hpchub.schedulers.base import MAX_END_SECTIONS, MAX_SECTION, end_sections, parse_cancel, parse_found
from hpchub.schedulers.slurm import SlurmScheduler
from hpchub.spawners.batch import parse_address
from hpchub.sshpool import Result
from hpchub.status import (
    TransientProcessError,
    Unbelievable,
    parse_ps_rows,
    ps_answer,
)

SLURM = SlurmScheduler()
MAX_BYTES = 1 << 20  # ssh.maxOutputBytes' default
MAX_SECONDS = 0.050
MAX_MEMORY = 16 << 20
MAX_FIGURE = 1 << 62  # seconds or bytes a figure of an ending can be

# Pieces the formats are made of, and the characters that broke earlier parsers.
TOKENS = st.sampled_from(
    list("0123456789|[]-,;: \n\tabcnRUNIGPDE_TuesNov")
    + ["١", "٣", "１", "\x00", "\r", "\u2028", "é", "HPCHUB-", "RC ", "JRC ", "PID ", "PORT ", "DIR /"]
)


def pieces(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return st.lists(TOKENS, min_size=min_size, max_size=max_size).map("".join)


# Lines the parsers look at closely, to repeat up to the output cap.
TEMPLATES = st.sampled_from(
    [
        "{n}|RUNNING|None|2026-11-24T10:00:00|n[0-99998]m[0-99998]|alice\n",
        "{n}|PENDING|Priority|N/A||alice\n",
        "{n}|CANCELLED by 0|None|bob\n",
        "{n} alice Tue Nov 24 10:00:00 2026\n",
        "HPCHUB-ADDR nid001 {n} {n}\n",
        "HPCHUB-PID {n}\nHPCHUB-PORT {n}\n",
        "{n}|RUNNING\n",
        "nid[{n}-{n}{n}],x[1-{n}]\n",
        "HPCHUB-RC {n}\n",
        "HPCHUB-SCANCEL 0\n{n}|RUNNING\nHPCHUB-JRC {n}\n",
        "HPCHUB-DIR /home/a/{n}\nHPCHUB-RELAYPID {n}\n",
        "HPCHUB-PIDX {n}\nxHPCHUB-PORT {n}\n",
        "JobId={n} JobName=x UserId=alice(1) JobState=TIMEOUT ExitCode=0:9 RunTime=1-00:{n}:00 "
        "TimeLimit={n}:00 MinMemoryNode={n}M NumCPUs={n} TRES=cpu=1,mem={n}G NodeList=n[0-{n}]\n",
        "HPCHUB-END scontrol {n}\n",
        "{n}|TIMEOUT|0:0|{n}:00:00|UNLIMITED|{n}G|{n}K|alice\n{n}.batch|TIMEOUT|0:0|||{n}G|{n}.5G|\n",
        "slurmstepd-x: error: StepId={n}.batch exceeded memory limit ({n}{n}{n} > {n}), being killed\n",
        "exit {n}\nHPCHUB-END exit 0\nlifetime {n}\nHPCHUB-END watchdog {n}\n",
    ]
)


@st.composite
def hostile_text(draw: st.DrawFn) -> str:
    """Small arbitrary text, or a chunk (arbitrary or a near-valid line) repeated up to
    the cap: what a hostile ~/.bashrc or job prints."""
    if draw(st.booleans()):
        return draw(pieces(0, 300))
    if draw(st.booleans()):
        chunk = draw(TEMPLATES).format(n=draw(st.sampled_from(["1", "12", "١٢", "2147483648", "0", "007"])))
    else:
        chunk = draw(pieces(1, 200))
    size = draw(st.sampled_from([10_000, 200_000, MAX_BYTES]))
    return (chunk * (size // len(chunk) + 1))[:size]


ASKED_IDS = ["1", "12", "2147483647"]
ASKED_PIDS = [1, 12, 4194304]

# name -> (parse, the exception types that mean "refused")
PARSERS: dict[str, tuple[Callable[[str], Any], tuple[type[BaseException], ...]]] = {
    "claims.job_id": (lambda t: claims.job_id("M", t), (ClaimRefused,)),
    "claims.pid": (lambda t: claims.pid("M", t), (ClaimRefused,)),
    "claims.port": (lambda t: claims.port("M", t), (ClaimRefused,)),
    "claims.exit_code": (lambda t: claims.exit_code("M", t), (ClaimRefused,)),
    "claims.pid_start": (lambda t: claims.pid_start("M", t), (ClaimRefused,)),
    "claims.state": (claims.state, ()),
    "claims.text": (claims.text, ()),
    "claims.timestamp": (claims.timestamp, ()),
    "claims.account": (claims.account, ()),
    "hostlist.first": (hostlist.first, (hostlist.HostlistError,)),
    "hostlist.count": (hostlist.count, (hostlist.HostlistError,)),
    "hostlist.expand": (hostlist.expand, (hostlist.HostlistError,)),
    "slurm.parse_query": (lambda t: SLURM.parse_query(t, ASKED_IDS), ()),
    "slurm.parse_accounting": (lambda t: SLURM.parse_accounting(t, ASKED_IDS), ()),
    "status.parse_ps_rows": (lambda t: parse_ps_rows(t, ASKED_PIDS), (Unbelievable,)),
    "status.ps_answer": (
        lambda t: ps_answer(Result("h", "h:22", 1, t, ""), ASKED_PIDS),
        (TransientProcessError,),
    ),
    "slurm.parse_found": (parse_found, (TransientSchedulerError,)),
    "slurm.parse_cancel": (lambda t: parse_cancel(SLURM, t, "12"), (TransientSchedulerError,)),
    "slurm.parse_address": (lambda t: parse_address("12", t), ()),
    "remote.parse_marks": (parse_marks, ()),
    "remote.run_directory": (lambda t: run_directory("M", t), (ClaimRefused,)),
    "base.end_sections": (end_sections, ()),
    "slurm.parse_end": (lambda t: SLURM.parse_end("12", "alice", end_sections(t), t), ()),
    "launcher.parse_ended": (parse_ended, ()),
}


def check_value(name: str, value: Any) -> None:
    """What a parser returns is validated: ASCII decimal ids, ranges, bounded text."""
    if name in ("claims.job_id",):
        assert value.isascii() and value.isdigit() and 0 < int(value) <= claims.MAX_JOB_ID
    elif name in ("claims.pid",):
        assert 0 < value <= claims.MAX_PID
    elif name == "claims.port":
        assert 0 < value <= claims.MAX_PORT
    elif name == "slurm.parse_query":
        for job_id, row in value.items():
            assert job_id in ASKED_IDS and row.state.isascii() and len(row.reason) <= claims.MAX_TEXT
            assert len(row.nodes) <= hostlist.MAX_TEXT + 1
    elif name in ("status.parse_ps_rows", "status.ps_answer"):
        assert set(value) <= set(ASKED_PIDS)
    elif name == "slurm.parse_found":
        assert all(k.isascii() and k.isdigit() for k in value)
    elif name == "slurm.parse_address" and value is not None:
        assert 0 < value[1] <= claims.MAX_PORT
    elif name == "hostlist.expand":
        assert len(value) <= hostlist.MAX_HOSTS
    elif name == "base.end_sections":
        assert len(value) <= MAX_END_SECTIONS and all(len(t) <= MAX_SECTION for t, _ in value.values())
    elif name == "slurm.parse_end":
        assert len(value.state) <= 31 and len(value.reason) <= claims.MAX_TEXT
        assert len(value.nodes) <= hostlist.MAX_TEXT and len(value.exit_code) <= 7
        for n in (
            value.elapsed_seconds,
            value.limit_seconds,
            value.max_rss_bytes,
            value.requested_memory_bytes,
        ):
            assert n is None or 0 <= n <= MAX_FIGURE
    elif name == "launcher.parse_ended":
        assert len(value.exit_code) <= 3 and len(value.signal) <= 3 and len(value.output) <= MAX_SECTION


def measure(name: str, text: str) -> None:
    parse, refusals = PARSERS[name]
    best = float("inf")
    for _ in range(3):
        t0 = time.thread_time()
        try:
            value = parse(text)
        except refusals:
            value = None
        best = min(best, time.thread_time() - t0)
        if best < MAX_SECONDS:
            break
    assert best < MAX_SECONDS, f"{name} took {best * 1000:.0f} ms on {len(text)} characters"
    tracemalloc.start()
    try:
        try:
            parse(text)
        except refusals:
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MAX_MEMORY, f"{name} held {peak >> 20} MiB on {len(text)} characters"
    if value is not None:
        check_value(name, value)


def make_property(name: str) -> Callable[..., None]:
    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(text=hostile_text())
    def prop(text: str) -> None:
        measure(name, text)

    return prop


for _name in PARSERS:
    globals()[f"test_{_name.replace('.', '_')}_is_bounded_and_refuses_cleanly"] = make_property(_name)


def test_the_node_list_bomb_and_the_worst_near_valid_inputs_are_bounded() -> None:
    """The shapes that broke the hub, at the output cap, whatever hypothesis draws."""
    bomb = "n[0-99998]m[0-99998]"
    for name in ("hostlist.first", "hostlist.count", "hostlist.expand"):
        measure(name, bomb)
        measure(name, ",".join([bomb] * (MAX_BYTES // (len(bomb) + 1))))
        measure(name, "n[" + ",".join(["0-99998"] * (MAX_BYTES // 8)) + "]")
    rows = "".join(f"{i}|RUNNING|None|N/A|{bomb}|alice\n" for i in range(1, 20_000))
    measure("slurm.parse_query", rows[:MAX_BYTES])
