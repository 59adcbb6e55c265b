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
import threading
import time
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


def cpu_used(before: Mapping[Any, float], now: Mapping[Any, float], new: set[Any]) -> float:
    """CPU seconds used between two samples of {process key: CPU seconds so far} (pure).
    A process in both counts what it added; one started since the first sample counts all
    of its time; one that ended is in its parent's reaped-children time, if the parent is
    the server or one of its processes (all of its time at once: a process that ends is
    busy in the interval it ends)."""
    used = 0.0
    for key, seconds in now.items():
        if key in before:
            used += max(0.0, seconds - before[key])
        elif key in new:
            used += seconds
    return used


class CpuBusy:
    """The server's processes' CPU use against a threshold (psutil, which ipykernel brings).

    Counted as CPU time, not as each process's instant rate: a build of many short-lived
    compilers is as busy as one long process. The server's own time (serving Lab) is not
    counted; its reaped children's time (a finished terminal, a kernel that exited) is."""

    def __init__(self) -> None:
        self._before: dict[Any, float] | None = None
        self._at = 0.0  # monotonic time of the last sample
        self._wall = 0.0  # the same, as epoch seconds (what create_time() is)
        try:
            import psutil
        except ImportError:
            self.psutil = None
        else:
            self.psutil = psutil

    def _sample(self, since: float) -> tuple[dict[Any, float], set[Any]]:
        """{(pid, start time): CPU seconds so far} and the keys of processes started after
        ``since`` (epoch seconds)."""
        ps = self.psutil
        me = ps.Process()
        t = me.cpu_times()
        sample: dict[Any, float] = {("server", me.pid): t.children_user + t.children_system}
        new: set[Any] = set()
        for p in me.children(recursive=True):
            try:
                with p.oneshot():
                    t, started = p.cpu_times(), p.create_time()
            except (ps.NoSuchProcess, ps.AccessDenied, ps.ZombieProcess):
                continue
            key = (p.pid, started)  # a reused PID is another process
            sample[key] = t.user + t.system + t.children_user + t.children_system
            if started >= since:
                new.add(key)
        return sample, new

    def busy(self, percent: float) -> bool:
        """Whether the server's processes used at least ``percent`` of one core since the
        last call (0: off). Sampled at every call, so the next one compares with now."""
        if self.psutil is None:
            return False
        now, wall = time.monotonic(), time.time()
        try:
            sample, new = self._sample(self._wall)
        except Exception:  # noqa: BLE001 - /proc read failed: no verdict this time
            return False
        before, at = self._before, self._at
        self._before, self._at, self._wall = sample, now, wall
        if before is None or now <= at or percent <= 0:
            return False
        return cpu_used(before, sample, new) / (now - at) * 100 >= percent


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
    """The server's GPUs' average utilization against a threshold (nvidia-smi, if present):
    one sample per check."""

    def __init__(self, env: Mapping[str, str], argv: list[str] | None = None) -> None:
        self.env = env
        self.argv = argv or GPU_QUERY
        self.error = ""  # the last reason nothing could be read (for the log, once)

    def busy(self, percent: float) -> bool:
        """Blocking (nvidia-smi takes up to a second, longer on a sick GPU): run it in a
        thread of its own, so that nothing else waits for it."""
        if percent <= 0:
            return False
        ids = gpu_ids(self.env)
        if ids == []:
            return False
        argv = [*self.argv, *(["-i", ",".join(ids)] if ids else [])]
        text, self.error = _bounded_output(argv, GPU_TIMEOUT, MAX_GPU_OUTPUT)
        if self.error:
            return False
        used = gpu_utilization(text)
        self.error = "" if used else f"{argv[0]} reported no utilization"
        return bool(used) and sum(used) / len(used) >= percent


def _bounded_output(argv: list[str], timeout: float, limit: int) -> tuple[str, str]:
    """(stdout, "") of a command, at most ``limit`` bytes read, killed after ``timeout``;
    ("", why) when it could not run, failed or did not finish."""
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
    except OSError as e:
        return "", f"{argv[0]}: {type(e).__name__}"
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        proc.kill()

    timer = threading.Timer(timeout, expire)
    timer.start()
    try:
        assert proc.stdout is not None
        data = proc.stdout.read(limit)
        if len(data) >= limit:
            proc.kill()
            proc.wait(1)
            return "", f"{argv[0]} wrote more than {limit} bytes"
        code = proc.wait(timeout + 1)  # the timer kills it at the deadline
    except subprocess.TimeoutExpired:  # unkillable (a GPU driver's D state): left behind
        return "", f"{argv[0]} did not exit"
    finally:
        timer.cancel()
        proc.stdout.close()  # type: ignore[union-attr]
    if expired.is_set():
        return "", f"{argv[0]} did not answer in {timeout:g} s"
    if code != 0:
        return "", f"{argv[0]} exited {code}"
    return data.decode("utf-8", "replace"), ""


def threshold(hub: float | None, local: float) -> float:
    """The hub's threshold where it sets one, else the notebook environment's (0: off)."""
    return local if hub is None else hub


def mark_active(settings: dict[str, Any]) -> None:
    settings[SETTING] = datetime.now(timezone.utc)
