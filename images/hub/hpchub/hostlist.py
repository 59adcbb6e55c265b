"""Slurm host lists (``nid[001-003,010]``, ``a[1-2]b[3-4]``, ``login1,login2``) read the way
``scontrol show hostnames`` reads them, without a login node round trip: the routing host of
a Slurm notebook is the first node of its job's node list (``squeue %N``).

A node list can come from a user's shell (per-user status mode), so it is a claim: it is
checked in one pass over its text (bounded length, ASCII, Slurm's syntax) and never
expanded eagerly. ``first`` reads the first host without building any other; ``count``
multiplies range sizes; ``expand`` yields hosts lazily and stops at a limit. So
``n[0-99998]m[0-99998]`` (10^10 hosts) costs what its 20 characters cost.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

# The longest node list read at all: far above what squeue prints for a job of a real
# cluster's size in compressed form, far below what could cost the hub anything.
MAX_TEXT = 65_536
# Most hosts one list may name (``expand``'s default limit and ``count``'s cap).
MAX_HOSTS = 100_000
_NAME = re.compile(r"[A-Za-z0-9._-]*")
_RANGE = re.compile(r"([0-9]{1,18})(?:-([0-9]{1,18}))?")
# The whole syntax in one regex, checked at C speed before any part is read in Python
# (possessive quantifiers: linear, whatever the text). A name may hold bracket sets with
# text between them, never text after the last one (Slurm refuses "n[1-2]-ib").
_R = r"[0-9]{1,18}+(?:-[0-9]{1,18}+)?+"
_B = rf"\[{_R}(?:,{_R})*+\]"
_HOST = rf"[A-Za-z0-9._-]++(?:{_B}(?:[A-Za-z0-9._-]*+{_B})*+)?+"
_SYNTAX = re.compile(rf"{_HOST}(?:,{_HOST})*+")
_HOST_AT_START = re.compile(_HOST)


class HostlistError(ValueError):
    """Not a host list Slurm would print."""


@dataclass(frozen=True)
class _Range:
    lo: int
    hi: int
    width: int  # zero padding follows the lower bound, as Slurm's does

    def __len__(self) -> int:
        return self.hi - self.lo + 1

    def numbers(self) -> Iterator[str]:
        return (str(n).zfill(self.width) for n in range(self.lo, self.hi + 1))


# One comma-separated part: literal text and bracket sets ([1-3,7]) in turn.
_Segment = str | tuple[_Range, ...]


def _shown(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _parse(text: str) -> list[tuple[_Segment, ...]]:
    """The parts of a host list, checked in one pass; HostlistError when Slurm would not
    print it."""
    if len(text) > MAX_TEXT:
        raise HostlistError(f"host list of {len(text)} characters (more than {MAX_TEXT})")
    if not text.isascii():
        raise HostlistError(f"host list {_shown(text)} is not ASCII")
    parts: list[tuple[_Segment, ...]] = []
    pos, n = 0, len(text)
    while True:
        segments: list[_Segment] = []
        while pos < n and text[pos] != ",":
            if text[pos] == "[":
                close = text.find("]", pos)
                if close < 0:
                    raise HostlistError(f"unbalanced brackets in host list {_shown(text)}")
                inner = text[pos + 1 : close]
                if "[" in inner:
                    raise HostlistError(f"nested brackets in host list {_shown(text)}")
                segments.append(tuple(_range(item, text) for item in inner.split(",")))
                pos = close + 1
                continue
            m = _NAME.match(text, pos)
            assert m is not None  # the pattern matches the empty string
            if m.end() == pos:
                raise HostlistError(f"character {text[pos]!r} in host list {_shown(text)}")
            segments.append(text[pos : m.end()])
            pos = m.end()
        if not segments:
            raise HostlistError(f"empty host name in host list {_shown(text)}")
        # Text between brackets is fine (a[1-2]b[3-4]); after the last one Slurm refuses it.
        if isinstance(segments[-1], str) and any(not isinstance(s, str) for s in segments):
            raise HostlistError(f"invalid host list {_shown(text)} (text after the last bracket)")
        if isinstance(segments[0], tuple):
            raise HostlistError(f"invalid host list {_shown(text)} (a name starts with a bracket)")
        parts.append(tuple(segments))
        if pos >= n:
            return parts
        pos += 1  # the comma
        if pos >= n:
            raise HostlistError(f"host list {_shown(text)} ends with a comma")


def _range(item: str, text: str) -> _Range:
    m = _RANGE.fullmatch(item)
    if not m:
        raise HostlistError(f"bad range {item[:40]!r} in host list {_shown(text)}")
    lo_text, hi_text = m.group(1), m.group(2) or m.group(1)
    lo, hi = int(lo_text), int(hi_text)
    if hi < lo:
        raise HostlistError(f"descending range {item!r} in host list {_shown(text)}")
    if hi - lo >= MAX_HOSTS:
        raise HostlistError(f"range {item!r} in host list {_shown(text)} is too large")
    return _Range(lo, hi, len(lo_text))


def _part_count(part: tuple[_Segment, ...], cap: int) -> int:
    total = 1
    for seg in part:
        if isinstance(seg, tuple):
            total *= sum(len(r) for r in seg)
            if total > cap:
                return cap + 1
    return total


def count(text: str, cap: int = MAX_HOSTS) -> int:
    """How many hosts the list names (``cap + 1`` for anything above ``cap``)."""
    text = text.strip()
    if not text:
        return 0
    total = 0
    for part in _parse(text):
        total += _part_count(part, cap)
        if total > cap:
            return cap + 1
    return total


def _part_hosts(part: tuple[_Segment, ...]) -> Iterator[str]:
    # itertools.product() would materialise every range first: nested generators are lazy.
    def walk(i: int, prefix: str) -> Iterator[str]:
        if i == len(part):
            yield prefix
            return
        seg = part[i]
        values = itertools.chain.from_iterable(r.numbers() for r in seg) if isinstance(seg, tuple) else (seg,)
        for v in values:
            yield from walk(i + 1, prefix + v)

    return walk(0, "")


def expand(text: str, limit: int = MAX_HOSTS) -> list[str]:
    """Every host name of a Slurm host list, in order; HostlistError when it names more
    than ``limit`` (checked before any name is built)."""
    text = text.strip()
    if not text:
        return []
    parts = _parse(text)
    total = 0
    for part in parts:
        total += _part_count(part, limit)
        if total > limit:
            raise HostlistError(f"host list {_shown(text)} names more than {limit} hosts")
    return [h for part in parts for h in _part_hosts(part)]


def first(text: str) -> str:
    """The first host of a Slurm host list (where a job's batch script, and so its
    notebook, runs), read without building any other. The whole list's syntax is checked;
    only the first name is read."""
    text = text.strip()
    if not text:
        raise HostlistError("empty host list")
    if len(text) > MAX_TEXT:
        raise HostlistError(f"host list of {len(text)} characters (more than {MAX_TEXT})")
    if not text.isascii():
        raise HostlistError(f"host list {_shown(text)} is not ASCII")
    if not _SYNTAX.fullmatch(text):
        if len(text) <= 1024:
            _parse(text)  # says what is wrong (unbalanced brackets, a bad range, ...)
        raise HostlistError(f"invalid host list {_shown(text)}")
    head = _HOST_AT_START.match(text)
    assert head is not None  # the syntax matched
    part = _parse(head.group())[0]
    return "".join(seg if isinstance(seg, str) else next(seg[0].numbers()) for seg in part)
