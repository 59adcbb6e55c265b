"""Spin: the in-cluster back-up notebook, a KubeSpawner configured from values ``spin``.

``spin.image`` (+ a tag per selectable version), ``spin.resources.<level>`` (cpu/mem
guarantees and limits per service level), ``spin.volumes`` (home and global file
systems: nfs, persistentVolumeClaim or hostPath; configMap, secret; emptyDir scratch), ``spin.nodeSelector``, and the
notebook's uid/gid: from the trusted identity source (``hpchub.identity``: IdP claims or
the service account's lookup on a login node — never a command run as the user, whose
shell start-up files could print ``0``), else the fixed ``spin.uid``/``spin.gid`` (then
the chart allows no writable or per-user volume). ``HOME`` is ``spin.homeDir`` (the
user's mounted home, else a scratch directory), so any uid can write there.

Pods get the chart's hardening: all capabilities dropped, no privilege escalation,
seccomp ``RuntimeDefault``, non-root, and a read-only root file system
(``spin.readOnlyRootFilesystem``) with ``/tmp`` and the home as writable mounts.

KubeSpawner comes first in the bases so its start/stop/poll/state are the ones used; the
DispatchSpawner base adds only the shared traits and the options check.

How a Spin server ended is the pod's status (Kubernetes' word, not the user's): the
notebook container ``OOMKilled`` (its memory limit is the request), the pod ``Evicted``,
or an exit code. Pods do not restart (``restartPolicy: Never``): a notebook container that
died is an end the console explains, not a silent restart that lost every kernel.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kubespawner import KubeSpawner
from tornado import web

from .. import metrics
from ..endings import MAX_FIGURE
from ..grid import covered
from ..identity import IdentityConfig, IdentityError, resolve
from .dispatch import DispatchSpawner

RESOURCE_TRAITS = {
    "cpuGuarantee": "cpu_guarantee",
    "cpuLimit": "cpu_limit",
    "memGuarantee": "mem_guarantee",
    "memLimit": "mem_limit",
}
VOLUME_SOURCES = ("nfs", "persistentVolumeClaim", "hostPath", "configMap", "secret", "emptyDir")
DEFAULT_HOME = "/home/{username}"
# Writable scratch mounts the hub adds (a read-only root file system needs them).
TMP_VOLUME = "hpchub-tmp"
HOME_VOLUME = "hpchub-home"


def container_security_context(spin: Mapping[str, Any]) -> dict[str, Any]:
    """The chart's container hardening (templates' hpchub.containerSecurityContext)."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": bool(spin.get("readOnlyRootFilesystem", True)),
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


