"""A process's memory cgroup: its OOM-kill counter and its limit (cgroup v1 and v2).

Read from /proc/<pid>/cgroup and the cgroup filesystem; the roots are parameters so that a
unit test can point them at a fake tree. Every read tolerates the file being absent (no
memory controller, a container without the mount, the process gone): None, never an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# cgroup v1 reports "no limit" as a huge number (page-rounded LONG_MAX).
UNLIMITED_V1 = 1 << 60


@dataclass(frozen=True)
class MemoryCgroup:
    path: Path  # the cgroup's directory in the cgroup filesystem
    version: int  # 1 or 2

    def oom_kills(self) -> int | None:
        """How many processes the OOM killer has killed in this cgroup (None: unknown)."""
        if self.version == 2:
            return _keyed_value(self.path / "memory.events", "oom_kill")
        return _keyed_value(self.path / "memory.oom_control", "oom_kill")

    def limit_bytes(self) -> int | None:
        """The memory limit (None: unlimited or unknown)."""
        name = "memory.max" if self.version == 2 else "memory.limit_in_bytes"
        try:
            text = (self.path / name).read_text().strip()
        except OSError:
            return None
        if text == "max":
            return None
        try:
            value = int(text)
        except ValueError:
            return None
        return None if value >= UNLIMITED_V1 else value


def _keyed_value(path: Path, key: str) -> int | None:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            try:
                return int(parts[1])
            except ValueError:
                return None
    return None


def memory_cgroup(
    pid: int, proc: Path = Path("/proc"), root: Path = Path("/sys/fs/cgroup")
) -> MemoryCgroup | None:
    """The memory cgroup of process ``pid``: v1's memory controller if mounted, else v2's
    unified hierarchy. Inside a cgroup namespace the path in /proc is relative to the
    namespace's root, which is then the mount itself: both are tried."""
    try:
        lines = (proc / str(pid) / "cgroup").read_text().splitlines()
    except OSError:
        return None
    v1 = v2 = None
    for line in lines:
        hid, _, rest = line.partition(":")
        controllers, _, rel = rest.partition(":")
        if "memory" in controllers.split(","):
            v1 = rel
        elif hid == "0" and controllers == "":
            v2 = rel
    for version, rel, base in ((1, v1, root / "memory"), (2, v2, root), (2, v2, root / "unified")):
        if rel is None:
            continue
        probe = "memory.oom_control" if version == 1 else "memory.events"
        for candidate in (base / rel.lstrip("/"), base):
            if (candidate / probe).exists():
                return MemoryCgroup(candidate, version)
    return None


def format_bytes(n: int) -> str:
    """1.5 GiB, 256 MiB: what a user reads in the OOM message."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # unreachable
