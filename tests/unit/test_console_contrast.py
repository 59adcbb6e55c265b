"""The console's state badges stay readable: WCAG AA contrast (4.5:1) for their text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CSS = Path(__file__).resolve().parents[2] / "images" / "hub" / "hpchub" / "static" / "console.css"
RULE = re.compile(r"(\.hpc-[\w-]+)\s*\{[^}]*?background:\s*(#[0-9a-fA-F]{6});\s*color:\s*(#[0-9a-fA-F]{6})")


def luminance(hex_colour: str) -> float:
    def channel(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


RULES = RULE.findall(CSS.read_text())


def test_every_state_has_a_coloured_badge():
    names = {name for name, _, _ in RULES}
    for state in ("stopped", "starting", "queued", "running", "stopping", "failed", "ended", "unavailable"):
        assert f".hpc-state-{state}" in names


@pytest.mark.parametrize(("selector", "background", "colour"), RULES)
def test_badge_text_has_at_least_aa_contrast(selector, background, colour):
    assert contrast(background, colour) >= 4.5, selector
