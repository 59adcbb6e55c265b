"""Busy kernels are activity: the server's last activity moves while a kernel computes.

jupyter_server counts every ``*_last_activity`` setting in its ``last_activity()``, which
jupyterhub-singleuser reports to the hub and the idle culler reads. A kernel in a long
silent computation sends no messages, so without this the culler sees an idle server.
Optionally (HPCHUB_BUSY_CPU_PERCENT), the server's processes above a CPU threshold count too.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

SETTING = "hpchub_busy_last_activity"


def busy_kernels(kernel_manager: Any) -> list[str]:
    """IDs of the kernels whose execution_state is busy (tracked by MappingKernelManager)."""
    busy = []
    for kid in kernel_manager.list_kernel_ids():
        try:
            km = kernel_manager.get_kernel(kid)
        except KeyError:
            continue
        if getattr(km, "execution_state", None) == "busy":
            busy.append(kid)
    return busy


class CpuBusy:
    """The server's descendant processes' CPU use above a threshold (psutil, if installed)."""

    def __init__(self, percent: float) -> None:
        self.percent = percent
        self._procs: dict[int, Any] = {}
        try:
            import psutil
        except ImportError:
            self.psutil = None
        else:
            self.psutil = psutil

    @property
    def enabled(self) -> bool:
        return self.percent > 0 and self.psutil is not None

    def busy(self) -> bool:
        if not self.enabled:
            return False
        ps = self.psutil
        total = 0.0
        seen = {}
        for p in ps.Process().children(recursive=True):
            # cpu_percent() compares with the previous call on the same object: keep them.
            p = self._procs.get(p.pid, p)
            try:
                total += p.cpu_percent(None)
            except (ps.NoSuchProcess, ps.AccessDenied):
                continue
            seen[p.pid] = p
        self._procs = seen
        return total >= self.percent


def mark_active(settings: dict[str, Any]) -> None:
    settings[SETTING] = datetime.now(timezone.utc)
