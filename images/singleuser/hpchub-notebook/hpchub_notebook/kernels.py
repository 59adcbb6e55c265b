"""Why a kernel died: named "out of memory" when the OOM killer did it.

Each kernel is watched from the server side (no browser needed): its PID and memory cgroup
are recorded while it runs, with the cgroup's OOM-kill counter. When jupyter_client's
restarter finds the kernel dead, a restart callback reads the exit status (SIGKILL shows as
-9) and the counter again: killed by SIGKILL and the counter went up means the OOM killer.
"""

from __future__ import annotations

import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .cgroup import MemoryCgroup, format_bytes, memory_cgroup

MAX_DEATHS = 100  # the last deaths kept (kernels restart; the record is for the browser)


@dataclass
class Death:
    kernel_id: str
    at: float
    reason: str  # "oom", "killed" (a signal), "exited"
    exit_code: int | None
    limit_bytes: int | None
    message: str


@dataclass
class Watched:
    pid: int | None = None
    cgroup: MemoryCgroup | None = None
    oom_kills: int | None = None  # the baseline a death is compared with
    seen: int | None = None  # the last count read while healthy, not yet the baseline
    hooked: bool = False

    def looked(self, count: int | None, healthy: bool) -> None:
        """One look at the cgroup's OOM counter. The kernel cgroup's counter goes up just
        before the OOM killer sends its SIGKILL, and the victim takes a while to free its
        memory and die (the restarter looks every 3 s): a count becomes the baseline only
        once a later look still finds the kernel alive and not being killed."""
        if not healthy:
            return
        if self.oom_kills is None:
            self.oom_kills = count  # the first look: nothing earlier to go by
        elif self.seen is not None:
            self.oom_kills = self.seen
        self.seen = count


def death_of(
    kernel_id: str,
    exit_code: int | None,
    oom_before: int | None,
    oom_after: int | None,
    limit_bytes: int | None,
    now: float,
) -> Death:
    """The cause of a kernel's death in words (pure)."""
    killed = exit_code is not None and exit_code < 0
    if (
        exit_code == -signal.SIGKILL
        and oom_before is not None
        and oom_after is not None
        and oom_after > oom_before
    ):
        limit = f" (limit {format_bytes(limit_bytes)})" if limit_bytes else ""
        return Death(
            kernel_id,
            now,
            "oom",
            exit_code,
            limit_bytes,
            f"The kernel was killed because it ran out of memory{limit}. "
            "Its variables are gone; use less memory or ask for more when you start the server.",
        )
    if killed:
        try:
            name = signal.Signals(-exit_code).name  # type: ignore[operator]
        except ValueError:
            name = f"signal {-exit_code}"  # type: ignore[operator]
        return Death(kernel_id, now, "killed", exit_code, limit_bytes, f"The kernel was killed by {name}.")
    what = "unknown status" if exit_code is None else f"code {exit_code}"
    return Death(kernel_id, now, "exited", exit_code, limit_bytes, f"The kernel exited with {what}.")


class KernelDeathWatch:
    """Watches the server's kernels; ``reason(kernel_id)`` tells why one last died."""

    def __init__(self, kernel_manager: Any, log: Any) -> None:
        self.kernel_manager = kernel_manager
        self.log = log
        self._watched: dict[str, Watched] = {}
        self.deaths: dict[str, Death] = {}

    def tick(self) -> None:
        """Record each running kernel's PID, cgroup and OOM counter; hook new kernels."""
        ids = set(self.kernel_manager.list_kernel_ids())
        for gone in set(self._watched) - ids:
            del self._watched[gone]
        for kid in ids:
            try:
                km = self.kernel_manager.get_kernel(kid)
            except KeyError:
                continue
            w = self._watched.setdefault(kid, Watched())
            if not w.hooked:
                km.add_restart_callback(lambda kid=kid: self._died(kid), "restart")
                km.add_restart_callback(lambda kid=kid: self._died(kid), "dead")
                w.hooked = True
            pid = _kernel_pid(km)
            if pid is not None and pid != w.pid:
                w.pid, w.cgroup, w.seen = pid, memory_cgroup(pid), None
            if w.cgroup is not None:
                # The counter first, then "alive and not being killed?" (see looked()).
                count = w.cgroup.oom_kills()
                w.looked(count, _alive(km) and not being_killed(w.pid))

    def _died(self, kernel_id: str) -> None:
        # Called by jupyter_client's restarter once it found the process dead, before the
        # restart: the exit status is still on the Popen object.
        try:
            w = self._watched.get(kernel_id) or Watched()
            km = self.kernel_manager.get_kernel(kernel_id)
            process = getattr(getattr(km, "provisioner", None), "process", None)
            exit_code = process.poll() if process is not None else None
            if w.cgroup is None and w.pid is not None:
                w.cgroup = memory_cgroup(w.pid)
            after = w.cgroup.oom_kills() if w.cgroup else None
            limit = w.cgroup.limit_bytes() if w.cgroup else None
            death = death_of(kernel_id, exit_code, w.oom_kills, after, limit, time.time())
            w.oom_kills, w.pid, w.seen = after, None, None
            self.deaths[kernel_id] = death
            while len(self.deaths) > MAX_DEATHS:
                del self.deaths[next(iter(self.deaths))]
            self.log.warning("hpchub: kernel %s died: %s", kernel_id, death.message)
        except Exception:  # a restart callback must never stop the restart
            self.log.exception("hpchub: could not tell why kernel %s died", kernel_id)

    def reason(self, kernel_id: str) -> dict[str, Any] | None:
        d = self.deaths.get(kernel_id)
        return asdict(d) if d else None


def _alive(km: Any) -> bool:
    process = getattr(getattr(km, "provisioner", None), "process", None)
    try:
        return process is not None and process.poll() is None
    except OSError:
        return False


PF_EXITING = 0x4  # include/linux/sched.h: the task is in do_exit
SIGKILL_BIT = 1 << (signal.SIGKILL - 1)


def being_killed(pid: int | None, proc: Path = Path("/proc")) -> bool:
    """True from the moment a SIGKILL is pending for the process until it is reaped: the
    signal still queued (SigPnd/ShdPnd), the task exiting (PF_EXITING) or a zombie. A
    process that cannot be read is treated as dying: a baseline is better late than wrong."""
    if pid is None:
        return True
    try:
        status = (proc / str(pid) / "status").read_text()
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return True
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("SigPnd", "ShdPnd"):
            try:
                if int(value.strip(), 16) & SIGKILL_BIT:
                    return True
            except ValueError:
                return True
    # /proc/<pid>/stat: "pid (comm) state ppid pgrp session tty tpgid flags ..."; comm may
    # hold spaces and parentheses, so the fields are read after its last ")".
    fields = stat.rpartition(")")[2].split()
    try:
        state, flags = fields[0], int(fields[6])
    except (IndexError, ValueError):
        return True
    return state in ("Z", "X", "x") or bool(flags & PF_EXITING)


def _kernel_pid(km: Any) -> int | None:
    provisioner = getattr(km, "provisioner", None)
    process = getattr(provisioner, "process", None)
    pid = getattr(process, "pid", None) or getattr(provisioner, "pid", None)
    return pid if isinstance(pid, int) and pid > 0 else None
