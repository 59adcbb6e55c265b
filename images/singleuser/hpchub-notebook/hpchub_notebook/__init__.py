"""hpchub-notebook: hpchub inside the notebook server and JupyterLab.

A Jupyter server extension (status from the hub, extend, busy kernels as activity, why a
kernel died) and a prebuilt JupyterLab 4 extension (countdown, warnings, saving before the
walltime ends, cull warning, out-of-memory kernels named), one ``pip install``.
"""

from __future__ import annotations

from typing import Any

try:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _version

    __version__ = _version("hpchub-notebook")
except PackageNotFoundError:  # running from a source checkout (unit tests)
    __version__ = "0.0.0"


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "hpchub-notebook"}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "hpchub_notebook"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from .extension import load

    load(serverapp, __version__)
