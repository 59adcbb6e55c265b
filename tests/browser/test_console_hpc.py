"""The console against the real mini HPC center (tests/harness: sshd, Slurm, hub, proxy):
SSH and Slurm cells started, queued, opened and stopped from a real browser."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlencode

import pytest
from playwright.sync_api import expect

from ..harness import minihpc
from ..harness.tlsca import TestCA
from ..harness.values import set_level
from ..idp import keyservice
from .helpers import landed_on_server, login, sshproxy_login

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]

# No skip when sshd or Slurm are missing: the harness fails naming what it could not start.

ADMIN = "hpcadmin"  # hub.adminUsers of the center's hub; an account on the hub only
REPO = Path(__file__).resolve().parents[2]

LEVEL_TEXTS = {
    "shared": (
        "A login node shared with other users, outside the batch queues.",
        "Looking at data, plots, editing, managing jobs.",
    ),
    "exclusive": (
        "A compute node by itself in an interactive Slurm job.",
        "Memory- or compute-intensive analysis on one node.",
    ),
    "configurable": (
        "Any partition, QOS, node count and time your allocations allow.",
        "Large jobs, reservations, non-default accounts.",
    ),
}


QUOTA_FLAG = f".hpchub-console-over-quota-{secrets.token_hex(4)}"  # unique per run


def add_console_texts(values: dict) -> None:
    """Resources/use-case texts and a second system in maintenance, as a site would have."""
    for name, (resources, use_cases) in LEVEL_TEXTS.items():
        set_level(values, name, resources=resources, useCases=use_cases)
    mini = values["systems"]["mini"]
    # a quota check that fails while a flag file exists in the user's home
    mini.setdefault("preSpawnChecks", {})["quota"] = {
        "command": ["test", "!", "-e", QUOTA_FLAG],
        "message": "Your home directory is over quota; free some space before starting.",
    }
    values["systems"]["mini"].setdefault("order", 1)
    values["systems"]["backup"] = {
        "displayName": "Backup HPC",
        "order": 2,
        "maintenance": {"enabled": True, "message": "Backup HPC is in scheduled maintenance until 18:00."},
        "ssh": dict(mini["ssh"]),
        "singleuser": dict(mini["singleuser"]),
        "levels": {"shared": {"backend": "ssh"}},
    }


@pytest.fixture(scope="module")
def center():
    """sshd + Slurm + hub + proxy for this module only (torn down before other modules)."""
    workdir = minihpc.make_workdir()
    started: list = []
    try:
        minihpc.ensure_users()
        slurm = minihpc.Slurm(workdir)
        slurm.prepare()
        slurm.start()
        started.append(slurm)
        minihpc.ensure_venv()
        sshd = minihpc.SSHD(workdir)
        sshd.prepare(slurm.conf)
        sshd.start()
        started.append(sshd)
        values = minihpc.test_values(sshd, [("127.0.0.1", sshd.port)])
        add_console_texts(values)
        values["hub"]["adminUsers"] = [ADMIN]
        hub = minihpc.Hub(workdir, values, sshd.ca_key)
        hub.start()
        started.append(hub)
        yield SimpleNamespace(hub=hub, slurm=slurm, sshd=sshd, workdir=workdir)
        hub.stop_all_servers(minihpc.USERS)
    finally:
        for comp in reversed(started):
            comp.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def server_pids(hub, user: str, server: str) -> list[int]:
    """PIDs of `user`'s processes serving `server` for this hub (other test runs may share
    the machine and the test users, so match the hub's API URL and the server name)."""
    uid = int(subprocess.run(["id", "-u", user], capture_output=True, text=True, check=True).stdout)
    api = f"127.0.0.1:{hub.hub_port}/hub/api".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if proc.stat().st_uid != uid:
                continue
            env = (proc / "environ").read_bytes()
        except OSError:
            continue
        if api in env and f"JUPYTERHUB_SERVER_NAME={server}".encode() in env.split(b"\0"):
            pids.append(int(proc.name))
    return pids