POD_SECURITY_CONTEXT = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def volumes_from_values(volumes: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pod volumes, container volume mounts); ``{username}`` in paths is expanded by KubeSpawner."""
    vols: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    for name, spec in sorted((volumes or {}).items()):
        sources = [k for k in VOLUME_SOURCES if k in spec]
        if len(sources) != 1:
            raise ValueError(f"spin.volumes.{name}: needs exactly one of {', '.join(VOLUME_SOURCES)}")
        if not spec.get("mountPath"):
            raise ValueError(f"spin.volumes.{name}.mountPath: required")
        vols.append({"name": name, sources[0]: dict(spec[sources[0]])})
        mount = {"name": name, "mountPath": spec["mountPath"]}
        if spec.get("readOnly"):
            mount["readOnly"] = True
        if spec.get("subPath"):
            mount["subPath"] = spec["subPath"]
        mounts.append(mount)
    return vols, mounts


NOTEBOOK_CONTAINER = "notebook"  # KubeSpawner's name for the server's container
# Kubernetes quantities (resources.limits.memory): 1Gi, 512Mi, 1G, 1e9, 1000000000.
_QUANTITY = re.compile(r"([0-9]{1,15}(?:\.[0-9]{1,6})?)(?:e([0-9]{1,2}))?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?")
_QUANTITY_UNITS = {
    None: 1,
    "m": 0.001,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


def quantity_bytes(value: object) -> int | None:
    """Bytes of a Kubernetes memory quantity; None for what is not one."""
    m = _QUANTITY.fullmatch(str(value or "").strip())
    if not m:
        return None
    number = int(float(m.group(1)) * 10 ** int(m.group(2) or 0) * _QUANTITY_UNITS[m.group(3)])
    return number if 0 < number < MAX_FIGURE else None


def _seconds_between(start: object, end: object) -> int | None:
    try:
        began = datetime.fromisoformat(str(start).replace("Z", "+00:00"))
        ended = datetime.fromisoformat(str(end).replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(int((ended - began).total_seconds()), 0)


def pod_ending(pod: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(cause, figures) of a pod whose notebook ended, from its status; None while it
    runs (or has not started)."""
    status = pod.get("status") or {}
    spec = pod.get("spec") or {}
    container = next((c for c in spec.get("containers") or [] if c.get("name") == NOTEBOOK_CONTAINER), {})
    limit = quantity_bytes(((container.get("resources") or {}).get("limits") or {}).get("memory"))
    if status.get("reason") == "Evicted":
        return "evicted", {
            "state": "Evicted",
            "reason": status.get("reason"),
            "message": status.get("message") or "",
            "requested_memory_bytes": limit,
        }
    for c in status.get("containerStatuses") or []:
        if c.get("name") != NOTEBOOK_CONTAINER:
            continue
        ended = (c.get("state") or {}).get("terminated")
        if not ended:
            return None
        reason = str(ended.get("reason") or "")
        figures: dict[str, Any] = {
            "state": reason or "Terminated",
            "reason": reason,
            "exit_code": str(ended.get("exitCode", "")),
            "signal": str(ended.get("signal") or ""),
            "elapsed_seconds": _seconds_between(ended.get("startedAt"), ended.get("finishedAt")),
            "requested_memory_bytes": limit,
            "message": str(ended.get("message") or ""),
        }
        if reason == "OOMKilled":
            return "out_of_memory", figures
        if reason in ("ContainerCannotRun", "StartError"):
            return "start_failed", figures
        return "exited", figures
    if status.get("phase") in ("Failed", "Succeeded"):
        return "exited", {"state": status.get("phase"), "reason": status.get("reason") or ""}
    return None


def image_for(spin: Mapping[str, Any], version: str | None) -> str:
    image = spin.get("image") or {}
    repo = image.get("repository", "hpchub/singleuser")
    tag = str(image.get("tag", "latest"))
    versions = spin.get("versions") or {}
    version = version or spin.get("defaultVersion") or None
    if version and version in versions:
        chosen = versions[version] or {}
        repo = chosen.get("repository", repo)
        tag = str(chosen.get("tag", tag))
    return f"{repo}:{tag}"


