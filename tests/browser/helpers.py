"""Helpers shared by the console's browser tests and the bench."""

from __future__ import annotations

from pathlib import Path

from .hubproc import REPO, Hub

HERE = Path(__file__).resolve().parent
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PASSWORD = "browser-test"
# For the tests of the page itself (grid, roles, JS/no-JS start and stop, login): the
# hub starts jupyterhub-singleuser locally. SSH and Slurm cells: test_console_hpc.py.
LOCAL_SPAWNER = "jupyterhub.spawner.SimpleLocalProcessSpawner"


def start_hub(tmp_path_factory, name: str, values: dict, **kw) -> Hub:
    hub = Hub(tmp_path_factory.mktemp(name), values, **kw)
    try:
        hub.start()
    except Exception:
        hub.stop()
        raise
    return hub


def login(page, hub: Hub, username: str, password: str = PASSWORD) -> None:
    page.goto(hub.url + "/hub/login")
    page.locator("#username_input").fill(username)
    page.locator("#password_input").fill(password)
    page.locator("#login_submit").click()
    page.wait_for_url("**/hub/home")
