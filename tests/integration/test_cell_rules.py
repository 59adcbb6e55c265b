"""Cell rules (groups, maintenance, allocations) hold on every entry point, not only in the
console (issue 8, hole 3): a user who calls the REST API or JupyterHub's own /hub/spawn
for a cell the console shows disabled gets 403 with the reason, and nothing reaches the
login node's sshd or Slurm.

A hub of its own on the session's mini HPC center, signing users in with password + OTP at
a real key service (tests/idp/keyservice.py) whose answer carries the groups and
allocations, as a site's would; the login node trusts the key service's CA.
"""

from __future__ import annotations

import copy
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import asyncssh
import pytest
import requests

from tests.harness import minihpc
from tests.harness.loop import LoopThread
from tests.harness.values import add_cell
from tests.idp import keyservice

pytestmark = pytest.mark.integration

ACCOUNTS = {
    # A member of the staff group with an allocation for every partition.
    "hpcalice": keyservice.Account(
        "pw-a",
        "111111",
        groups=["hpcstaff"],
        allocations=[{"account": "m1", "partitions": ["debug", "long"]}],
    ),
    # No group; an allocation that may use the long partition only.
    "hpcbob": keyservice.Account("pw-b", "222222", allocations=[{"account": "m2", "partitions": ["long"]}]),
    # No group and no allocation at all.
    "hpccarol": keyservice.Account("pw-c", "333333", allocations=[]),
}
MAINTENANCE = "Closed HPC is down for its file system upgrade until Friday."


@dataclass
class RulesHub:
    hub: minihpc.Hub
    # Its own login node: the session hub's polls of other tests' servers would count as
    # SSH sessions on a shared one.
    sshd: minihpc.SSHD

    def session(self, user: str) -> requests.Session:
        """Signed in through the hub's login form, as a browser would be."""
        acct = ACCOUNTS[user]
        return self.hub.session_of(user, acct.password, acct.otp)

    def token(self, user: str) -> str:
        s = self.session(user)
        r = s.post(
            f"{self.hub.api}/users/{user}/tokens",
            json={"note": "cell rules test"},
            headers={"X-XSRFToken": s.cookies["_xsrf"]},
            timeout=30,
        )
        assert r.status_code in (200, 201), r.text
        return r.json()["token"]

    def start(self, user: str, cell: str) -> requests.Response:
        """The REST start, with the user's own token (what a script of theirs would send)."""
        return requests.post(
            f"{self.hub.api}/users/{user}/servers/{cell}",
            json={"user_options": {}},
            headers={"Authorization": f"token {self.token(user)}"},
            timeout=60,
        )


@pytest.fixture(scope="module")
def rules_hub(slurm: minihpc.Slurm) -> Iterator[RulesHub]:
    minihpc.ensure_venv()
    workdir = minihpc.make_workdir()
    loop = LoopThread()
    sshd = minihpc.SSHD(workdir)
    sshd.prepare(slurm.conf)
    sshd.start()
    svc = keyservice.KeyService(ACCOUNTS, fmt="json", ca=asyncssh.read_private_key(str(sshd.ca_key)))
    server, url = loop.call(keyservice.start, svc)
    values = minihpc.test_values(sshd, [("127.0.0.1", sshd.port)])
    values["auth"] = {"type": "sshproxy", "allowAllUsers": True, "sshproxy": {"url": url}}
    # The only way onto the login node is the key and certificate from the login.
    values["sshCA"] = {"enabled": False}
    values.pop("identity")  # the service account's lookup needs the hub's CA
    add_cell(
        values, "mini-staff", {"backend": "ssh", "groups": ["hpcstaff"]}, {"title": "Staff node", "order": 4}
    )
    mini = values["systems"]["mini"]
    closed = copy.deepcopy(mini)
    closed.update(displayName="Closed HPC", maintenance={"enabled": True, "message": MAINTENANCE})
    closed["levels"] = {"shared": {"backend": "ssh"}}
    values["systems"]["closed"] = closed
    hub = minihpc.Hub(workdir, values, workdir / "no-ca")
    try:
        hub.start()
        yield RulesHub(hub, sshd)
        hub.stop_all_servers(ACCOUNTS)
    finally:
        hub.stop()
        sshd.stop()
        loop.call(server.stop)
        loop.close()
        shutil.rmtree(workdir, ignore_errors=True)


# (user, cell, what the refusal says)
REFUSED = [
    ("hpcbob", "mini-staff", "needs membership in hpcstaff"),
    ("hpcalice", "closed-shared", MAINTENANCE),
    ("hpcbob", "mini-exclusive", "None of your allocations may use the debug partition"),
    ("hpccarol", "mini-exclusive", "You have no allocation to charge on Mini HPC"),
    ("hpccarol", "mini-configurable", "You have no allocation to charge on Mini HPC"),
]


def jobs(slurm: minihpc.Slurm, user: str) -> list[str]:
    return [j["id"] for j in slurm.squeue(user)]


def nothing_ran(
    rules: RulesHub, slurm: minihpc.Slurm, user: str, cell: str, sessions: int, before: list[str]
):
    model = rules.hub.server_model(user, cell)
    assert model is None or not (model.get("ready") or model.get("pending")), model
    assert rules.sshd.sessions(user) == sessions, f"an SSH command ran for {user}'s refused {cell}"
    assert jobs(slurm, user) == before, "a job was submitted for a refused start"


@pytest.mark.parametrize(("user", "cell", "reason"), REFUSED)
def test_rest_api_refuses_a_cell_the_rules_forbid(
    rules_hub: RulesHub, slurm: minihpc.Slurm, user: str, cell: str, reason: str
) -> None:
    sessions, before = rules_hub.sshd.sessions(user), jobs(slurm, user)
    r = rules_hub.start(user, cell)
    assert r.status_code == 403, f"{r.status_code} {r.text}"
    assert reason in r.json()["message"]
    nothing_ran(rules_hub, slurm, user, cell, sessions, before)


@pytest.mark.parametrize(("user", "cell", "reason"), REFUSED)
def test_hub_spawn_page_refuses_a_cell_the_rules_forbid(
    rules_hub: RulesHub, slurm: minihpc.Slurm, user: str, cell: str, reason: str
) -> None:
    s = rules_hub.session(user)
    sessions, before = rules_hub.sshd.sessions(user), jobs(slurm, user)
    url = f"{rules_hub.hub.public}/hub/spawn/{user}/{cell}"
    # GET starts a fixed cell at once (no form); POST is the form's submit.
    form = {"_xsrf": s.cookies["_xsrf"]}
    if cell.endswith("-configurable"):
        form["time"] = "00:10:00"
    for r in (s.get(url, timeout=60), s.post(url, data=form, timeout=60)):
        assert r.status_code == 403, f"{r.request.method} {url}: {r.status_code} {r.text[:500]}"
        assert reason in re.sub(r"\s+", " ", r.text.replace("&#39;", "'"))
        nothing_ran(rules_hub, slurm, user, cell, sessions, before)


def test_the_same_rules_let_a_member_start_the_cell(rules_hub: RulesHub) -> None:
    """Positive control: the refusals above are the rules, not a broken cell or login."""
    r = rules_hub.start("hpcalice", "mini-staff")
    assert r.status_code in (201, 202), r.text
    rules_hub.hub.wait_ready("hpcalice", "mini-staff")
    rules_hub.hub.wait_answering("hpcalice", "mini-staff")
    rules_hub.hub.stop_server("hpcalice", "mini-staff")
