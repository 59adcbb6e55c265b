"""What the uninstall hook prints when it cannot finish: each server and unconfirmed stop
with the command that ends it by hand, and that command really ends it."""

from __future__ import annotations

import os
import subprocess
import time

from hpchub.leftovers import cancellation_json
from hpchub.reaper import by_hand
from hpchub.reaper_table import Cancellation
from hpchub.uninstall import Names, leftovers_report


def test_report_names_every_server_and_held_stop_with_how_to_end_it() -> None:
    held = [
        Cancellation(
            "alice", "mini-exclusive", "mini", "slurm", "hpc-login:22", "r1", "stop not confirmed", "41"
        ),
        Cancellation("bob", "mini-exclusive", "mini", "slurm", "hpc-login:22", "r2", "sbatch answer lost"),
        Cancellation(
            "carol", "mini-shared", "mini", "ssh", "hpc-login:22", "r3", "host unreachable", pid=777
        ),
    ]
    servers = [
        {"user": "dave", "server": "spin-shared", "backend": "kubernetes", "state": "stopping", "host": ""},
        {
            "user": "erin",
            "server": "mini-exclusive",
            "backend": "slurm",
            "state": "running",
            "job_id": "52",
            "by_hand": "scancel 52   (on a login node of mini, as erin or root)",
        },
    ]
    left = {"servers": servers, "cancellations": [cancellation_json(r) for r in held]}
    out = leftovers_report(left, Names("site", "jhub", "site-hpchub-stop-servers", "site-hpchub-hub"))
    assert out.startswith("UNINSTALL STOPPED")
    assert "kubectl --namespace jhub logs job/site-hpchub-stop-servers" in out
    assert "by hand: scancel 41   (on a login node of mini, as alice or root)" in out
    # sbatch's answer was lost: the job is known by its name only.
    assert "by hand: scancel --name=hpchub-r2 --user=bob" in out
    assert "by hand: kill -TERM -777; sleep 5; kill -KILL -777   (on hpc-login, as carol or root)" in out
    assert "delete pod -l hub.jupyter.org/username=dave,hub.jupyter.org/servername=spin-shared" in out
    assert "by hand: scancel 52" in out
    assert "helm uninstall site --namespace jhub --no-hooks" in out
    assert "kubectl --namespace jhub delete job site-hpchub-stop-servers" in out


def group_members(pgid: int) -> list[str]:
    """Live (not zombie: orphans wait for init to reap them) processes of a group."""
    ps = subprocess.run(["ps", "-eo", "pid=,pgid=,stat="], capture_output=True, text=True, check=True)
    return [
        line
        for line in ps.stdout.splitlines()
        if line.split()[1] == str(pgid) and not line.split()[2].startswith("Z")
    ]


def test_the_by_hand_command_for_a_login_node_notebook_ends_its_whole_process_group() -> None:
    # A notebook leads its process group; a kernel that ignores TERM is in it too.
    leader = subprocess.Popen(
        ["sh", "-c", "trap '' TERM; sleep 300 & sleep 300 & wait"], start_new_session=True
    )
    try:
        row = Cancellation("carol", "mini-shared", "mini", "ssh", "hpc-login:22", "r3", pid=leader.pid)
        command = by_hand(row).split("   (")[0]
        subprocess.run(["sh", "-c", command], check=False, timeout=30)
        leader.wait(timeout=10)
        time.sleep(0.2)
        assert not group_members(leader.pid), f"{command!r} left processes of group {leader.pid}"
    finally:
        try:
            os.killpg(leader.pid, 9)
        except ProcessLookupError:
            pass
