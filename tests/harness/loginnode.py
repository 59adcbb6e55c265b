"""The login-node programs of config/login-node/ (forced commands: files without a ``.py``,
run by python3 on a login node) as modules a unit test can call into."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path
from types import ModuleType

LOGIN_NODE = Path(__file__).resolve().parents[2] / "config" / "login-node"


def load_script(name: str) -> ModuleType:
    """``config/login-node/<name>`` loaded as a module (its ``main`` is not run)."""
    loader = importlib.machinery.SourceFileLoader(name.replace("-", "_"), str(LOGIN_NODE / name))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module
