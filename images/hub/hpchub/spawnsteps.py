"""Where one start's time went: named steps, timed, logged as one line when the server
answers ("mini: spawn steps of alice:mini-shared: options 0.002 s, credentials 0.001 s,
login host 0.001 s, launch 1.702 s, route 0.004 s; 1.710 s in all").

The line covers what hpchub does inside JupyterHub's ``Spawner.start``; JupyterHub's own
work around it (tokens, the readiness check, the proxy route) is in its "took N seconds"
line. ``make bench`` reads both to say where a spawn's time beyond the physical limit goes.
"""

from __future__ import annotations

import time


class SpawnSteps:
    """The clock of one start: ``mark(name)`` ends the step called ``name``."""

    def __init__(self) -> None:
        self.began = time.monotonic()
        self.marks: list[tuple[str, float]] = []

    def mark(self, name: str) -> None:
        self.marks.append((name, time.monotonic()))

    def durations(self) -> list[tuple[str, float]]:
        """(step, seconds) in order; a step marked twice (a retried wait) adds up."""
        out: dict[str, float] = {}
        last = self.began
        for name, t in self.marks:
            out[name] = out.get(name, 0.0) + (t - last)
            last = t
        return list(out.items())

    def text(self) -> str:
        total = (self.marks[-1][1] if self.marks else time.monotonic()) - self.began
        steps = ", ".join(f"{name} {seconds:.3f} s" for name, seconds in self.durations())
        return f"{steps}; {total:.3f} s in all"
