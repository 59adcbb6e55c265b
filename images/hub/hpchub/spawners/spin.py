"""Spin: the in-cluster back-up notebook, a KubeSpawner configured from values ``spin``.

``spin.image`` (+ a tag per selectable version), ``spin.resources.<level>`` (cpu/mem
guarantees and limits per service level), ``spin.volumes`` (home and global file
systems: nfs, persistentVolumeClaim or hostPath), ``spin.nodeSelector``, and the
notebook's uid/gid: from ``auth_state`` (``uid``/``gid``) when ``uidFromAuthState``,
else looked up over SSH on ``spin.uidLookup.system`` (``id -u``, ``id -g`` as the user),
else ``spin.uid``/``spin.gid``.

KubeSpawner comes first in the bases so its start/stop/poll/state are the ones used; the
DispatchSpawner base adds only the shared traits and the options check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubespawner import KubeSpawner
from tornado import web

from .. import metrics
from ..ssh import SSHTarget, pool
from .dispatch import DispatchSpawner
from .remote import user_credentials

RESOURCE_TRAITS = {
    "cpuGuarantee": "cpu_guarantee",
    "cpuLimit": "cpu_limit",
    "memGuarantee": "mem_guarantee",
    "memLimit": "mem_limit",
}
VOLUME_SOURCES = ("nfs", "persistentVolumeClaim", "hostPath", "configMap", "secret")


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
        self.uid = int(spin.get("uid", 1000))
        self.gid = int(spin.get("gid", 100))
        self.fs_gid = self.gid
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

    async def run_auth_state_hook(self, auth_state: Mapping[str, Any] | None) -> None:
        # JupyterHub calls this before every start with the user's decrypted auth_state.
        found = False
        if self.spin.get("uidFromAuthState", True) and auth_state:
            if isinstance(auth_state.get("uid"), int):
                self.uid = auth_state["uid"]
                found = True
            if isinstance(auth_state.get("gid"), int):
                self.gid = self.fs_gid = auth_state["gid"]
        lookup = (self.spin.get("uidLookup") or {}).get("system")
        if not found and lookup:
            self.uid, self.gid = await self.lookup_ids(str(lookup), auth_state)
            self.fs_gid = self.gid
        await super().run_auth_state_hook(auth_state)

    async def lookup_ids(self, system: str, auth_state: Mapping[str, Any] | None) -> tuple[int, int]:
        """uid and gid as the supercomputer knows them (``id -u``/``id -g`` over SSH), so
        files written in Spin on the shared file systems belong to the user."""
        values = self.systems.get(system) or {}
        display = values.get("displayName", system)
        target = SSHTarget.from_values(display, values.get("ssh") or {})
        creds = user_credentials(display, self.user.name, self.ssh_ca, auth_state)
        # A constant script (nothing user-typed): both ids in one round trip.
        result = await pool.run(target, self.user.name, creds, ["/bin/sh", "-c", "id -u; id -g"], timeout=30)
        ids = result.stdout.split()
        if not result.ok or len(ids) != 2 or not all(i.isdigit() for i in ids):
            raise web.HTTPError(500, "%s", f"{display}: cannot look up the uid/gid of {self.user.name}")
        return int(ids[0]), int(ids[1])

    async def check_options(self, user_options: dict[str, Any] | None) -> Any:
        clean = await super().check_options(user_options)
        self.image = image_for(self.spin, clean.version)
        return clean
