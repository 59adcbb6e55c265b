"""Bad user options through the REST API: 400 naming the field, and nothing reached the
supercomputer — no SSH command ran for the user and no job was submitted."""

from __future__ import annotations

import pytest

from tests.harness import minihpc

pytestmark = pytest.mark.integration

USER = "hpccarol"


def rows(hub: minihpc.Hub, user: str) -> dict:
    return hub.request("GET", f"/users/{user}?include_stopped_servers=1").json()["servers"]


@pytest.mark.parametrize(
    ("server", "options", "field"),
    [
        ("mini-configurable", {"account": "; rm -rf ~"}, "account"),
        ("mini-configurable", {"reservation": "$(touch /tmp/hpchub-pwned)"}, "reservation"),
        ("mini-configurable", {"extra_directives": ["--mem=1G\n#SBATCH --wrap=id"]}, "extra_directives"),
        ("mini-configurable", {"partition": "debug", "time": "05:00:00"}, "time"),
        ("mini-configurable", {"partition": "nosuch"}, "partition"),
        ("mini-configurable", {"nodes": -1}, "nodes"),
        ("mini-shared", {"startup_script": "~/x; rm -rf ~"}, "startup_script"),
        ("mini-exclusive", {"nodes": 1}, "nodes"),  # fixed by the level
        ("impatient-exclusive", {"email_on_start": True}, "email_on_start"),  # turned off
    ],
)
def test_bad_options_are_refused_before_anything_runs(
    hub: minihpc.Hub, sshd: minihpc.SSHD, slurm: minihpc.Slurm, server: str, options: dict, field: str
) -> None:
    sessions = sshd.sessions(USER)
    r = hub.start_server(USER, server, options)
    assert r.status_code == 400, r.text
    assert field in r.json()["message"]
    assert hub.server_model(USER, server) is None
    assert slurm.squeue(USER) == []
    assert sshd.sessions(USER) == sessions, "an SSH command ran for a refused spawn"


def test_unknown_server_names_are_404_and_leave_no_row(hub: minihpc.Hub, sshd: minihpc.SSHD) -> None:
    # A user with no server rows yet: JupyterHub checks named_server_limit_per_user
    # (= number of cells) before the dispatcher sees the name.
    user = "hpcnobody"
    hub.ensure_user(user)
    for name in ("mini-gpu", "nosuch-shared", "mini-gpu", "mini", "spin-shared"):
        r = hub.start_server(user, name)
        assert r.status_code == 404, r.text
        # Refused names do not linger and fill the user's named-server quota.
        minihpc.wait_for(lambda n=name: n not in rows(hub, user), 5, f"the row of {name} to go")
    assert sshd.sessions(user) == 0


def test_a_line_break_in_licenses_cannot_change_the_job_slurm_receives(
    hub: minihpc.Hub, sshd: minihpc.SSHD, slurm: minihpc.Slurm
) -> None:
    """Issue 8, hole 6: ``scratch:\\n7`` once ended the ``#SBATCH --licenses`` line early, so
    every later directive (here the comment) was dropped from the job Slurm received."""
    after = ["--comment=hpchub-after-licenses"]
    sessions = sshd.sessions(USER)
    r = hub.start_server(USER, "mini-configurable", {"licenses": ["scratch:\n7 "], "extra_directives": after})
    assert r.status_code == 400, r.text
    assert "licenses[0]" in r.json()["message"]
    assert slurm.squeue(USER) == []
    assert sshd.sessions(USER) == sessions, "an SSH command ran for a refused spawn"
    # Positive control: the same request written plainly reaches Slurm whole, normalised.
    r = hub.start_server(
        USER, "mini-configurable", {"licenses": [" scratch : 2 "], "extra_directives": after}
    )
    assert r.status_code in (201, 202), r.text
    try:
        hub.wait_ready(USER, "mini-configurable")
        (job,) = slurm.squeue(USER)
        out = minihpc.run("scontrol", "show", "job", "-d", job["id"], env=slurm.env).stdout
        assert "Licenses=scratch:2" in out and "Comment=hpchub-after-licenses" in out, out
    finally:
        hub.stop_server(USER, "mini-configurable")
    assert slurm.squeue(USER) == []
