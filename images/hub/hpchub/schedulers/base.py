"""The seam between hpchub and a batch scheduler: what the batch spawner's lifecycle
(hpchub/spawners/batch.py: submit -> wait -> route -> poll -> stop -> reaper) and the status
board (hpchub/status.py) ask of one, and nothing else.

A scheduler adapter turns those questions into commands for a login node and reads their
answers. Everything it reads comes through the user's shell (or the status account's), so
its parsers are boundary parsers: bounded, linear, and refusing with
``TransientSchedulerError`` (never reading an unclear answer as "gone"). The contract every
adapter must pass is tests/integration/test_scheduler_contract.py, run against the real
scheduler; the operator guide's "Adding a scheduler" says what else is needed.

Why an interface and not a copy of the Slurm spawner per scheduler: batchspawner makes a
scheduler *data* on one lifecycle class (its PBSSpawner is 25 lines). hpchub keeps what
batchspawner lacks — the run id saved before submit, lost submissions found by name, stops
that cannot be confirmed handed to the reaper, transient errors never "gone", one query for
all jobs — in the lifecycle, written once.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..claims import ClaimRefused, job_id, state, text
from ..serverstate import JobShape, Phase

MARK = "HPCHUB-"


class TransientSchedulerError(RuntimeError):
    """The scheduler (or the login node) did not answer, or its answer could not be
    believed; the job's fate is unknown."""


# What a state means to the lifecycle, whatever the scheduler calls it.
ACTIVE, ENDING, ENDED, UNKNOWN = "active", "ending", "ended", "unknown"


@dataclass(frozen=True)
class JobStatus:
    """One job as the scheduler answered for it: its own state word, and what that means
    (``kind``, set by the adapter that read it)."""

    job_id: str
    state: str  # the scheduler's base state word; "GONE"/"FOREIGN" are the board's own
    reason: str = ""
    expected_start: str = ""
    nodes: str = ""
    user: str = ""
    kind: str = UNKNOWN  # ACTIVE, ENDING, ENDED or UNKNOWN (not believed)

    @property
    def active(self) -> bool:
        return self.kind == ACTIVE

    @property
    def gone(self) -> bool:
        return self.kind == ENDED


@dataclass(frozen=True)
class EndDetails:
    """How a job ended, as the scheduler answered (every field a claim: it came through
    the user's shell; each is bounded by the adapter that read it). None / "": not said."""

    state: str = ""  # the scheduler's state word (TIMEOUT, OUT_OF_MEMORY, ...)
    reason: str = ""  # the scheduler's reason (TimeLimit, NodeDown, ...)
    exit_code: str = ""  # as the scheduler writes it (Slurm: "<status>:<signal>")
    elapsed_seconds: int | None = None
    limit_seconds: int | None = None
    max_rss_bytes: int | None = None  # the largest memory use it knows of
    requested_memory_bytes: int | None = None  # the job's memory limit (per node)
    nodes: str = ""
    out_of_memory: bool = False  # the job's own output says it was killed for its memory
    source: str = ""  # which answers it came from ("scontrol", "scontrol+sacct", ...)

    def details(self) -> dict[str, Any]:
        """The figures an hpchub.endings.Ending keeps."""
        out = asdict(self)
        for key in ("out_of_memory", "source"):
            out.pop(key)
        return out


# What a script asking how a job ended prints after each of its sections (``<name>``: what
# was asked, ``<rc>``: the exit status of the command that answered).
END_MARK = f"{MARK}END"
_END_LINE = re.compile(rf"^{END_MARK} ([a-z]{{1,16}}) (-?[0-9]{{1,5}})[ \t\r]*$", re.M)
MAX_END_SECTIONS = 8
# Characters of a section that are read: an honest one is a line or a few (a job's output
# section is its last lines).
MAX_SECTION = 64 * 1024


def end_section(name: str, command: str) -> str:
    """Script lines running ``command`` and marking its answer as section ``name`` (on a
    line of its own, whether or not the answer ended with a newline)."""
    return f'{{ {command}\n}} 2>&1\nr=$?\necho\necho "{END_MARK} {name} $r"\n'


def end_sections(stdout: str) -> dict[str, tuple[str, int]]:
    """Section name -> (its text, the exit status) of an end script's answer. A name
    printed twice, or more marks than a script prints, is someone printing marks on
    purpose: those sections (or the whole answer) are not believed."""
    out: dict[str, tuple[str, int]] = {}
    twice: set[str] = set()
    since = 0
    for n, m in enumerate(_END_LINE.finditer(stdout)):
        if n >= MAX_END_SECTIONS:
            return {}
        name, rc = m.group(1), int(m.group(2))
        section = stdout[since : m.start()][-MAX_SECTION:]
        since = m.end()
        if name in out:
            twice.add(name)
        out[name] = (section, rc)
    for name in twice:
        out.pop(name, None)
    return out


def gone(job: str, why: str = "GONE", reason: str = "") -> JobStatus:
    """A job no one knows any more (GONE), or that is another user's (FOREIGN)."""
    return JobStatus(job, why, reason, kind=ENDED)


