"""The operator guide's install: the wheel built by `pip wheel` (hatch-jupyter-builder, jlpm)
and one `pip install` enable both the server extension and the prebuilt Lab extension."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from ..harness import minihpc

pytestmark = [pytest.mark.integration]


def test_the_wheel_carries_the_prebuilt_lab_extension_and_the_server_config(notebook_venv: Path):
    # The wheel the notebook venv was given (see minihpc.ensure_venv).
    wheel = Path((Path(notebook_venv).parent / "hpchub-notebook-wheel.txt").read_text())
    names = zipfile.ZipFile(wheel).namelist()
    data = next(
        n.split("/")[0]
        for n in names
        if n.endswith(".data/data/etc/jupyter/jupyter_server_config.d/hpchub_notebook.json")
    )
    lab = f"{data}/data/share/jupyter/labextensions/hpchub-notebook"
    assert f"{lab}/package.json" in names and f"{lab}/static/style.js" in names
    assert any(n.startswith(f"{lab}/static/remoteEntry.") for n in names)


def test_one_pip_install_enables_both_extensions(notebook_venv: Path):
    jupyter = str(Path(notebook_venv) / "jupyter")
    server = minihpc.run(jupyter, "server", "extension", "list")
    assert "hpchub_notebook enabled" in _plain(server.stdout + server.stderr)
    assert "hpchub_notebook 0.1.0 OK" in _plain(server.stdout + server.stderr)
    lab = minihpc.run(jupyter, "labextension", "list")
    assert "hpchub-notebook v0.1.0 enabled OK (python, hpchub-notebook)" in _plain(lab.stdout + lab.stderr)


def _plain(text: str) -> str:
    """Without the terminal colours jupyter prints."""
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)