def test_ssh_cell_starts_on_the_login_node_opens_and_stops(browser, center, artifacts):
    hub = center.hub
    ctx = browser.new_context(viewport={"width": 1300, "height": 800})
    page = ctx.new_page()
    login(page, hub, "hpcalice")
    cell = page.locator("#cell-mini-shared")
    cell.get_by_role("link", name=re.compile("^Start Mini HPC")).click()
    expect(cell.locator(".hpc-state")).to_have_text("Running", timeout=150_000)
    expect(cell.locator(".hpc-detail")).to_contain_text("127.0.0.1")
    model = hub.server_model("hpcalice", "mini-shared")
    assert model["ready"]
    assert server_pids(hub, "hpcalice", "mini-shared"), "the notebook process should be found"
    # Open: the user's own server answers through the proxy, in the browser
    with page.expect_response(re.compile(r"/user/hpcalice/mini-shared/")) as first:
        cell.get_by_role("link", name=re.compile("^Open Mini HPC")).click()
    assert first.value.status < 400
    expect(page).to_have_url(re.compile(r"/user/hpcalice/mini-shared/"), timeout=30_000)
    if (minihpc.VENV / "bin" / "jupyter-lab").exists():
        expect(page.locator("#jp-main-dock-panel, .jp-LabShell").first).to_be_visible(timeout=60_000)
    else:  # the harness's login-node venv has jupyter_server without a UI extension
        expect(page.get_by_text("A Jupyter Server is running.")).to_be_visible(timeout=30_000)
    page.screenshot(path=artifacts / "ssh-server-open.png")
    page.goto(hub.public + "/hub/home")
    cell = page.locator("#cell-mini-shared")
    cell.get_by_role("button", name=re.compile("^Stop Mini HPC")).click()
    expect(cell.locator(".hpc-state")).to_have_text("Not running", timeout=120_000)
    assert hub.server_model("hpcalice", "mini-shared") is None
    # no notebook process of this server is left on the "login node"
    minihpc.wait_for(lambda: not server_pids(hub, "hpcalice", "mini-shared"), 15, "notebook process gone")
    ctx.close()


def test_slurm_cell_is_queued_with_the_reason_while_the_partition_is_full(browser, center, artifacts):
    hub, slurm = center.hub, center.slurm
    # Fill the partition: one exclusive job holds the only node.
    with slurm.fill_node() as blocker:
        ctx = browser.new_context(viewport={"width": 1300, "height": 760})
        page = ctx.new_page()
        login(page, hub, "hpcbob")
        # an SSH server next to it, so the screenshot shows both kinds of cells
        shared = page.locator("#cell-mini-shared")
        shared.get_by_role("link", name=re.compile("^Start Mini HPC")).click()
        expect(shared.locator(".hpc-state")).to_have_text("Running", timeout=150_000)

        cell = page.locator("#cell-mini-exclusive")
        cell.get_by_role("link", name=re.compile("^Start Mini HPC")).click()
        expect(cell.locator(".hpc-state")).to_have_text("Queued", timeout=120_000)
        expect(cell.locator(".hpc-detail")).to_contain_text("Resources", timeout=30_000)
        # the server-side page says the same after a reload (no JavaScript needed to know)
        page.reload()
        cell = page.locator("#cell-mini-exclusive")
        expect(cell.locator(".hpc-state")).to_have_text("Queued")
        expect(cell.locator(".hpc-detail")).to_contain_text("Pending: Resources")
        page.screenshot(path=artifacts / "console-queued.png", full_page=True)
        jobs = slurm.squeue("hpcbob")
        assert [j["state"] for j in jobs] == ["PENDING"]

        # free the partition: the cell turns running, with the node and the time left
        slurm.scancel(blocker)
        expect(cell.locator(".hpc-state")).to_have_text("Running", timeout=150_000)
        expect(cell.locator(".hpc-detail")).to_contain_text("left", timeout=15_000)
        page.screenshot(path=artifacts / "console-slurm-running.png", full_page=True)

        cell.get_by_role("button", name=re.compile("^Stop Mini HPC")).click()
        expect(cell.locator(".hpc-state")).to_have_text("Not running", timeout=150_000)
        minihpc.wait_for(lambda: slurm.squeue("hpcbob") == [], 30, "hpcbob's job gone from squeue")
        page.locator("#cell-mini-shared").get_by_role("button", name=re.compile("^Stop Mini HPC")).click()
        expect(page.locator("#cell-mini-shared .hpc-state")).to_have_text("Not running", timeout=120_000)
        ctx.close()


