"""Helpers shared by the console's browser tests and the bench: Chromium's settings, hubs
whose servers run locally (tests/harness/minihpc.py Hub) and signing in from a page."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from ..harness.minihpc import PASSWORD, REPO, Hub

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
# For the tests of the page itself (grid, roles, JS/no-JS start and stop, login): the
# hub starts jupyterhub-singleuser locally. SSH and Slurm cells: test_console_hpc.py.
LOCAL_SPAWNER = "jupyterhub.spawner.SimpleLocalProcessSpawner"


def local_hub(workdir: Path, values: dict[str, Any], traits: dict[str, dict[str, Any]] | None = None) -> Hub:
    """A hub (not started yet) whose servers are local processes, stopped with the hub: the
    loader's console and authenticators, JupyterHub's local spawner in place of hpchub's."""
    local = {"JupyterHub": {"spawner_class": LOCAL_SPAWNER, "cleanup_servers": True}}
    for cls, more in (traits or {}).items():
        local[cls] = {**local.get(cls, {}), **more}
    return Hub(workdir, copy.deepcopy(values), traits=local)


def start_hub(tmp_path_factory, name: str, values: dict[str, Any], **kw: Any) -> Hub:
    return local_hub(tmp_path_factory.mktemp(name), values, **kw).start()


def login(page, hub: Hub, username: str, password: str = PASSWORD) -> None:
    """Sign in with the dev authenticator's form; the console is where it lands."""
    page.goto(hub.public + "/hub/login")
    page.locator("#username_input").fill(username)
    page.locator("#password_input").fill(password)
    page.locator("#login_submit").click()
    page.wait_for_url("**/hub/home")


def landed_on_server(page, user: str, server: str) -> None:
    """The start page sends the browser to the server once it is up: wait for that before
    going elsewhere (a goto while it is pending is interrupted by its redirect)."""
    page.wait_for_url(re.compile(rf"/user/{user}/{server}/"), timeout=180_000)


def sshproxy_login(page, hub: Hub, username: str, password: str, otp: str) -> None:
    """Fill in and send the password + OTP form (what follows is the test's to check)."""
    page.goto(hub.public + "/hub/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password:").fill(password)
    page.get_by_label("One-time password (OTP)").fill(otp)
    page.get_by_role("button", name="Sign in").click()
