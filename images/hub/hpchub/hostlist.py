"""Slurm host lists (``nid[001-003,010]``, ``a[1-2]b[3-4]``, ``login1,login2``) expanded
the way ``scontrol show hostnames`` does, without a login node round trip: the routing host
of a Slurm notebook is the first node of its job's node list (``squeue %N``).
"""

from __future__ import annotations

import itertools
import re

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")
# Most hosts one list may expand to: a job's node list is bounded by the cluster, a bigger
# answer means a malformed list, not a job.
MAX_HOSTS = 100_000


class HostlistError(ValueError):
    """Not a host list Slurm would print."""


def _split_top(text: str) -> list[str]:
    """Split at commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
            if depth > 1:
                raise HostlistError(f"nested brackets in host list {text!r}")
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise HostlistError(f"unbalanced brackets in host list {text!r}")
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise HostlistError(f"unbalanced brackets in host list {text!r}")
    parts.append(text[start:])
    return parts


def _numbers(spec: str, text: str) -> list[str]:
    out: list[str] = []
    for item in spec.split(","):
        m = _RANGE.match(item)
        if not m:
            raise HostlistError(f"bad range {item!r} in host list {text!r}")
        lo, hi = m.group(1), m.group(2) or m.group(1)
        if int(hi) < int(lo):
            raise HostlistError(f"descending range {item!r} in host list {text!r}")
        if int(hi) - int(lo) >= MAX_HOSTS:
            raise HostlistError(f"range {item!r} in host list {text!r} is too large")
        width = len(lo)  # zero padding follows the lower bound, as Slurm's does
        out.extend(str(n).zfill(width) for n in range(int(lo), int(hi) + 1))
    return out


def _expand_one(name: str, text: str) -> list[str]:
    pieces = re.split(r"(\[[^\]]*\])", name)
    if not name or pieces[-1] and len(pieces) > 1:
        # Slurm refuses text after the last bracket ("n[1-2]-ib") and empty names.
        raise HostlistError(f"invalid host list {text!r}")
    choices = [_numbers(p[1:-1], text) if p.startswith("[") else [p] for p in pieces if p]
    return ["".join(c) for c in itertools.product(*choices)]


def expand(text: str) -> list[str]:
    """Every host name of a Slurm host list, in order."""
    text = text.strip()
    if not text:
        return []
    hosts: list[str] = []
    for part in _split_top(text):
        hosts.extend(_expand_one(part, text))
        if len(hosts) > MAX_HOSTS:
            raise HostlistError(f"host list {text!r} names more than {MAX_HOSTS} hosts")
    return hosts


def first(text: str) -> str:
    """The first host of a Slurm host list (where a job's batch script, and so its
    notebook, runs)."""
    hosts = expand(text)
    if not hosts:
        raise HostlistError("empty host list")
    return hosts[0]
