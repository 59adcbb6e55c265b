#!/usr/bin/env python3
"""Print the fenced code block that follows a marker comment in a Markdown file, with the
list indentation removed: how `make up` and the tests run a how-to of the docs exactly as
written (e.g. the operator guide's status-account steps).

    hack/doc-block.py docs/operator-guide.md status-account-setup
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path


def block(markdown: str, marker: str) -> str:
    lines = markdown.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith(f"<!-- {marker}")), None)
    if start is None:
        raise SystemExit(f"doc-block: no <!-- {marker} ... --> marker")
    fence = next(i for i in range(start + 1, len(lines)) if lines[i].strip().startswith("```"))
    end = next(i for i in range(fence + 1, len(lines)) if lines[i].strip() == "```")
    return textwrap.dedent("\n".join(lines[fence + 1 : end])) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: doc-block.py FILE MARKER")
    sys.stdout.write(block(Path(sys.argv[1]).read_text(), sys.argv[2]))