def test_configurable_form_refuses_time_over_the_limit_and_submits_nothing(browser, center, artifacts):
    hub, slurm = center.hub, center.slurm
    ctx = browser.new_context()
    page = ctx.new_page()
    login(page, hub, "hpccarol")
    page.locator("#cell-mini-configurable").get_by_role("link", name=re.compile("^Configure")).click()
    page.get_by_label("Partition").select_option("debug")
    page.get_by_label("Time limit").fill("03:00:00")
    page.get_by_label("Extra #SBATCH options").fill("--mem=1G")
    page.get_by_role("button", name="Start").click()
    error = page.locator("[data-field=time] .hpc-error")
    expect(error).to_contain_text("over the limit of partition 'debug' (01:00:00)")
    expect(page.get_by_label("Time limit")).to_have_attribute(
        "aria-describedby", re.compile("opt-time-error")
    )
    page.screenshot(path=artifacts / "configurable-refused-hpc.png", full_page=True)
    assert slurm.squeue("hpccarol") == []
    assert hub.server_model("hpccarol", "mini-configurable") is None
    # the corrected form starts the job, and the form remembers the options next time
    page.get_by_label("Time limit").fill("00:20:00")
    page.get_by_role("button", name="Start").click()
    landed_on_server(page, "hpccarol", "mini-configurable")
    minihpc.wait_for(
        lambda: (hub.server_model("hpccarol", "mini-configurable") or {}).get("ready"), 90, "ready"
    )
    hub.stop_server("hpccarol", "mini-configurable")
    assert slurm.squeue("hpccarol") == []
    page.goto(hub.public + "/hub/console/options/mini-configurable")
    expect(page.get_by_label("Time limit")).to_have_value("00:20:00")
    expect(page.get_by_label("Extra #SBATCH options")).to_have_value("--mem=1G")
    # JupyterHub's own spawn page (no JavaScript needed) draws the same fields
    page.goto(hub.public + "/hub/spawn/hpccarol/mini-configurable")
    expect(page.get_by_label("Time limit")).to_have_value("00:20:00")
    ctx.close()


