"""Fixtures for the console's browser tests: Debian's Chromium driven by Playwright, a
real hub + configurable-http-proxy (the harness's Hub), and real IdP/key-service HTTP servers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from playwright.sync_api import expect

from ..harness.loop import LoopThread
from .helpers import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, HERE, start_hub

# A loaded 2-core CI machine can take longer than Playwright's 5 s default for a page that
# a spawn or stop is holding up; assertions still fail, only later.
expect.set_options(timeout=20_000)


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

    # No skip when Chromium is missing: `make test` installs it, and a browser test that
    # silently skips passes CI without having run.
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found (make test installs Debian's chromium)")
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
    spawner = {"cmd": [str(singleuser)], "args": ["--allow-root"], "start_timeout": 120, "http_timeout": 120}
    if (singleuser.parent / "jupyter-lab").exists():
        spawner["default_url"] = "/lab"
    traits = {"Spawner": spawner, "JupyterHub": {"load_groups": {"gpu-users": {"users": ["alice"]}}}}
    hub = start_hub(tmp_path_factory, "hub-dummy", base_values, traits=traits)
    yield hub
    hub.stop()


@pytest.fixture(scope="session")
def loop_thread():
    lt = LoopThread()
    yield lt
    lt.close()
