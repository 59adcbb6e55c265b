"""Batch schedulers behind one interface (hpchub.schedulers.base.Scheduler).

The registry: a backend name in values (``systems.<s>.levels.<l>.backend``) -> its adapter.
Adding a scheduler is one adapter module, one line here and a schema block for its values
(docs/operator-guide.md, "Adding a scheduler"); the batch spawner's lifecycle, the status
board, the reaper and the console need nothing new.
"""

from __future__ import annotations

from .base import JobStatus, Scheduler, TransientSchedulerError
from .slurm import SlurmScheduler

SCHEDULERS: dict[str, Scheduler] = {s.name: s for s in (SlurmScheduler(),)}

__all__ = ["SCHEDULERS", "JobStatus", "Scheduler", "TransientSchedulerError", "scheduler"]


def scheduler(name: str) -> Scheduler:
    """The adapter of a backend name; KeyError naming the known ones."""
    try:
        return SCHEDULERS[name]
    except KeyError:
        raise KeyError(f"no scheduler {name!r} (known: {', '.join(sorted(SCHEDULERS))})") from None