def test_failed_pre_spawn_check_shows_its_message_in_the_cell(browser, center, artifacts):
    hub = center.hub
    flag = Path("/home/hpccarol") / QUOTA_FLAG
    flag.write_text("")
    try:
        ctx = browser.new_context()
        page = ctx.new_page()
        login(page, hub, "hpccarol")
        cell = page.locator("#cell-mini-shared")
        cell.get_by_role("link", name=re.compile("^Start Mini HPC")).click()
        expect(cell.locator(".hpc-state")).to_have_text("Failed", timeout=120_000)
        expect(cell.locator(".hpc-detail")).to_contain_text("over quota; free some space", timeout=15_000)
        # after a reload the page still says why (the hub keeps the failed spawn's error)
        page.reload()
        cell = page.locator("#cell-mini-shared")
        expect(cell.locator(".hpc-state")).to_have_text("Failed")
        expect(cell.locator(".hpc-detail")).to_contain_text("Mini HPC: Your home directory is over quota")
        expect(cell.locator(".hpc-detail")).not_to_contain_text("HTTP 403")
        page.screenshot(path=artifacts / "console-failed.png", full_page=True)
        # fixed: the failed cell's Relaunch starts it again with the same options
        flag.unlink()
        cell.get_by_role("button", name=re.compile("^Relaunch Mini HPC")).click()
        # Relaunch goes where Start goes: the server, once it is ready.
        expect(page).to_have_url(re.compile(r"/user/hpccarol/mini-shared/"), timeout=150_000)
        page.goto(hub.public + "/hub/home")
        cell = page.locator("#cell-mini-shared")
        expect(cell.locator(".hpc-state")).to_have_text("Running", timeout=30_000)
        cell.get_by_role("button", name=re.compile("^Stop Mini HPC")).click()
        expect(cell.locator(".hpc-state")).to_have_text("Not running", timeout=120_000)
        ctx.close()
    finally:
        flag.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def sshproxy_hub(center, loop_thread):
    """A second hub on the same mini HPC center, logging in with password + OTP at a key
    service whose CA the login node trusts; the hub's own SSH CA is off, so the only way
    onto the login node is the key and certificate from the login. The key service speaks
    HTTPS with a certificate from a private CA made here, which the hub trusts only through
    auth.sshproxy.caBundle (the PEM in values, mounted as a file as the chart does)."""
    import asyncssh

    workdir = minihpc.make_workdir()
    site_ca = TestCA("site CA")
    svc = keyservice.KeyService(
        {"hpcalice": keyservice.Account("pw-alice", "424242")},
        ca=asyncssh.read_private_key(str(center.sshd.ca_key)),
    )
    server, url = loop_thread.call(keyservice.start, svc, site_ca.server_context(workdir / "tls"))
    assert url.startswith("https://")
    values = minihpc.test_values(center.sshd, [("127.0.0.1", center.sshd.port)])
    values["auth"] = {
        "type": "sshproxy",
        "allowAllUsers": True,
        "sshproxy": {"url": url, "caBundle": site_ca.pem},
    }
    values["sshCA"] = {"enabled": False}
    values.pop("identity")  # the service account's lookup needs the hub's CA
    mounted = workdir / "sshproxy-ca" / "ca.pem"  # the chart's ConfigMap mount
    mounted.parent.mkdir()
    mounted.write_text(site_ca.pem)
    hub = minihpc.Hub(workdir, values, workdir / "no-ca", extra_env={"HPCHUB_SSHPROXY_CA_FILE": str(mounted)})
    try:
        hub.start()
        yield hub, svc
        hub.stop_all_servers(["hpcalice"])
    finally:
        hub.stop()
        loop_thread.call(server.stop)
        shutil.rmtree(workdir, ignore_errors=True)


def test_password_and_otp_login_reaches_the_login_node_with_the_issued_certificate(browser, sshproxy_hub):
    hub, svc = sshproxy_hub
    ctx = browser.new_context()
    page = ctx.new_page()
    sshproxy_login(page, hub, "hpcalice", "pw-alice", "424242")
    page.wait_for_url("**/hub/home")
    assert svc.requests == ["hpcalice"]
    cell = page.locator("#cell-mini-shared")
    cell.get_by_role("link", name=re.compile("^Start Mini HPC")).click()
    expect(cell.locator(".hpc-state")).to_have_text("Running", timeout=150_000)
    hub.wait_answering("hpcalice", "mini-shared")
    cell.get_by_role("button", name=re.compile("^Stop Mini HPC")).click()
    expect(cell.locator(".hpc-state")).to_have_text("Not running", timeout=120_000)
    ctx.close()


# --- The admin view (/hub/console/admin): every server, with stop, for admins only ---


def admin_row(page, user: str, server: str):
    return page.locator(f"#server-{user}-{server}")


def reload_until(page, check, what: str, timeout: float = 120):
    """The admin view is a server-side page: reload until it shows ``check``."""

    def shown() -> bool:
        page.reload()
        return bool(check())

    minihpc.wait_for(shown, timeout, what, interval=2)


