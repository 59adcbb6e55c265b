"""The console in a real browser: what scientists see and press."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .helpers import REPO, login

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_logged_out_visitor_reads_user_guide_and_changelog_from_the_login_page(browser, dummy_hub, artifacts):
    page = browser.new_page()
    page.goto(dummy_hub.public + "/hub/login")
    page.get_by_role("link", name="User guide").click()
    expect(page).to_have_url(re.compile(r"/hub/docs/user-guide$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("User guide")
    page.screenshot(path=artifacts / "docs-user-guide.png", full_page=True)
    # the guide's own links work for visitors too
    expect(page.get_by_role("link", name="changelog").first).to_have_attribute("href", "/hub/docs/changelog")
    page.goto(dummy_hub.public + "/hub/login")
    page.get_by_role("link", name="Changelog").click()
    expect(page).to_have_url(re.compile(r"/hub/docs/changelog$"))
    if (REPO / "docs" / "changelog.md").exists():  # docs/changelog.md is the lead's file
        expect(page.get_by_role("heading", level=1)).to_contain_text("Changelog")
    page.close()


def test_console_shows_systems_as_rows_and_levels_as_columns(browser, dummy_hub, artifacts):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    login(page, dummy_hub, "alice")
    grid = page.locator("table.hpc-grid")
    headers = grid.locator("thead th[scope=col]").all_inner_texts()
    assert headers == [
        "Shared CPU Node",
        "Exclusive CPU Node",
        "Exclusive GPU Node",
        "Configurable",
    ]
    rows = [t.strip().split("\n")[0] for t in grid.locator("tbody th[scope=row]").all_inner_texts()]
    assert rows[0] == "Mini HPC" and rows[-1] == "Spin"
    expect(grid.locator("tfoot")).to_contain_text("outside the batch queues")
    expect(grid.locator("tfoot")).to_contain_text("Use cases")
    # the maintenance system: banner, and its cell cannot be started
    expect(page.locator(".hpc-maintenance")).to_contain_text("Old HPC is in scheduled maintenance")
    old = page.locator("#cell-old-shared")
    expect(old).to_contain_text("Unavailable")
    expect(old.locator(".hpc-start")).to_have_count(0)
    # Spin offers only the shared level
    expect(page.locator("#cell-spin-shared [data-js-start]")).to_be_visible()
    expect(page.locator("tr[data-system=spin] td.hpc-none")).to_have_count(3)
    # ... and says whose account it runs as: no identity source here, so spin.uid, scratch HOME.
    expect(page.locator("#cell-spin-shared .hpc-runs-as")).to_have_text(
        "Runs as a shared account (uid 1000), not yours; HOME is a scratch directory, deleted when the server stops."
    )
    expect(page.locator("#cell-mini-shared .hpc-runs-as")).to_have_count(0)
    page.screenshot(path=artifacts / "console-alice.png", full_page=True)
    page.close()


def test_two_users_in_different_groups_see_the_gpu_cell_differently(browser, dummy_hub):
    alice = browser.new_page()
    login(alice, dummy_hub, "alice")
    expect(alice.locator("#cell-mini-gpu").get_by_role("link", name=re.compile("Start"))).to_be_visible()
    bob_ctx = browser.new_context()
    bob = bob_ctx.new_page()
    login(bob, dummy_hub, "bob")
    gpu = bob.locator("#cell-mini-gpu")
    expect(gpu).to_contain_text("Unavailable")
    expect(gpu).to_contain_text("Needs membership in gpu-users")
    expect(gpu.locator(".hpc-start")).to_have_count(0)
    # ...and the server-side form refuses him too, whatever the page shows
    resp = bob.goto(dummy_hub.public + "/hub/console/options/mini-gpu")
    assert resp.status == 403
    expect(bob.locator("body")).to_contain_text("gpu-users")
    alice.close()
    bob_ctx.close()


def test_configurable_form_refuses_a_time_over_the_limit_next_to_the_field(browser, dummy_hub, artifacts):
    ctx = browser.new_context()
    page = ctx.new_page()
    login(page, dummy_hub, "carol")
    page.locator("#cell-mini-configurable").get_by_role("link", name=re.compile("Configure")).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Mini HPC · Configurable")
    page.get_by_label("Partition").select_option("debug")
    page.get_by_label("Time limit").fill("05:00:00")
    page.get_by_role("button", name="Start").click()
    field = page.locator("[data-field=time]")
    expect(field.locator(".hpc-error")).to_contain_text("over the limit of partition 'debug' (02:00:00)")
    expect(page.get_by_label("Time limit")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#hpc-form-error")).to_contain_text("Nothing was started")
    # what the user typed is kept
    expect(page.get_by_label("Time limit")).to_have_value("05:00:00")
    page.screenshot(path=artifacts / "configurable-time-refused.png", full_page=True)
    # nothing was submitted: the hub has no such server for carol
    user = dummy_hub.rest("GET", "/users/carol")
    assert "mini-configurable" not in user["servers"]
    ctx.close()


def test_start_open_and_stop_a_cell_from_the_console(browser, dummy_hub, singleuser, artifacts):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    login(page, dummy_hub, "dave")
    cell = page.locator("#cell-mini-shared")
    cell.get_by_role("link", name="Start Mini HPC, Shared CPU Node").click()
    expect(cell.locator(".hpc-state")).to_have_text(re.compile("Starting|Running"))
    expect(cell.locator(".hpc-state")).to_have_text("Running", timeout=120_000)
    page.screenshot(path=artifacts / "console-running.png", full_page=True)
    assert dummy_hub.rest("GET", "/users/dave")["servers"]["mini-shared"]["ready"] is True
    # Open: the notebook UI loads through the proxy
    cell.get_by_role("link", name="Open Mini HPC, Shared CPU Node").click()
    expect(page).to_have_url(re.compile(r"/user/dave/mini-shared/"), timeout=30_000)
    if (singleuser.parent / "jupyter-lab").exists():
        expect(page.locator("#jp-main-dock-panel, .jp-LabShell").first).to_be_visible(timeout=60_000)
    else:  # jupyter_server without a UI extension answers with its own page
        expect(page.get_by_text("A Jupyter Server is running.")).to_be_visible(timeout=60_000)
    page.screenshot(path=artifacts / "notebook-open.png")
    page.goto(dummy_hub.public + "/hub/home")
    cell = page.locator("#cell-mini-shared")
    cell.get_by_role("button", name="Stop Mini HPC, Shared CPU Node").click()
    expect(cell.locator(".hpc-state")).to_have_text("Not running", timeout=60_000)
    assert "mini-shared" not in dummy_hub.rest("GET", "/users/dave")["servers"]
    ctx.close()


def test_console_is_usable_with_the_keyboard_and_without_javascript(browser, dummy_hub):
    ctx = browser.new_context(java_script_enabled=False)
    # Without JavaScript, the stop form's answer waits for the stop itself.
    ctx.set_default_timeout(60_000)
    page = ctx.new_page()
    login(page, dummy_hub, "erin")
    # Start is a link to the standard spawn page; reach it with Tab, press Enter
    start = page.get_by_role("link", name="Start Spin, Shared CPU Node")
    start.focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/(spawn-pending|user)/erin/spin-shared"), timeout=30_000)
    deadline_ok = False
    for _ in range(240):
        if dummy_hub.rest("GET", "/users/erin")["servers"].get("spin-shared", {}).get("ready"):
            deadline_ok = True
            break
        page.wait_for_timeout(500)
    assert deadline_ok, "server did not become ready"
    page.goto(dummy_hub.public + "/hub/home")
    cell = page.locator("#cell-spin-shared")
    expect(cell.locator(".hpc-state")).to_have_text("Running")
    # Stop is a plain form post
    stop = cell.get_by_role("button", name="Stop Spin, Shared CPU Node")
    stop.focus()
    # The page is already at /hub/home: wait for the post's own answer (a redirect back
    # there once the stop is done), or the goto below races it.
    with page.expect_navigation(url="**/hub/home"):
        page.keyboard.press("Enter")
    for _ in range(240):
        if "spin-shared" not in dummy_hub.rest("GET", "/users/erin")["servers"]:
            break
        page.wait_for_timeout(500)
    else:
        raise AssertionError("server did not stop")
    page.goto(dummy_hub.public + "/hub/home")
    expect(page.locator("#cell-spin-shared .hpc-state")).to_have_text("Not running")
    ctx.close()


def test_console_posts_without_the_xsrf_token_are_refused(browser, dummy_hub):
    ctx = browser.new_context()
    page = ctx.new_page()
    login(page, dummy_hub, "frank")
    for path in ("/hub/console/stop/mini-shared", "/hub/console/options/mini-configurable"):
        resp = page.request.post(dummy_hub.public + path, form={"time": "00:10:00"}, max_redirects=0)
        assert resp.status == 403, (path, resp.status)
    assert dummy_hub.rest("GET", "/users/frank")["servers"] == {}
    # unknown cells are refused, not created
    assert page.request.get(dummy_hub.public + "/hub/console/options/nope-nope").status == 404
    ctx.close()


def test_fixed_level_offers_an_earlier_environment_version(browser, dummy_hub):
    ctx = browser.new_context()
    page = ctx.new_page()
    login(page, dummy_hub, "gail")
    page.get_by_role("link", name="Options for starting Mini HPC, Shared CPU Node").click()
    version = page.get_by_label("Environment version")
    expect(version).to_have_value("2026.11")
    # a fixed level: no partition or time to choose
    expect(page.get_by_label("Time limit")).to_have_count(0)
    version.select_option("2026.05")
    page.get_by_role("button", name="Start").click()
    page.wait_for_url(re.compile(r"/(spawn-pending|user)/gail/mini-shared"), timeout=30_000)
    server = dummy_hub.rest("GET", "/users/gail")["servers"]["mini-shared"]
    assert server["user_options"] == {"version": "2026.05"}
    dummy_hub.rest("DELETE", "/users/gail/servers/mini-shared")
    ctx.close()
