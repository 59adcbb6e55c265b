"""What a user's shell or job says, parsed once, at the boundary, into bounded values.

A job id that ``sbatch`` printed, a PID or port a launcher printed, the node list, state and
reason a per-user ``squeue`` printed, the contents of an address file: all of it comes
through places the user controls (their shell start-up files, their ``PATH``, their job).
Each is a *claim*. The functions here turn such text into a validated value (ASCII
decimal, bounded length and range) or raise :class:`ClaimRefused`, which names the system
and the value and fails only the operation of the user whose shell said it. Nothing here
ever raises anything else, whatever the input (tests/unit/test_claims_property.py), and
every parser is linear in its input, which the SSH layer already caps
(``ssh.maxOutputBytes``).

Where a claim is believed is the status board's business (hpchub/status.py): a value that
parsed is still only ever about the user whose shell said it.
"""

from __future__ import annotations

import re

# The largest job id Slurm's own clients accept (squeue refuses 2^31 and above with
# "Invalid job id", failing the whole list it was in); 0 is never a job.
MAX_JOB_ID = 0x7FFF_FFFF
# Linux PID_MAX_LIMIT on 64-bit systems (/proc/sys/kernel/pid_max can be at most this).
MAX_PID = 1 << 22
MAX_PORT = 65_535
# Free text shown to users (a pending reason, a state's detail): printable, this long at most.
MAX_TEXT = 200
# A message that may quote what a user's shell or job printed (a failed start quotes up to
# 2000 characters of output), in a log line: shown(message, MAX_LOGGED).
MAX_LOGGED = 4096

_DIGITS = re.compile(r"[1-9][0-9]{0,9}")  # ASCII only, no leading zero: Slurm's own spelling
_SMALL = re.compile(r"[0-9]{1,10}")
# `ps -o lstart=` in the C locale: "Tue Nov 24 10:00:00 2026".
_LSTART = re.compile(r"[A-Z][a-z]{2} [A-Z][a-z]{2} [0-9]{1,2} [0-9]{2}:[0-9]{2}:[0-9]{2} [0-9]{4}")
# Slurm's time stamps (%S, sacct Start/End): 2026-11-24T10:00:00.
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")
_STATE = re.compile(r"[A-Z][A-Z_]{1,30}")
_ACCOUNT = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]{0,63}")


class ClaimRefused(ValueError):
    """A value a user's shell or job reported is not one hpchub can believe or use."""

    def __init__(self, system: str, what: str, value: object, reason: str = "") -> None:
        self.system = system
        self.what = what
        self.value = shown(value)
        super().__init__(f"{system}: {reason}" if reason else f"{system}: {what} {self.value} is not valid")


def shown(value: object, limit: int = 40) -> str:
    """A value as it may appear in a message or a log line: repr (one line, control
    characters escaped: what a user printed cannot forge a line or a terminal escape),
    cut short."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return repr(text)


def job_id(system: str, text: object) -> str:
    """A Slurm job id as the scheduler spells it (``123``); ``123;cluster`` from ``sbatch
    --parsable`` is accepted, the cluster part dropped."""
    if not isinstance(text, str):
        raise ClaimRefused(system, "job id", text)
    value = text.strip().partition(";")[0]
    if not _DIGITS.fullmatch(value) or int(value) > MAX_JOB_ID:
        raise ClaimRefused(system, "job id", text)
    return value


def pid(system: str, text: object) -> int:
    """A process id on a login node (1 .. 2^22)."""
    value = str(text).strip() if isinstance(text, str | int) and not isinstance(text, bool) else ""
    if not _SMALL.fullmatch(value) or not 1 <= int(value) <= MAX_PID:
        raise ClaimRefused(system, "process id", text)
    return int(value)


def port(system: str, text: object) -> int:
    """A TCP port (1 .. 65535); where it may point is routing's check (portRange)."""
    value = str(text).strip() if isinstance(text, str | int) and not isinstance(text, bool) else ""
    if not _SMALL.fullmatch(value) or not 1 <= int(value) <= MAX_PORT:
        raise ClaimRefused(system, "port", text)
    return int(value)


def exit_code(system: str, text: object) -> int:
    """A shell exit status (0 .. 255)."""
    value = str(text).strip() if isinstance(text, str | int) and not isinstance(text, bool) else ""
    if not _SMALL.fullmatch(value) or int(value) > 255:
        raise ClaimRefused(system, "exit status", text)
    return int(value)


def pid_start(system: str, text: object) -> str:
    """A process start time as ``ps -o lstart=`` prints it in the C locale, normalised."""
    # Normalised to one space between fields ("Nov 4", not ps's "Nov  4").
    value = " ".join(text.split()) if isinstance(text, str) and len(text) <= 64 else ""
    if not _LSTART.fullmatch(value):
        raise ClaimRefused(system, "process start time", text)
    return value


def state(text: str) -> str:
    """A scheduler state word (``RUNNING``, ``CANCELLED by 1234`` -> ``CANCELLED``); anything
    else is ``UNKNOWN``. Which states exist is the scheduler adapter's knowledge."""
    word = text.split(maxsplit=1)[0] if text.strip() else ""
    word = word.rstrip("+")  # sacct marks truncated states with '+'
    return word if _STATE.fullmatch(word) else "UNKNOWN"


def text(value: str, limit: int = MAX_TEXT) -> str:
    """Free text for display (a pending reason): printable ASCII, at most ``limit``."""
    out = "".join(ch for ch in value[: limit * 4] if " " <= ch <= "~")
    return out[:limit].strip()


def timestamp(value: str) -> str:
    """A Slurm time stamp (``2026-11-24T10:00:00``), or "" for anything else (``N/A``,
    ``Unknown``)."""
    value = value.strip()
    return value if _TIMESTAMP.fullmatch(value) else ""


def account(value: str) -> str:
    """A user or account name as Slurm and ``ps`` print it; "" when it is not one."""
    value = value.strip()
    return value if _ACCOUNT.fullmatch(value) else ""