def test_admin_sees_every_server_by_system_level_user_and_stops_a_queued_job(browser, center, artifacts):
    hub, slurm = center.hub, center.slurm
    for user in ("hpcalice", "hpcbob"):
        hub.ensure_user(user)
    r = hub.start_server("hpcalice", "mini-shared")
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("hpcalice", "mini-shared")
    with slurm.fill_node():
        r = hub.start_server("hpcbob", "mini-exclusive")
        assert r.status_code in (201, 202), r.text
        [job] = minihpc.wait_for(
            lambda: [j for j in slurm.squeue("hpcbob") if j["state"] == "PENDING"], 60, "hpcbob's job queued"
        )
        ctx = browser.new_context(viewport={"width": 1300, "height": 700})
        page = ctx.new_page()
        login(page, hub, ADMIN, minihpc.ADMIN_PASSWORD)
        page.get_by_role("link", name="All servers").click()
        expect(page).to_have_url(re.compile(r"/hub/console/admin$"))
        alice = admin_row(page, "hpcalice", "mini-shared")
        bob = admin_row(page, "hpcbob", "mini-exclusive")
        reload_until(
            page, lambda: "Resources" in (bob.locator(".hpc-admin-reason").text_content() or ""), "reason"
        )
        expect(alice.locator("td").nth(0)).to_have_text("Mini HPC")
        expect(alice.locator("td").nth(1)).to_have_text("Shared login node")
        expect(alice.locator(".hpc-admin-user")).to_have_text("hpcalice")
        expect(alice.locator(".hpc-state")).to_have_text("Running")
        expect(alice.locator(".hpc-admin-where")).to_contain_text("127.0.0.1")
        expect(alice.locator(".hpc-admin-age")).not_to_be_empty()
        expect(bob.locator("td").nth(1)).to_have_text("Exclusive node")
        expect(bob.locator(".hpc-state")).to_have_text("Queued")
        expect(bob.locator(".hpc-admin-where")).to_have_text(
            re.compile(rf"^job {job['id']}, sent from 127\.0\.0\.1")
        )
        expect(page.locator(".hpc-admin-summary")).to_contain_text("Mini HPC: 2")
        page.screenshot(path=artifacts / "admin-view.png", full_page=True)

        # Narrowed to queued servers: only bob's job.
        page.get_by_label("State").select_option("queued")
        page.get_by_role("button", name="Show").click()
        expect(page.locator(".hpc-admin-table tbody tr")).to_have_count(1)
        expect(bob).to_be_visible()

        # Stop bob's queued job from here: the job leaves the queue, alice's server stays.
        bob.get_by_role("button", name="Stop mini-exclusive of hpcbob").click()
        minihpc.wait_for(
            lambda: hub.server_model("hpcbob", "mini-exclusive") is None, 90, "bob's server gone"
        )
        minihpc.wait_for(lambda: slurm.squeue("hpcbob") == [], 30, "bob's job gone from squeue")
        page.goto(hub.public + "/hub/console/admin")
        expect(bob).to_have_count(0)
        expect(alice.locator(".hpc-state")).to_have_text("Running")
        assert hub.server_model("hpcalice", "mini-shared")["ready"]
        ctx.close()
    hub.stop_server("hpcalice", "mini-shared")


def test_non_admin_gets_no_admin_view_and_cannot_stop_anothers_server(browser, center):
    hub = center.hub
    hub.ensure_user("hpcalice")
    r = hub.start_server("hpcalice", "mini-shared")
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("hpcalice", "mini-shared")
    ctx = browser.new_context()
    page = ctx.new_page()
    login(page, hub, "hpccarol")
    expect(page.get_by_role("link", name="All servers")).to_have_count(0)
    response = page.goto(hub.public + "/hub/console/admin")
    assert response.status == 403
    expect(page.get_by_text("hpcalice")).to_have_count(0)
    # The stop form posted by hand, with carol's own session and xsrf token.
    xsrf = next(c["value"] for c in ctx.cookies() if c["name"] == "_xsrf")
    r = page.request.post(
        hub.public + "/hub/console/admin/stop/hpcalice/mini-shared",
        form={"_xsrf": xsrf},
        max_redirects=0,
    )
    # JupyterHub refuses a scope held only for one's own servers with 404, the same answer
    # as for a server that does not exist (nothing about alice is revealed).
    assert r.status == 404, r.text()[:300]
    assert hub.server_model("hpcalice", "mini-shared")["ready"]
    hub.wait_answering("hpcalice", "mini-shared")
    ctx.close()
    hub.stop_server("hpcalice", "mini-shared")