class Scheduler(ABC):
    """One batch scheduler, as hpchub uses it. Adapters are stateless: one instance serves
    every system that uses the scheduler."""

    #: The backend name in values (``systems.<s>.levels.<l>.backend``) and in metrics.
    name: str
    #: How users and operators call it ("Slurm").
    title: str
    #: The values key of its per-system and per-level settings (``systems.<s>.<key>``).
    values_key: str
    #: State words: the job runs or will run; it is ending (a stop waits for it); it ended.
    active_states: frozenset[str]
    ending_states: frozenset[str]
    ended_states: frozenset[str]
    #: The command users know the submission by ("sbatch"), for messages.
    submitter: str
    #: Submission errors after which the job may have been created anyway (answer lost).
    uncertain_submit_errors: tuple[str, ...] = ()
    #: The default job template, a file in hpchub/spawners/templates.
    job_template: str

    # --- the lifecycle -------------------------------------------------------------
    @abstractmethod
    def directives(self, options: Any, requeue: bool) -> list[str]:
        """The job's directive lines (no prefix) for validated options (CleanOptions)."""

    def job_shape(self, options: Any, requeue: bool) -> JobShape | None:
        """The job ``directives`` submit, as the site's extend command finds it again before
        it raises the job's limit (slurm.extend); None where the scheduler has no such
        command (Extend is then not offered)."""
        return None

    def save_signal(self, seconds: int) -> list[str]:
        """Directives asking the scheduler to send SIGUSR1 to the batch script ``seconds``
        before the time limit (the job script passes it on: the notebook saves); [] where
        the scheduler cannot."""
        return []

    @abstractmethod
    def directive_prefix(self) -> str:
        """What starts a directive line in a job script ("#SBATCH")."""

    @abstractmethod
    def submit_command(self, script_eof: str) -> str:
        """A shell command that submits the job script following it on stdin (a here-doc
        ended by ``script_eof``) and prints the new job's id."""

    def parse_submitted(self, system: str, stdout: str) -> str:
        """The job id the submission printed (a claim); ClaimRefused when it is none."""
        lines = stdout.strip().splitlines()
        return job_id(system, lines[-1] if lines else "")

    @abstractmethod
    def find_script(self, run_name: str) -> str:
        """A script printing ``<id>|<state>`` for the user's jobs named ``run_name``, then
        ``HPCHUB-RC <exit status of the query>``."""

    @abstractmethod
    def cancel_script(self, run_name: str | None, job_id: str | None) -> str:
        """Cancel the run's jobs (by name; by id when known), then list what is left:
        ``HPCHUB-SCANCEL``, then ``<id>|<state>`` lines each followed by ``HPCHUB-RC`` (the
        by-name query) or ``HPCHUB-JRC`` (the by-id query)."""

    @abstractmethod
    def cancel_by_hand(self, run_name: str, job_id: str | None, user: str) -> str:
        """The command an operator runs on a login node to cancel the run without the hub
        (the uninstall hook prints it when a stop could not be confirmed)."""

    @abstractmethod
    def refuses_id(self, answer: str) -> bool:
        """Whether a failed query's answer says a job id is unknown to the scheduler (it
        was purged, or never existed), rather than that the scheduler did not answer."""

    def kind(self, state: str) -> str:
        """What a state word means to the lifecycle (ACTIVE, ENDING, ENDED, UNKNOWN)."""
        if state in self.active_states:
            return ACTIVE
        if state in self.ending_states:
            return ENDING
        if state in self.ended_states:
            return ENDED
        return UNKNOWN

    def phase(self, state: str) -> Phase | None:
        """Where a run whose job is in ``state`` is (None: the job ended)."""
        if state in self.active_states:
            return Phase.QUEUED if state in self.queued_states else Phase.STARTING
        if state in self.ending_states:
            return Phase.STOPPING
        return None

    #: Active states in which the job waits for resources (the console says "Queued").
    queued_states: frozenset[str] = frozenset()
    #: The active state in which the job's batch script (and so the notebook) runs.
    running_state: str = "RUNNING"

    @abstractmethod
    def first_host(self, nodes: str) -> str:
        """The node the job's batch script runs on, from the node list the scheduler
        reported (bounded; never builds the whole list)."""

    def describe(self, system: str, st: JobStatus) -> str:
        """A progress line for a job."""
        line = f"{self.title} job {st.job_id} on {system} is {st.state}"
        if st.reason:
            line += f" ({st.reason})"
        if st.state in self.queued_states and st.expected_start:
            line += f", expected start {st.expected_start}"
        if st.nodes and st.state == self.running_state:
            line += f" on {st.nodes}"
        return line

    # --- the status board ----------------------------------------------------------
    @abstractmethod
    def query_argv(self, job_ids: Sequence[str]) -> list[str]:
        """One command asking the state of many jobs (run as the status account or the user)."""

    @abstractmethod
    def parse_query(self, stdout: str, asked: Iterable[str]) -> dict[str, JobStatus]:
        """The query's rows for the ids asked (UNKNOWN for rows that cannot be believed)."""

    @abstractmethod
    def accounting_argv(self, job_ids: Sequence[str]) -> list[str]:
        """One command asking how jobs the scheduler no longer holds have ended."""

    @abstractmethod
    def parse_accounting(self, stdout: str, asked: Iterable[str]) -> dict[str, JobStatus]:
        """Accounting's rows for the ids asked."""

    # --- how a job ended (the ended cell) -------------------------------------------
    #: The end script's sections that say nothing about the job's output (the lifecycle
    #: adds its own section, "output", with the last lines the job wrote).
    def end_script(self, job_id: str) -> str:
        """A script asking the scheduler how a job ended (end_section lines). An adapter
        that cannot tell answers "" (the ending then says what the board saw)."""
        return ""

    def parse_end(
        self, job_id: str, user: str, sections: Mapping[str, tuple[str, int]], output: str
    ) -> EndDetails | None:
        """What the end script's sections say of ``job_id`` of ``user`` (``output``: the
        last lines the job wrote); None when nothing in them can be believed."""
        return None

    #: State word -> hpchub.endings cause (anything else: "unknown").
    end_causes: Mapping[str, str] = {}

    def end_cause(self, details: EndDetails) -> str:
        """The cause of an ending nobody in hpchub asked for (hpchub.endings.CAUSES). A
        job whose output says it was killed for its memory ran out of memory, whatever
        state that left it in (Slurm without cgroups: FAILED, signal 9)."""
        cause = self.end_causes.get(details.state, "unknown")
        if details.out_of_memory and cause in ("exited", "cancelled", "start_failed", "unknown"):
            return "out_of_memory"
        return cause


