"""The server extension: polls the hub, keeps busy kernels active, watches kernel deaths,
turns SIGUSR1 into "the end is near", and serves the browser's view under hpchub/."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from tornado.ioloop import IOLoop, PeriodicCallback
from traitlets import Float, Unicode, default
from traitlets.config import LoggingConfigurable

from .activity import CpuBusy, GpuBusy, busy_kernels, mark_active, threshold
from .hubclient import StatusPoller, status_url
from .kernels import KernelDeathWatch
from .schedule import effective_ends_at, frontend_view


class HpchubNotebook(LoggingConfigurable):
    """hpchub in the notebook server (configure as ``c.HpchubNotebook.<trait>``)."""

    status_url = Unicode(
        help="The hub's status endpoint for this server. Default: $HPCHUB_STATUS_URL, else "
        "$JUPYTERHUB_API_URL/hpchub/servers/$JUPYTERHUB_USER/$JUPYTERHUB_SERVER_NAME."
    ).tag(config=True)

    @default("status_url")
    def _default_status_url(self) -> str:
        return status_url() or ""

    poll_interval = Float(60.0, help="Seconds between polls of the hub (jittered ±10 %).").tag(config=True)
    activity_interval = Float(
        30.0, help="Seconds between checks for busy kernels (each busy check is activity)."
    ).tag(config=True)
    kernel_watch_interval = Float(
        2.0, help="Seconds between looks at the kernels' PIDs and OOM counters."
    ).tag(config=True)
    busy_cpu_percent = Float(
        help="Processes of the server using at least this much CPU in total (percent of one "
        "core) count as activity; 0 = off. The hub's culling.busyCpuPercent wins where it sets "
        "one. Default: $HPCHUB_BUSY_CPU_PERCENT, else 0. Needs psutil."
    ).tag(config=True)
    busy_gpu_percent = Float(
        help="The server's GPUs (CUDA_VISIBLE_DEVICES, else all nvidia-smi lists) at this average "
        "utilization (percent) count as activity; 0 = off. The hub's culling.busyGpuPercent wins "
        "where it sets one. Default: $HPCHUB_BUSY_GPU_PERCENT, else 0. Needs nvidia-smi."
    ).tag(config=True)

    @default("busy_cpu_percent")
    def _default_cpu(self) -> float:
        return _env_percent("HPCHUB_BUSY_CPU_PERCENT")

    @default("busy_gpu_percent")
    def _default_gpu(self) -> float:
        return _env_percent("HPCHUB_BUSY_GPU_PERCENT")

    def setup(self, serverapp: Any, version: str) -> None:
        self._gpu_logged = ""
        self._gpu_checking = False
        self.serverapp = serverapp
        self.version = version
        self.signal_ends_at: float | None = None
        self.poller = StatusPoller(
            self.status_url or None,
            os.environ.get("JUPYTERHUB_API_TOKEN", ""),
            version,
            self.poll_interval,
            self.log,
        )
        self.deaths = KernelDeathWatch(serverapp.kernel_manager, self.log)
        self.cpu = CpuBusy()
        self.gpu = GpuBusy(os.environ)
        self._install_sigusr1()

    def start(self) -> None:
        """Start the loops (called once the event loop runs)."""
        if getattr(self, "_periodic", None):
            return
        self.poller.start()
        self._periodic = [
            PeriodicCallback(self._activity_tick, self.activity_interval * 1000),
            PeriodicCallback(self.deaths.tick, self.kernel_watch_interval * 1000),
        ]
        for p in self._periodic:
            p.start()

    def thresholds(self) -> tuple[float, float]:
        """(CPU, GPU) thresholds in force: the hub's where it sets them, else this server's."""
        status = self.poller.status
        cull = status.cull if status else None
        return (
            threshold(cull.busy_cpu_percent if cull else None, self.busy_cpu_percent),
            threshold(cull.busy_gpu_percent if cull else None, self.busy_gpu_percent),
        )

    def _activity_tick(self) -> None:
        cpu, gpu = self.thresholds()
        why = ""
        if kernels := busy_kernels(self.serverapp.kernel_manager):
            why = f"{len(kernels)} busy kernel(s)"
        if self.cpu.busy(cpu) and not why:  # sampled every tick: the next compares with now
            why = f"processes above {cpu:g} % CPU"
        if why:
            self._active(why)
        elif gpu > 0 and not self._gpu_checking:
            # nvidia-smi may take seconds (or hang on a sick GPU): in a thread, one at a
            # time; the kernel and CPU checks above go on every tick meanwhile.
            self._gpu_checking = True
            IOLoop.current().add_callback(self._gpu_check, gpu)

    async def _gpu_check(self, gpu: float) -> None:
        try:
            if await IOLoop.current().run_in_executor(None, self.gpu.busy, gpu):
                self._active(f"GPUs above {gpu:g} %")
            elif self.gpu.error and self.gpu.error != self._gpu_logged:
                self.log.warning("hpchub: GPU activity unknown: %s", self.gpu.error)
            self._gpu_logged = self.gpu.error
        finally:
            self._gpu_checking = False

    def _active(self, why: str) -> None:
        mark_active(self.serverapp.web_app.settings)
        self.log.debug("hpchub: %s: activity", why)

    def _install_sigusr1(self) -> None:
        """SIGUSR1 (e.g. ``sbatch --signal=USR1@N``): the end is imminent, save now; works
        with the hub down. jupyter_server's own SIGUSR1 handler (prints server info) is kept."""
        if not hasattr(signal, "SIGUSR1"):
            return
        try:
            previous = signal.getsignal(signal.SIGUSR1)
        except ValueError:
            return

        def handler(signum: int, frame: Any) -> None:
            # Only records a time: safe in a signal handler; the browser's next poll acts.
            status = self.poller.status
            soon = time.time() + (status.save_before_seconds if status else 120)
            known = effective_ends_at(status.ends_at if status else None, self.signal_ends_at)
            if known is None or soon < known:
                self.signal_ends_at = soon
            if callable(previous):
                previous(signum, frame)

        try:
            signal.signal(signal.SIGUSR1, handler)
        except ValueError:  # not the main thread (embedded server): no signal handling
            self.log.info("hpchub: not in the main thread, SIGUSR1 not handled")

    def local_last_activity(self) -> float | None:
        try:
            return self.serverapp.web_app.last_activity().timestamp()
        except Exception:  # noqa: BLE001 - a view must not fail for this
            return None

    def view(self) -> dict[str, Any]:
        return frontend_view(
            self.poller.status,
            now=time.time(),
            signal_ends_at=self.signal_ends_at,
            local_last_activity=self.local_last_activity(),
            hub_error=self.poller.error,
            version=self.version,
        )


def _env_percent(name: str) -> float:
    try:
        value = float(os.environ.get(name, "0"))
    except ValueError:
        return 0.0
    return value if 0 < value < float("inf") else 0.0


def load(serverapp: Any, version: str) -> HpchubNotebook:
    from .handlers import handlers

    ext = HpchubNotebook(parent=serverapp, config=serverapp.config, log=serverapp.log)
    ext.setup(serverapp, version)
    web_app = serverapp.web_app
    web_app.settings["hpchub_notebook"] = ext
    web_app.add_handlers(".*$", handlers(web_app.settings["base_url"]))
    # Extensions load before the IOLoop runs: start the loops on its first turn.
    IOLoop.current().add_callback(ext.start)
    serverapp.log.info("hpchub-notebook %s: hub status from %s", version, ext.status_url or "(none)")
    return ext