def course_repo(workdir: Path, owner: str) -> tuple[Path, str]:
    """A course repository on this machine for nbgitpuller to pull (no network): a bare git
    repository owned by the student (git refuses repositories of other users)."""
    token = secrets.token_hex(3)
    src, bare = workdir / f"course-src-{token}", workdir / f"course-{token}.git"
    minihpc.run("git", "init", "-q", "-b", "main", str(src))
    (src / "hello.txt").write_text("hello from the course\n")
    git = ["git", "-C", str(src), "-c", "user.name=Teacher", "-c", "user.email=teacher@example.org"]
    minihpc.run(*git, "add", "hello.txt")
    minihpc.run(*git, "commit", "-q", "-m", "course material")
    minihpc.run("git", "clone", "-q", "--bare", str(src), str(bare))
    minihpc.run("chown", "-R", owner, str(bare))
    return bare, f"course-{token}"


def test_nbgitpuller_link_goes_through_the_console_to_the_server_the_user_starts(browser, center, artifacts):
    hub, user = center.hub, "hpcalice"
    repo, target = course_repo(center.workdir, user)
    cloned = Path(f"/home/{user}") / target
    query = urlencode(
        {
            "repo": f"file://{repo}",
            "branch": "main",
            "targetpath": target,
            "urlpath": f"api/contents/{target}/hello.txt",
        }
    )
    ctx = browser.new_context(viewport={"width": 1300, "height": 800})
    page = ctx.new_page()
    try:
        login(page, hub, user)
        # An earlier test's clean-up stopped this server with the harness's admin token: the
        # cell shows that ending (with Relaunch, not Start) until the user dismisses it.
        page.goto(hub.public + "/hub/home")
        dismiss = page.locator("#cell-mini-shared").get_by_role("button", name=re.compile("^Dismiss how"))
        if dismiss.count():
            dismiss.click()
            expect(page.locator("#cell-mini-shared .hpc-ended")).to_have_count(0)
        # No server runs: the link waits in the console until the user picks a cell.
        page.goto(f"{hub.public}/hub/user-redirect/git-pull?{query}")
        expect(page).to_have_url(re.compile(r"/hub/console/open/git-pull\?repo="))
        expect(page.locator("#hpc-open-link")).to_contain_text("git-pull")
        page.screenshot(path=artifacts / "console-open-link.png", full_page=True)
        cell = page.locator("#cell-mini-shared")
        cell.get_by_role("link", name=re.compile("^Start Mini HPC")).click()
        # Once the server is ready the link continues into it: nbgitpuller clones the course
        # into the user's home and opens the file it names.
        expect(page).to_have_url(
            re.compile(rf"/user/{user}/mini-shared/api/contents/{target}/hello.txt$"), timeout=180_000
        )
        expect(page.locator("body")).to_contain_text("hello from the course")
        assert (cloned / "hello.txt").read_text() == "hello from the course\n"
        # Exactly one server runs now: a link goes straight to it.
        page.goto(f"{hub.public}/hub/user-redirect/api/contents/{target}/hello.txt")
        expect(page).to_have_url(re.compile(rf"/user/{user}/mini-shared/api/contents/{target}/hello.txt$"))
        # The unnamed default server: a link naming no server, and JupyterHub's spawn page
        # for it, lead to the console with the path kept -- never "No server named ''".
        page.goto(f"{hub.public}/user/{user}/lab/tree/notes.ipynb")
        expect(page.get_by_role("heading", name="Choose a server")).to_be_visible()
        page.get_by_role("button", name="Choose a server").click()
        expect(page).to_have_url(re.compile(r"/hub/console/open/lab/tree/notes.ipynb$"))
        expect(page.locator("#cell-mini-shared .hpc-open")).to_have_attribute(
            "href", f"/user/{user}/mini-shared/lab/tree/notes.ipynb"
        )
        expect(page.get_by_text("No server named")).to_have_count(0)
    finally:
        ctx.close()
        if hub.server_model(user, "mini-shared"):
            hub.stop_server(user, "mini-shared")
        shutil.rmtree(cloned, ignore_errors=True)