# --- parsing the scripts' answers (any adapter's find and cancel scripts) ---------------

# Found at C speed (re.M) whatever else the user's shell printed. The last field runs to
# the end of its line, trailing blanks included (what reads it strips them): a lazy field
# before an optional blank tail would rescan a run of blanks at each step, quadratic time
# (`1|`, 1 MiB of blanks, `x`: 40 minutes of the hub's event loop).
_MARK_LINE = re.compile(rf"^{MARK}(SCANCEL|RC|JRC) (-?[0-9]{{1,5}})[ \t\r]*$", re.M)
_ID_STATE_LINE = re.compile(r"^[ \t]*([0-9]{1,10})\|([^|\n]*)$", re.M)
# More marks or job lines than the scripts print: someone prints them on purpose.
MAX_MARKS = 8
MAX_JOB_LINES = 64


def _marks(stdout: str) -> list[re.Match[str]]:
    found = []
    for m in _MARK_LINE.finditer(stdout):
        found.append(m)
        if len(found) > MAX_MARKS:
            raise TransientSchedulerError("the answer has more marks than the script prints")
    return found


def is_job_id(value: str) -> bool:
    try:
        return job_id("", value) == value
    except ClaimRefused:
        return False


def job_lines(section: str) -> dict[str, str]:
    """Job id -> state of ``<id>|<state>`` lines (ids as the scheduler spells them)."""
    jobs: dict[str, str] = {}
    for n, m in enumerate(_ID_STATE_LINE.finditer(section)):
        if n >= MAX_JOB_LINES:
            raise TransientSchedulerError("more job lines than a run has jobs")
        if is_job_id(m.group(1)):
            jobs[m.group(1)] = state(m.group(2))
    return jobs


def detail(section: str) -> str:
    return text(" ".join(section[-600:].split()), 300)


def parse_found(stdout: str) -> dict[str, str]:
    """Job id -> state from a find script; TransientSchedulerError when the query failed
    (or its answer cannot be believed)."""
    rcs = [m for m in _marks(stdout) if m.group(1) == "RC"]
    if not rcs:
        raise TransientSchedulerError("the job query gave no answer")
    mark = rcs[-1]
    section = stdout[: mark.start()]
    rc = int(mark.group(2))
    if rc != 0:
        raise TransientSchedulerError(detail(section) or f"the job query exited with status {rc}")
    return job_lines(section)


def parse_cancel(scheduler: Scheduler, stdout: str, job_id: str | None) -> set[str]:
    """Ids of the run's jobs still active (or ending) after a cancel script. A job the
    scheduler no longer knows (``refuses_id``) is gone; any other failure is transient."""
    left: set[str] = set()
    since = 0
    answered = False
    alive = scheduler.active_states | scheduler.ending_states
    for mark in _marks(stdout):
        section, since = stdout[since : mark.start()], mark.end()
        kind, rc = mark.group(1), int(mark.group(2))
        if kind == "SCANCEL":
            continue
        answered = answered or kind == "JRC"
        if rc != 0 and not (kind == "JRC" and scheduler.refuses_id(section)):
            raise TransientSchedulerError(detail(section) or f"the job query exited with status {rc}")
        left |= {jid for jid, st in job_lines(section).items() if st in alive}
    if job_id and not answered:
        raise TransientSchedulerError("the job query gave no answer")
    return left
