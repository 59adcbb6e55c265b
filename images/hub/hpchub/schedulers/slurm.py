"""The Slurm adapter: sbatch, squeue, sacct and scancel, and how to read their answers.

Commands and formats, and why:

- ``squeue -h -t all -j <ids> -o %i|%T|%r|%S|%N|%u``: one query for every watched job (the
  status board). ``%u`` comes before nothing a user controls: the job name (``%j``) and
  comment are left out on purpose, a user could put a newline and a forged line for
  another job in them. An id squeue refuses ("Invalid job id") fails the whole list.
- ``sacct -X -n -P -j <ids> -o JobID,State,Reason,User``: how jobs slurmctld no longer holds
  (``MinJobAge``) have ended.
- ``squeue --me -n hpchub-<run id>``: a submission whose answer was lost, found by name.
- ``scancel -u "$(id -un)" -n hpchub-<run id>`` and ``scancel <id>``, then ``squeue --me``:
  what is left of the run.
- ``scontrol show job -o <id>`` and ``sacct -j <id> -n -P -o JobID,State,ExitCode,Elapsed,
  Timelimit,ReqMem,MaxRSS,User``: how a job ended (the ended cell). scontrol knows the job
  until ``MinJobAge`` after its end, with its state, reason, exit code, run time, limit and
  memory request; sacct (where slurmdbd runs) knows it longer and has the batch step's
  MaxRSS. Without cgroups, a job killed by ``JobAcctGatherParams=OverMemoryKill`` ends
  FAILED on signal 9 and slurmstepd writes ``exceeded memory limit (<used> > <limit>)``
  (bytes, Slurm 21.08+) to the job's output: read as an out-of-memory end and its use.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from typing import Any

from .. import claims, hostlist
from ..serverstate import JobShape
from .base import MARK, EndDetails, JobStatus, Scheduler, end_section

# %u before nothing user-controlled (see the module docstring).
SQUEUE_FORMAT = "%i|%T|%r|%S|%N|%u"
# Placeholders Slurm prints for "nothing" in a field.
_PLACEHOLDERS = frozenset({"", "None", "(null)", "N/A", "Unknown", "n/a"})
# Extra directives that ask for GPUs their own way (not per node, or as a GRES).
_GPU_DIRECTIVES = frozenset(
    {"--gres", "--gpus", "--gpus-per-node", "--gpus-per-task", "--gpus-per-socket", "--tres-per-task"}
)
# Candidate lines, found at C speed (re.M): chatter that is not one never costs a Python
# step, whatever its size. Only what a candidate line says is then read, in Python. The
# last field (the user) runs to the end of the line, trailing blanks and \r included
# (claims.account strips them): no part of a pattern can match what the next may, so each
# is linear (see base._ID_STATE_LINE).
_SQUEUE_LINE = re.compile(
    r"^[ \t]*([0-9]{1,10})\|([^|\n]*)\|([^|\n]*)\|([^|\n]*)\|([^|\n]*)\|([^|\n]*)$", re.M
)
_SACCT_LINE = re.compile(r"^[ \t]*([0-9]{1,10})\|([^|\n]*)\|([^|\n]*)\|([^|\n]*)$", re.M)


# How a job ended: sacct's columns (MaxRSS is the batch step's; User is the job line's).
SACCT_END_FORMAT = "JobID,State,ExitCode,Elapsed,Timelimit,ReqMem,MaxRSS,User"
_SACCT_END_LINE = re.compile(
    r"^[ \t]*([0-9]{1,10})(\.batch)?\|([^|\n]*)\|([^|\n]*)\|([^|\n]*)\|([^|\n]*)\|([^|\n]*)"
    r"\|([^|\n]*)\|([^|\n]*)$",
    re.M,
)
# `scontrol show job -o`: one line of Key=Value words; the first of a key is read.
_SCONTROL_FIELD = re.compile(r"(?:^| )([A-Za-z][A-Za-z/:_]{0,31})=(\S{0,512})")
SCONTROL_KEYS = frozenset(
    {
        "UserId",
        "JobState",
        "Reason",
        "ExitCode",
        "RunTime",
        "TimeLimit",
        "NodeList",
        "NumNodes",
        "NumCPUs",
        "MinMemoryNode",
        "MinMemoryCPU",
        "TRES",
    }
)
_DURATION = re.compile(r"(?:([0-9]{1,5})-)?(?:([0-9]{1,2}):)?([0-9]{1,2}):([0-9]{2})(?:\.[0-9]{1,6})?")
_SIZE = re.compile(r"([0-9]{1,12}(?:\.[0-9]{1,6})?)([KMGTP]?)[nc]?")
_UNITS = {"": 2**20, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50}
_EXIT = re.compile(r"[0-9]{1,3}:[0-9]{1,3}")
# slurmstepd's words when jobacct_gather (OverMemoryKill) or task/cgroup killed the job.
_OOM_KILLED = re.compile(
    r"^slurmstepd(?:-[^:\n]{1,64})?: error: (?:StepId=|Step |Job |JobId=)?([0-9]{1,10})\S* exceeded memory "
    r"limit \(([0-9]{1,19}) > ([0-9]{1,19})\), being killed",
    re.M,
)
_OOM_EVENT = re.compile(r"^slurmstepd(?:-[^:\n]{1,64})?: error: Detected [0-9]{1,9} oom[_-]kill event", re.M)


def duration(value: str) -> int | None:
    """Seconds of a Slurm duration (``[D-][HH:]MM:SS``); None for ``UNLIMITED`` and the like."""
    m = _DURATION.fullmatch(value.strip())
    if not m:
        return None
    days, hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


# More bytes than any node has (1 EiB): a figure past it is not one.
MAX_BYTES = 1 << 60


def size(value: str) -> int | None:
    """Bytes of a Slurm size (``4000M``, ``1.50G``, ``4012K``; no unit: MiB); None for none."""
    m = _SIZE.fullmatch(value.strip())
    if not m:
        return None
    n = int(float(m.group(1)) * _UNITS[m.group(2)])
    return n if 0 < n <= MAX_BYTES else None


def _count(value: str) -> int:
    return int(value) if value.isdigit() and len(value) <= 9 else 0


def scontrol_fields(section: str, job_id: str) -> dict[str, str] | None:
    """The Key=Value words of the one ``JobId=<id>`` line of ``scontrol show job -o``."""
    lines = re.findall(rf"^JobId={job_id} [^\n]*", section, re.M)
    if len(lines) != 1:
        return None  # none, or someone printing a second one
    fields: dict[str, str] = {}
    for m in _SCONTROL_FIELD.finditer(lines[0]):
        if m.group(1) in SCONTROL_KEYS:
            fields.setdefault(m.group(1), m.group(2))
    return fields


def memory_per_node(fields: dict[str, str]) -> int | None:
    """The job's memory limit on a node: MinMemoryNode, else MinMemoryCPU x its CPUs per
    node, else the TRES total over its nodes."""
    if size(fields.get("MinMemoryNode", "")):
        return size(fields["MinMemoryNode"])
    nodes = _count(fields.get("NumNodes", "")) or 1
    per_cpu = size(fields.get("MinMemoryCPU", ""))
    cpus = _count(fields.get("NumCPUs", ""))
    if per_cpu and cpus:
        return per_cpu * max(cpus // nodes, 1)
    tres = re.search(r"(?:^|,)mem=([^,]{1,32})", fields.get("TRES", ""))
    total = size(tres.group(1)) if tres else None
    return total // nodes if total else None


def oom_in_output(output: str, job_id: str) -> tuple[bool, int | None, int | None]:
    """(killed for its memory, the use slurmstepd saw, its limit) from the job's output."""
    used = limit = None
    killed = False
    for m in _OOM_KILLED.finditer(output):
        if m.group(1) != job_id:
            continue
        killed = True
        if int(m.group(2)) <= MAX_BYTES and int(m.group(3)) <= MAX_BYTES:
            used = max(used or 0, int(m.group(2)))
            limit = int(m.group(3))
    return killed or bool(_OOM_EVENT.search(output)), used, limit


