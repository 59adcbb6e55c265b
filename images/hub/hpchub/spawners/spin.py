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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubespawner import KubeSpawner
from tornado import web

from .. import metrics
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

    async def _start(self) -> Any:
        # KubeSpawner.start() wraps _start() in a future its progress() watches.
        timer = metrics.spawn_timer(self.cell, "kubernetes")
        url = await super()._start()
        timer.ready()
        return url

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
