"""Reading the chart's values tree: a leaf the loader and the extension points share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ConfigError(ValueError):
    """Values the loader cannot turn into a working hub; the message names the key."""


def lookup(values: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    """The value at a dotted path (``"hub.db.type"``), or ``default`` where a part is missing."""
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node
