"""Busy kernels are activity: the server's last activity moves while a kernel computes.

jupyter_server counts every ``*_last_activity`` setting in its ``last_activity()``, which
jupyterhub-singleuser reports to the hub and the idle culler reads. A kernel in a long
silent computation sends no messages, so without this the culler sees an idle server.
Optionally, the server's processes above a CPU threshold and its GPUs above a utilization
threshold count too: the hub's ``culling.busyCpuPercent`` / ``busyGpuPercent`` (in the status's
``cull`` object), else the notebook environment's HPCHUB_BUSY_CPU_PERCENT / _GPU_PERCENT.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
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
    """The server's descendant processes' CPU use against a threshold (psutil, if installed)."""

    def __init__(self) -> None:
        self._procs: dict[int, Any] = {}
        try:
            import psutil
        except ImportError:
            self.psutil = None
        else:
            self.psutil = psutil

    def busy(self, percent: float) -> bool:
        """Whether the server's processes used at least ``percent`` of one core in total since
        the last call (0: off). Sampled at every call, so the next one compares with now."""
        if self.psutil is None:
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
        return percent > 0 and total >= percent


GPU_QUERY = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
GPU_TIMEOUT = 10.0
MAX_GPUS = 64  # lines read of nvidia-smi's answer
MAX_GPU_OUTPUT = 64 * 1024
_GPU_ID = re.compile(r"[0-9]{1,3}|(?:GPU|MIG)-[0-9A-Za-z-]{1,96}")


def gpu_ids(env: Mapping[str, str]) -> list[str] | None:
    """The GPUs this server may use, for ``nvidia-smi -i``: CUDA_VISIBLE_DEVICES as Slurm or
    the device plugin set it (indices or UUIDs); None when unset (every GPU listed); [] when
    it names none or something else (no GPU is this server's)."""
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    ids = [x.strip() for x in value.split(",")[: MAX_GPUS + 1]]
    if not ids or len(ids) > MAX_GPUS or not all(_GPU_ID.fullmatch(x) for x in ids):
        return []
    return ids


def gpu_utilization(text: str) -> list[int]:
    """Percent per GPU from nvidia-smi's ``utilization.gpu`` CSV; a GPU that reports none
    ("[N/A]", "[Not Supported]") or a line that is no percentage is left out."""
    out = []
    for line in text[:MAX_GPU_OUTPUT].splitlines()[:MAX_GPUS]:
        t = line.strip()
        if t.isascii() and t.isdigit() and len(t) <= 3 and int(t) <= 100:
            out.append(int(t))
    return out


class GpuBusy:
    """The server's GPUs' average utilization against a threshold (nvidia-smi, if present)."""

    def __init__(self, env: Mapping[str, str], argv: list[str] | None = None) -> None:
        self.env = env
        self.argv = argv or GPU_QUERY
        self.error = ""  # the last reason nothing could be read (for the log, once)

    def busy(self, percent: float) -> bool:
        """Blocking (nvidia-smi takes up to a second): run it in a thread."""
        if percent <= 0:
            return False
        ids = gpu_ids(self.env)
        if ids == []:
            return False
        argv = [*self.argv, *(["-i", ",".join(ids)] if ids else [])]
        try:
            done = subprocess.run(argv, capture_output=True, timeout=GPU_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            self.error = f"{argv[0]}: {type(e).__name__}"
            return False
        if done.returncode != 0:
            self.error = f"{argv[0]} exited {done.returncode}"
            return False
        used = gpu_utilization(done.stdout[:MAX_GPU_OUTPUT].decode("utf-8", "replace"))
        self.error = "" if used else f"{argv[0]} reported no utilization"
        return bool(used) and sum(used) / len(used) >= percent


def threshold(hub: float | None, local: float) -> float:
    """The hub's threshold where it sets one, else the notebook environment's (0: off)."""
    return local if hub is None else hub


def mark_active(settings: dict[str, Any]) -> None:
    settings[SETTING] = datetime.now(timezone.utc)