class SpinSpawner(KubeSpawner, DispatchSpawner):
    """KubeSpawner with image, resources, volumes and uid/gid taken from values."""

    def configure_from_cell(self) -> None:
        assert self.cell is not None
        spin = self.spin
        level = self.cell.level.name
        self.image = image_for(spin, None)
        if (spin.get("image") or {}).get("pullPolicy"):
            self.image_pull_policy = spin["image"]["pullPolicy"]
        for key, trait in RESOURCE_TRAITS.items():
            value = ((spin.get("resources") or {}).get(level) or {}).get(key)
            if value is not None:
                setattr(self, trait, value)
        self.volumes, self.volume_mounts = volumes_from_values(spin.get("volumes") or {})
        if spin.get("nodeSelector"):
            self.node_selector = dict(spin["nodeSelector"])
        if spin.get("startTimeout"):
            self.start_timeout = int(spin["startTimeout"])
        # The fixed identity when no trusted source is configured (check_options replaces
        # it with the user's own otherwise).
        self.uid = int(spin.get("uid", 1000))
        self.gid = int(spin.get("gid", 100))
        self.fs_gid = self.gid
        self.container_security_context = container_security_context(spin)
        self.pod_security_context = dict(POD_SECURITY_CONTEXT)
        self.extra_labels = {
            **self.extra_labels,
            "hpchub/system": self.cell.system.name,
            "hpchub/level": level,
        }
        # A notebook that died ends (and says why: poll); it does not restart without its kernels.
        self.extra_pod_config = {**self.extra_pod_config, "restartPolicy": "Never"}

    async def _start(self) -> Any:
        # KubeSpawner.start() wraps _start() in a future its progress() watches.
        self.new_start()
        timer = metrics.spawn_timer(self.cell, "kubernetes")
        try:
            url = await super()._start()
        except Exception as e:
            self.record_end("start_failed", {"message": str(e)})
            raise
        timer.ready()
        return url

    async def poll(self) -> int | None:
        """KubeSpawner's poll; a notebook that ended is recorded first, from its pod's status
        (KubeSpawner then deletes the pod)."""
        # The pod watch KubeSpawner's poll starts first (after a hub restart, this poll may
        # be the first): the pod of a notebook that ended while the hub was down is read too.
        reflector = await self._start_watching_pods()
        pod = reflector.pods.get(f"{self.namespace}/{self.pod_name}")
        ended = pod_ending(pod) if pod is not None and not self.end_recorded else None
        if ended is not None:
            self.record_end(*ended)
        status = await super().poll()
        if status is not None and not self.end_recorded and self.pending != "stop":
            # The pod is gone without a word (deleted outside hpchub).
            self.record_end("unknown", {"message": "its pod is gone"})
        return status

    async def stop(self, now: bool = False) -> None:
        self.stop_begins()  # asked for (REST, console, culler): hpchub.ends attributes it
        await super().stop(now=now)

    async def check_options(self, user_options: dict[str, Any] | None) -> Any:
        clean = await super().check_options(user_options)  # cell rules, then the options
        self.image = image_for(self.spin, clean.version)
        await self.apply_identity()
        self.apply_home()
        return clean

    async def apply_identity(self) -> None:
        """uid/gid from the trusted source, before the pod is made (JupyterHub runs
        check_options through apply_user_options just before start)."""
        config = IdentityConfig.from_values(self.identity)
        try:
            found = await resolve(
                config, self.user.name, await self.user.get_auth_state(), self.systems, self.ssh_ca
            )
        except IdentityError as e:
            raise web.HTTPError(e.status, "%s", f"{self.cell.system.display_name}: {e.message}") from e
        if found is None:
            return  # spin.uid/gid (no writable or per-user volume is allowed then)
        self.uid, self.gid, self.fs_gid = found.uid, found.gid, found.gid
        self.log.info(
            "Spin server of %s runs as %d:%d (%s)", self.user.name, found.uid, found.gid, found.source
        )

    def apply_home(self) -> None:
        """HOME and the working directory: ``spin.homeDir`` — the user's home volume, or a
        scratch directory when nothing is mounted there — plus a writable /tmp, so the
        server writes nothing to the image (read-only, owned by another uid)."""
        home = self._expand_user_properties(str(self.spin.get("homeDir") or DEFAULT_HOME))
        mounts = [m for m in self.volume_mounts if m["name"] not in (TMP_VOLUME, HOME_VOLUME)]
        volumes = [v for v in self.volumes if v["name"] not in (TMP_VOLUME, HOME_VOLUME)]
        paths = [self._expand_user_properties(m["mountPath"]) for m in mounts]
        if not covered("/tmp", paths):
            volumes.append({"name": TMP_VOLUME, "emptyDir": {}})
            mounts.append({"name": TMP_VOLUME, "mountPath": "/tmp"})
        if not covered(home, paths):
            volumes.append({"name": HOME_VOLUME, "emptyDir": {}})
            mounts.append({"name": HOME_VOLUME, "mountPath": home})
        self.volumes, self.volume_mounts = volumes, mounts
        self.working_dir = home
        self.environment = {**self.environment, "HOME": home}
