"""Fixtures for the console's browser tests: Debian's Chromium driven by Playwright, a
real hub + configurable-http-proxy (hubproc.Hub), and real IdP/key-service HTTP servers."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import expect

from ..harness.loop import LoopThread
from .helpers import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, HERE, LOCAL_SPAWNER, start_hub

# A loaded 2-core CI machine can take longer than Playwright's 5 s default for a page that
# a spawn or stop is holding up; assertions still fail, only later.
expect.set_options(timeout=20_000)


def pytest_collection_modifyitems(config, items):
    missing = [
        what
        for what, ok in (
            ("chromium", Path(CHROMIUM).exists()),
            ("configurable-http-proxy", shutil.which("configurable-http-proxy")),
        )
        if not ok
    ]
    if missing:  # make test installs both; a bare checkout says why instead of erroring
        skip = pytest.mark.skip(reason=f"browser tests need {', '.join(missing)}")
        for item in items:
            if "tests/browser" in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def base_values() -> dict:
    return yaml.safe_load((HERE / "values-browser.yaml").read_text())


@pytest.fixture(scope="module")
def browser():
    # Module scope, not session: sync Playwright keeps an event loop running in this
    # thread, which would break the asyncio tests of other modules collected after us.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="session")
def singleuser() -> Path:
    """jupyterhub-singleuser from the harness's venv (jupyter_server; JupyterLab if present)."""
    from ..harness import minihpc

    return minihpc.ensure_venv()


@pytest.fixture(scope="session")
def dummy_hub(tmp_path_factory, base_values, singleuser):
    """Dev authenticator; alice is in gpu-users, bob is not."""
    traits = {
        "Spawner.cmd": [str(singleuser)],
        "Spawner.args": ["--allow-root"],
        "Spawner.start_timeout": 120,
        "Spawner.http_timeout": 120,
        "JupyterHub.load_groups": {"gpu-users": {"users": ["alice"]}},
    }
    if (singleuser.parent / "jupyter-lab").exists():
        traits["Spawner.default_url"] = "/lab"
    hub = start_hub(
        tmp_path_factory, "hub-dummy", copy.deepcopy(base_values), spawner=LOCAL_SPAWNER, traits=traits
    )
    yield hub
    hub.stop()


@pytest.fixture(scope="session")
def loop_thread():
    lt = LoopThread()
    yield lt
    lt.close()