def candidate_cap(asked: int) -> int:
    """Most candidate lines an honest answer about ``asked`` ids can have (one each, and
    some slack for a banner that happens to look like one). Past it, someone is printing
    lines on purpose: the whole answer is not believed."""
    return 2 * asked + 16


def _placeholder(value: str) -> str:
    return "" if value.strip() in _PLACEHOLDERS else value


def job_name(run_id: str) -> str:
    """The job's name: how a submission whose answer was lost is found again."""
    return f"hpchub-{run_id}"


class SlurmScheduler(Scheduler):
    name = "slurm"
    title = "Slurm"
    values_key = "slurm"
    active_states = frozenset(
        {
            "PENDING",
            "CONFIGURING",
            "RUNNING",
            "SUSPENDED",
            "REQUEUED",
            "REQUEUE_HOLD",
            "REQUEUE_FED",
            "RESIZING",
            "SIGNALING",
            "STAGE_OUT",
            "STOPPED",
            "RESV_DEL_HOLD",
            "POWER_UP_NODE",
            "UPDATE_DB",
        }
    )
    # Ending: not gone yet (stop waits for it), but the server is no longer usable.
    ending_states = frozenset({"COMPLETING"})
    ended_states = frozenset(
        {
            "COMPLETED",
            "CANCELLED",
            "FAILED",
            "TIMEOUT",
            "NODE_FAIL",
            "PREEMPTED",
            "BOOT_FAIL",
            "DEADLINE",
            "OUT_OF_MEMORY",
            "SPECIAL_EXIT",
            "REVOKED",
            "LAUNCH_FAILED",
            "GONE",
            "FOREIGN",
        }
    )
    queued_states = frozenset({"PENDING"})
    submitter = "sbatch"
    running_state = "RUNNING"
    # sbatch failures that may have submitted the job anyway (the answer was lost).
    uncertain_submit_errors = ("timed out", "Unable to contact", "Socket", "Connection", "Zero Bytes")
    job_template = "slurm.sh.j2"

    # --- the lifecycle -------------------------------------------------------------
    def directive_prefix(self) -> str:
        return "#SBATCH"

    def directives(self, options: Any, requeue: bool) -> list[str]:
        """``#SBATCH`` options (no prefix) for validated options (hpchub.options.CleanOptions).
        A requeued job comes back on another node with a new port while the hub still
        routes to the old one; sites that want it anyway allow it with slurm.requeue."""
        out = ["--requeue" if requeue else "--no-requeue"]
        if options.account:
            out.append(f"--account={options.account}")
        if options.partition:
            out.append(f"--partition={options.partition}")
        if options.qos:
            out.append(f"--qos={options.qos}")
        if options.nodes:
            out.append(f"--nodes={options.nodes}")
        if options.time:
            out.append(f"--time={options.time}")
        if options.gpus:
            # GPUs per node, as the form, the schema (maxGpus) and the levels mean it;
            # --gpus would be the job's total, spread over its nodes.
            out.append(f"--gpus-per-node={options.gpus}")
        if options.constraint:
            out.append(f"--constraint={options.constraint}")
        if options.reservation:
            out.append(f"--reservation={options.reservation}")
        if options.exclusive:
            out.append("--exclusive")
        if options.licenses:
            out.append(f"--licenses={','.join(options.licenses)}")
        if options.email_on_start:
            # No --mail-user: Slurm mails the job's owner, at the address the site set up.
            out.append("--mail-type=BEGIN")
        out.extend(options.extra_directives)
        return out

    def job_shape(self, options: Any, requeue: bool) -> JobShape:
        """What ``directives`` submit, as hpchub-extend-command compares it: no node count
        asked is Slurm's one node. Where the level's extra directives ask for GPUs or
        exclusive nodes their own way, that part is not compared (None): the level lets the
        user choose it."""
        extra = {line.split("=", 1)[0]: line for line in options.extra_directives}
        exclusive: bool | None = options.exclusive or extra.get("--exclusive") == "--exclusive"
        if extra.get("--exclusive", "--exclusive") != "--exclusive":
            exclusive = None  # --exclusive=user|mcs: OverSubscribe USER or MCS
        return JobShape(
            nodes=options.nodes or 1,
            partition=options.partition or "",
            qos=options.qos or "",
            account=options.account or "",
            gpus=None if _GPU_DIRECTIVES & extra.keys() else options.gpus or 0,
            exclusive=exclusive,
            requeue=requeue,
        )

    def save_signal(self, seconds: int) -> list[str]:
        # B: the batch shell only (it forwards USR1 to the server alone: to the kernels
        # SIGUSR1 would be fatal). Slurm may send it up to a minute early.
        return [f"--signal=B:USR1@{int(seconds)}"]

    def submit_command(self, script_eof: str) -> str:
        return f"sbatch --parsable --export=ALL <<'{script_eof}'"

    def find_script(self, run_name: str) -> str:
        return f"""squeue --me -h -t all -n {shlex.quote(run_name)} -o '%i|%T' 2>&1
echo "{MARK}RC $?"
exit 0
"""

    def cancel_script(self, run_name: str | None, job_id: str | None) -> str:
        lines = []
        if run_name:
            lines.append(f'scancel -u "$(id -un)" -n {shlex.quote(run_name)} 2>&1')
        if job_id:
            lines.append(f"scancel {shlex.quote(job_id)} 2>&1")
        lines.append(f'echo "{MARK}SCANCEL $?"')
        if run_name:
            lines.append(f"squeue --me -h -t all -n {shlex.quote(run_name)} -o '%i|%T' 2>&1")
            lines.append(f'echo "{MARK}RC $?"')
        if job_id:
            # --me: a job id the user's shell reported that is someone else's is not theirs
            # to wait for (their scancel of it was refused anyway).
            lines.append(f"squeue --me -h -t all -j {shlex.quote(job_id)} -o '%i|%T' 2>&1")
            lines.append(f'echo "{MARK}JRC $?"')
        lines.append("exit 0")
        return "\n".join(lines) + "\n"

    def cancel_by_hand(self, run_name: str, job_id: str | None, user: str) -> str:
        if job_id:
            return f"scancel {shlex.quote(job_id)}"
        # The submission's answer was lost: only the job's name (hpchub-<run id>) is known.
        return f"scancel --name={shlex.quote(run_name)} --user={shlex.quote(user)}"

    def refuses_id(self, answer: str) -> bool:
        # One id slurmctld purged: "slurm_load_jobs error: Invalid job id specified"; an id
        # squeue itself refuses (>= 2^31): "squeue: error: Invalid job id: <id>".
        return "Invalid job id" in answer

    def first_host(self, nodes: str) -> str:
        return hostlist.first(nodes)

    # --- the status board ----------------------------------------------------------
    def query_argv(self, job_ids: Sequence[str]) -> list[str]:
        return ["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", SQUEUE_FORMAT]

    def accounting_argv(self, job_ids: Sequence[str]) -> list[str]:
        return ["sacct", "-X", "-n", "-P", "-j", ",".join(job_ids), "-o", "JobID,State,Reason,User"]

    # --- how a job ended ------------------------------------------------------------
    end_causes = {
        "TIMEOUT": "time_limit",
        "DEADLINE": "time_limit",
        "OUT_OF_MEMORY": "out_of_memory",
        "NODE_FAIL": "node_failure",
        "BOOT_FAIL": "node_failure",
        "PREEMPTED": "preempted",
        "CANCELLED": "cancelled",
        "FAILED": "exited",
        "COMPLETED": "exited",
        "LAUNCH_FAILED": "start_failed",
    }

    def end_script(self, job_id: str) -> str:
        job = shlex.quote(job_id)
        return end_section("scontrol", f"scontrol show job -o {job}") + end_section(
            "sacct", f"sacct -j {job} -n -P -o {SACCT_END_FORMAT}"
        )

    def parse_end(self, job_id: str, user: str, sections: Any, output: str) -> EndDetails | None:
        """scontrol's line for the job, else sacct's rows (another user's job is not
        believed), and slurmstepd's out-of-memory line in the job's output."""
        text, rc = sections.get("scontrol", ("", 1))
        fields = scontrol_fields(text, job_id) if rc == 0 else None
        if fields is not None and fields.get("UserId", "").partition("(")[0] != user:
            return None
        text, rc = sections.get("sacct", ("", 1))
        job, batch = self._sacct_end(text, job_id) if rc == 0 else ({}, {})
        if job and job.get("user") != user:
            job, batch = {}, {}
        killed, used, _ = oom_in_output(output, job_id)
        if fields is None and not job:
            return EndDetails(out_of_memory=killed, max_rss_bytes=used, source="output") if killed else None
        fields = fields or {}
        exit_code = fields.get("ExitCode") or job.get("exit", "")
        rss = max(filter(None, (used, size(batch.get("maxrss", "")))), default=None)
        return EndDetails(
            state=claims.state(fields.get("JobState") or job.get("state", "")),
            reason=claims.text(_placeholder(fields.get("Reason", ""))),
            exit_code=exit_code if _EXIT.fullmatch(exit_code) else "",
            elapsed_seconds=duration(fields.get("RunTime") or job.get("elapsed", "")),
            limit_seconds=duration(fields.get("TimeLimit") or job.get("limit", "")),
            max_rss_bytes=rss,
            requested_memory_bytes=memory_per_node(fields) or size(job.get("reqmem", "")),
            nodes=_placeholder(fields.get("NodeList", ""))[: hostlist.MAX_TEXT].strip(),
            out_of_memory=killed,
            source="+".join(n for n, ok in (("scontrol", bool(fields)), ("sacct", bool(job))) if ok),
        )

    @staticmethod
    def _sacct_end(text: str, job_id: str) -> tuple[dict[str, str], dict[str, str]]:
        """sacct's job line and batch step line for ``job_id`` (each at most once)."""
        rows: dict[str, list[dict[str, str]]] = {"job": [], "batch": []}
        for n, m in enumerate(_SACCT_END_LINE.finditer(text)):
            if n >= candidate_cap(1):
                return {}, {}
            if m.group(1) != job_id:
                continue
            keys = ("state", "exit", "elapsed", "limit", "reqmem", "maxrss", "user")
            row = dict(zip(keys, m.groups()[2:], strict=True))
            row["user"] = claims.account(row["user"])
            rows["batch" if m.group(2) else "job"].append(row)
        job = rows["job"][0] if len(rows["job"]) == 1 else {}
        batch = rows["batch"][0] if len(rows["batch"]) == 1 and job else {}
        return job, batch

    def parse_query(self, stdout: str, asked: Iterable[str]) -> dict[str, JobStatus]:
        """Rows of ``squeue -o SQUEUE_FORMAT`` for the ids asked (see _job_rows)."""

        def row(m: re.Match[str]) -> JobStatus:
            job_id, state, reason, start, nodes, user = m.groups()
            word = claims.state(state)
            return JobStatus(
                job_id,
                word,
                claims.text(_placeholder(reason)),
                claims.timestamp(start),
                # Kept as text, at most one character past what hostlist reads (which then
                # refuses it): a node list is expanded lazily, where it is used.
                _placeholder(nodes)[: hostlist.MAX_TEXT + 1].strip(),
                user=claims.account(user),
                kind=self.kind(word),
            )

        return self._job_rows(stdout, asked, _SQUEUE_LINE, row, "squeue")

    def parse_accounting(self, stdout: str, asked: Iterable[str]) -> dict[str, JobStatus]:
        """``sacct -X -n -P -o JobID,State,Reason,User`` rows for the ids asked."""

        def row(m: re.Match[str]) -> JobStatus:
            job_id, state, reason, user = m.groups()
            word = claims.state(state)
            return JobStatus(
                job_id,
                word,
                claims.text(_placeholder(reason)),
                user=claims.account(user),
                kind=self.kind(word),
            )

        return self._job_rows(stdout, asked, _SACCT_LINE, row, "sacct")

    @staticmethod
    def _job_rows(
        stdout: str,
        asked: Iterable[str],
        line: re.Pattern[str],
        row: Any,
        what: str,
    ) -> dict[str, JobStatus]:
        """Rows of candidate ``line``s for the ids asked; everything else is ignored (a
        login banner, a shell's chatter, lines about jobs nobody asked for). An id printed
        twice is someone forging lines: its row says UNKNOWN, which nobody believes; so
        does every row of an answer with more candidate lines than an honest one."""
        wanted = set(asked)
        out: dict[str, JobStatus] = {}
        twice: set[str] = set()
        for n, m in enumerate(line.finditer(stdout)):
            if n >= candidate_cap(len(wanted)):
                return {
                    j: JobStatus(j, "UNKNOWN", f"more {what} lines than jobs asked about") for j in wanted
                }
            job_id = m.group(1)
            if job_id not in wanted:
                continue
            if job_id in out:
                twice.add(job_id)
                continue
            out[job_id] = row(m)
        for job_id in twice:
            out[job_id] = JobStatus(job_id, "UNKNOWN", f"conflicting {what} lines")
        return out
