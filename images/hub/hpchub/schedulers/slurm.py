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
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from typing import Any

from .. import claims, hostlist
from .base import MARK, JobStatus, Scheduler

# %u before nothing user-controlled (see the module docstring).
SQUEUE_FORMAT = "%i|%T|%r|%S|%N|%u"
# Placeholders Slurm prints for "nothing" in a field.
_PLACEHOLDERS = frozenset({"", "None", "(null)", "N/A", "Unknown", "n/a"})
# Candidate lines, found at C speed (re.M): chatter that is not one never costs a Python
# step, whatever its size. Only what a candidate line says is then read, in Python.
_SQUEUE_LINE = re.compile(
    r"^[ \t]*([0-9]{1,10})\|([^|\n]*)\|([^|\n]*)\|([^|\n]*)\|([^|\n]*)\|([^|\n]*?)[ \t\r]*$", re.M
)
_SACCT_LINE = re.compile(r"^[ \t]*([0-9]{1,10})\|([^|\n]*)\|([^|\n]*)\|([^|\n]*?)[ \t\r]*$", re.M)


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
