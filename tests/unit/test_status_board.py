"""The status board's logic: coalescing, errors are never "gone", trust in rows.

The remote side is a scripted stand-in for the SSH pool (what squeue/sacct/ps would
print); tests/integration/test_status_board.py runs the same board against the real
sshd and slurmctld and counts slurmctld's RPCs.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Callable, Sequence

import pytest

from hpchub.claims import ClaimRefused
from hpchub.schedulers import TransientSchedulerError
from hpchub.schedulers.slurm import SlurmScheduler
from hpchub.sshpool import Result, SSHError, SSHTarget
from hpchub.status import (
    MAX_IDS_PER_QUERY,
    MAX_PROCESSES_PER_OWNER,
    PER_USER_SLOTS,
    StatusBoard,
    TransientProcessError,
    parse_ps_rows,
    ps_argv,
)

from .test_status_command import load as load_status_command

SLURM = SlurmScheduler()
TARGET = SSHTarget.from_values("Mini", {"hosts": ["login1"]})
START = "Tue Nov 24 10:00:00 2026"


class ScriptedPool:
    """Answers pool.run with ``answer(user, argv)`` and records every call."""

    def __init__(self, answer: Callable[[str, list[str]], tuple[int, str, str]]) -> None:
        self.answer = answer
        self.calls: list[tuple[str, list[str], str | None]] = []

    async def run(self, target, username, creds, argv: Sequence[str], **kw) -> Result:  # noqa: ANN001
        self.calls.append((username, list(argv), kw.get("host")))
        await asyncio.sleep(0.01)  # a refresh takes time: concurrent callers must share it
        rc, out, err = self.answer(username, list(argv))
        return Result("login1", "login1:22", rc, out, err)


def squeue_out(rows: dict[str, tuple[str, str]]) -> str:
    return "".join(f"{j}|{state}|None|N/A|mini01|{user}\n" for j, (state, user) in rows.items())


async def creds() -> None:
    return None


async def test_many_polls_share_one_squeue() -> None:
    pool = ScriptedPool(
        lambda u, a: (0, squeue_out({str(i): ("RUNNING", "alice") for i in range(1, 101)}), "")
    )
    board = StatusBoard(
        "Mini", TARGET, pool, interval=30, service_user="hpcstatus", service_credentials=creds
    )
    for i in range(1, 101):
        board.watch_job(str(i), "alice")
    results = await asyncio.gather(*(board.job(str(i), "alice") for i in range(1, 101)))
    assert all(r.state == "RUNNING" for r in results)
    assert len(pool.calls) == 1 and pool.calls[0][0] == "hpcstatus"
    assert pool.calls[0][1] == SLURM.query_argv([str(i) for i in range(1, 101)])
    # Within the interval: answered from the cache, nothing runs.
    await asyncio.gather(*(board.job(str(i), "alice") for i in range(1, 101)))
    assert len(pool.calls) == 1
    # A caller that wants fresher data starts one refresh for everyone.
    await asyncio.gather(*(board.job(str(i), "alice", max_age=0) for i in range(1, 11)))
    assert len(pool.calls) == 2


@pytest.mark.parametrize(
    "answer",
    [
        (1, "", "slurm_load_jobs error: Unable to contact slurm controller (connect failure)"),
        (1, "", "squeue: error: Socket timed out on send/recv operation"),
        (255, "", ""),
    ],
)
async def test_scheduler_errors_raise_for_every_waiter_and_are_never_gone(
    answer: tuple[int, str, str],
) -> None:
    # batchspawner #315: an unrecognised squeue error read as "job gone" orphans the job.
    pool = ScriptedPool(lambda u, a: answer)
    board = StatusBoard("Mini", TARGET, pool, service_user="hpcstatus", service_credentials=creds)
    board.watch_job("12", "alice")
    board.watch_job("13", "bob")
    for r in await asyncio.gather(board.job("12", "alice"), board.job("13", "bob"), return_exceptions=True):
        assert isinstance(r, TransientSchedulerError)
    assert len(pool.calls) == 1


async def test_ssh_failure_is_transient() -> None:
    class Broken(ScriptedPool):
        async def run(self, *a, **kw) -> Result:  # noqa: ANN002, ANN003
            raise SSHError("Mini is not reachable over SSH")

    board = StatusBoard(
        "Mini", TARGET, Broken(lambda u, a: (0, "", "")), service_user="s", service_credentials=creds
    )
    board.watch_job("12", "alice")
    with pytest.raises(TransientSchedulerError):
        await board.job("12", "alice")


async def test_a_job_is_gone_only_when_squeue_and_sacct_both_answered_without_it() -> None:
    def answer(user: str, argv: list[str]) -> tuple[int, str, str]:
        if argv[0] == "squeue":
            return 0, squeue_out({"12": ("RUNNING", "alice")}), ""
        assert argv[0] == "sacct" and "13,14" in argv
        return 0, "13|CANCELLED by 0|None|bob\n", ""

    pool = ScriptedPool(answer)
    board = StatusBoard("Mini", TARGET, pool, service_user="s", service_credentials=creds)
    for j, u in (("12", "alice"), ("13", "bob"), ("14", "carol")):
        board.watch_job(j, u)
    a, b, c = await asyncio.gather(board.job("12", "alice"), board.job("13", "bob"), board.job("14", "carol"))
    assert a.active and (b.state, b.gone) == ("CANCELLED", True) and (c.state, c.gone) == ("GONE", True)
    assert [c[1][0] for c in pool.calls] == ["squeue", "sacct"]


async def test_a_single_purged_id_is_gone_not_an_error() -> None:
    pool = ScriptedPool(
        lambda u, a: (
            (1, "", "slurm_load_jobs error: Invalid job id specified")
            if a[0] == "squeue"
            else (1, "", "sacct: error: Slurm accounting storage is disabled")
        )
    )
    board = StatusBoard("Mini", TARGET, pool, service_user="s", service_credentials=creds)
    board.watch_job("12", "alice")
    assert (await board.job("12", "alice")).gone


async def test_a_job_of_another_user_is_never_taken_for_this_users() -> None:
    # alice's start reported job 12 (her shell can print anything), but slurmctld says it is bob's.
    pool = ScriptedPool(lambda u, a: (0, squeue_out({"12": ("RUNNING", "bob")}), ""))
    board = StatusBoard("Mini", TARGET, pool, service_user="s", service_credentials=creds)
    board.watch_job("12", "alice")
    st = await board.job("12", "alice")
    assert st.state == "FOREIGN" and st.gone and not st.active


async def test_per_user_mode_asks_each_user_only_about_their_own_jobs() -> None:
    def answer(user: str, argv: list[str]) -> tuple[int, str, str]:
        if user == "mallory":
            # A hostile ~/.bashrc prints forged rows for everyone's jobs, then lies about its own.
            forged = squeue_out({"1": ("CANCELLED", "alice"), "2": ("RUNNING", "mallory")})
            return 0, "Welcome!\n" + forged + forged, ""
        return 0, squeue_out({"1": ("RUNNING", "alice")}), ""

    pool = ScriptedPool(answer)
    board = StatusBoard("Mini", TARGET, pool)  # no status.user: per-user queries
    board.watch_job("1", "alice", creds)
    board.watch_job("2", "mallory", creds)
    alice, mallory = await asyncio.gather(
        board.job("1", "alice"), board.job("2", "mallory"), return_exceptions=True
    )
    assert alice.state == "RUNNING"
    # Conflicting lines for one id are believed for neither: unknown, never "gone".
    assert isinstance(mallory, TransientSchedulerError) and "cannot be believed" in str(mallory)
    asked = {u: argv[argv.index("-j") + 1] for u, argv, _ in pool.calls}
    assert asked == {"alice": "1", "mallory": "2"}


async def test_process_rows_must_match_pid_start_and_owner() -> None:
    def answer(user: str, argv: list[str]) -> tuple[int, str, str]:
        assert argv == ps_argv([10, 11, 12, 13])
        return (
            0,
            f"   10 alice    {START}\n   11 alice    Wed Nov 25 09:00:00 2026\n   12 bob      {START}\n",
            "",
        )

    pool = ScriptedPool(answer)
    board = StatusBoard("Mini", TARGET, pool, service_user="s", service_credentials=creds)
    board.watch_process("login1:22", 10, START, "alice")
    board.watch_process("login1:22", 11, START, "alice")  # PID reused after a reboot
    board.watch_process("login1:22", 12, START, "alice")  # someone else's process
    board.watch_process("login1:22", 13, START, "alice")  # gone
    rows = await asyncio.gather(*(board.process("login1:22", p, "alice") for p in (10, 11, 12, 13)))
    assert [r.alive for r in rows] == [True, False, False, False]
    assert len(pool.calls) == 1 and pool.calls[0][2] == "login1:22"


async def test_process_listing_failure_is_transient() -> None:
    pool = ScriptedPool(lambda u, a: (2, "", "ps: error"))
    board = StatusBoard("Mini", TARGET, pool, service_user="s", service_credentials=creds)
    board.watch_process("login1:22", 10, START, "alice")
    with pytest.raises(TransientProcessError):
        await board.process("login1:22", 10, "alice")


async def test_unwatching_forgets_rows_and_credentials() -> None:
    board = StatusBoard("Mini", TARGET, ScriptedPool(lambda u, a: (0, "", "")))
    board.watch_job("1", "alice", creds)
    board.watch_process("login1:22", 5, START, "alice", creds)
    board.unwatch_job("1", "alice")
    assert "alice" in board._creds
    board.unwatch_process("login1:22", 5, "alice")
    assert board.watched == (0, 0) and not board._creds and not board._rows


def test_parsers_ignore_chatter_and_keep_fields() -> None:
    rows = SLURM.parse_query("motd|x\n7|PENDING|Resources|2026-11-25T12:30:00||alice\n", ["7"])
    assert (rows["7"].reason, rows["7"].expected_start, rows["7"].nodes) == (
        "Resources",
        "2026-11-25T12:30:00",
        "",
    )
    assert parse_ps_rows(f"x\n 42 alice {START}\n", [42])[42].start == START


def test_squeue_placeholders_are_empty_and_malformed_or_unasked_lines_ignored() -> None:
    """Edges mutation testing found untested: Slurm's placeholders ("None", "(null)", "N/A",
    "Unknown") never reach the console as a reason, start or node; a line with a "|" too
    many (a forged field) or for a job nobody asked about is skipped without ending the
    parse; a job listed twice is believed neither time, and the lines after it still count."""
    out = (
        "7|RUNNING|None|N/A|(null)|alice\n"
        "8|PENDING|(null)|Unknown||alice\n"
        "9|PENDING|Priority|None|n1|alice|forged\n"
        "10|RUNNING|None|N/A|n2|mallory\n"
        "11|RUNNING|None|N/A|n3|bob\n"
        "11|COMPLETED|None|N/A|n3|bob\n"
        "12||None|N/A|n4|carol\n"
        "13|PENDING|None|None|(null)|alice\n"
    )
    rows = SLURM.parse_query(out, ["7", "8", "9", "11", "12", "13"])
    assert sorted(rows) == ["11", "12", "13", "7", "8"]
    assert (rows["13"].reason, rows["13"].expected_start, rows["13"].nodes) == ("", "", "")
    assert (rows["7"].state, rows["7"].reason, rows["7"].expected_start, rows["7"].nodes) == (
        "RUNNING",
        "",
        "",
        "",
    )
    assert (rows["8"].reason, rows["8"].expected_start) == ("", "")
    assert (rows["11"].state, rows["11"].reason, rows["11"].user) == (
        "UNKNOWN",
        "conflicting squeue lines",
        "",
    )
    assert rows["12"].state == "UNKNOWN" and not rows["12"].active
    assert rows["7"].active and rows["8"].active


def test_sacct_rows_final_state_and_malformed_or_unasked_lines_ignored() -> None:
    out = "x|y\n5|CANCELLED by 1001|None|alice\n6|COMPLETED|None|alice|forged\n7|FAILED|NonZeroExitCode|alice\n8||None|bob\n"
    rows = SLURM.parse_accounting(out, ["5", "6", "8"])
    assert sorted(rows) == ["5", "8"]
    assert (rows["5"].state, rows["5"].user, rows["5"].gone) == ("CANCELLED", "alice", True)
    assert rows["8"].state == "UNKNOWN"


def test_ps_rows_are_alive_processes_of_the_pids_asked() -> None:
    rows = parse_ps_rows(f"  PID\n 42 alice {START}\n 43 bob {START}\nnot-a-pid alice {START}\n", [42, 44])
    assert list(rows) == [42]
    assert (rows[42].alive, rows[42].user, rows[42].start) == (True, "alice", START)


async def test_a_job_unwatched_during_a_refresh_leaves_no_row() -> None:
    board: StatusBoard

    def answer(user: str, argv: list[str]) -> tuple[int, str, str]:
        board.unwatch_job("2", "bob")  # a stop confirmed while squeue ran
        return 0, squeue_out({"1": ("RUNNING", "alice"), "2": ("RUNNING", "bob")}), ""

    board = StatusBoard("Mini", TARGET, ScriptedPool(answer), service_user="s", service_credentials=creds)
    board.watch_job("1", "alice")
    board.watch_job("2", "bob")
    assert (await board.job("1", "alice")).active
    assert set(board._rows) == {("job", "1", "alice")}


# --- claims: an id is watched under (id, owner) (issue 16) ----------------------------


async def test_a_claimed_job_id_never_changes_its_owners_row() -> None:
    # mallory's sbatch (her shell) printed alice's job id 5; the status account's squeue
    # says whose it is. alice keeps her row; mallory gets FOREIGN, without alice's name.
    pool = ScriptedPool(lambda u, a: (0, squeue_out({"5": ("RUNNING", "alice")}), ""))
    board = StatusBoard("Mini", TARGET, pool, service_user="s", service_credentials=creds)
    board.watch_job("5", "alice")
    board.watch_job("5", "mallory")
    alice, mallory = await asyncio.gather(board.job("5", "alice"), board.job("5", "mallory"))
    assert alice.state == "RUNNING" and alice.user == "alice"
    assert mallory.state == "FOREIGN" and mallory.gone and "alice" not in mallory.reason
    assert len(pool.calls) == 1  # still one squeue for both


async def test_status_account_refuses_a_claim_of_a_job_confirmed_as_anothers() -> None:
    pool = ScriptedPool(lambda u, a: (0, squeue_out({"5": ("RUNNING", "alice")}), ""))
    board = StatusBoard("Mini", TARGET, pool, service_user="s", service_credentials=creds)
    board.watch_job("5", "alice")
    assert (await board.job("5", "alice")).active
    with pytest.raises(ClaimRefused, match="Mini: Slurm job 5 is not yours"):
        board.watch_job("5", "mallory")
    assert board.watched == (1, 0)
    assert (await board.job("5", "alice", max_age=0)).active


async def test_per_user_mode_keeps_two_claims_of_one_id_apart() -> None:
    # Without a status account no shell is believed about another user: mallory's claim is
    # not refused (her shell could otherwise block alice's next job id), and her forged
    # "alice's job 5 was cancelled" is only ever read for her.
    def answer(user: str, argv: list[str]) -> tuple[int, str, str]:
        if user == "mallory":
            return 0, squeue_out({"5": ("CANCELLED", "alice")}), ""
        return 0, squeue_out({"5": ("RUNNING", "alice")}), ""

    pool = ScriptedPool(answer)
    board = StatusBoard("Mini", TARGET, pool)
    board.watch_job("5", "alice", creds)
    board.watch_job("5", "mallory", creds)
    alice, mallory = await asyncio.gather(board.job("5", "alice"), board.job("5", "mallory"))
    assert alice.state == "RUNNING"
    assert mallory.state == "FOREIGN"
    assert sorted(u for u, _, _ in pool.calls) == ["alice", "mallory"]


async def test_a_slow_users_shell_never_delays_another_users_read() -> None:
    class Slow(ScriptedPool):
        async def run(self, target, username, creds, argv, **kw) -> Result:  # noqa: ANN001
            if username == "mallory":
                await asyncio.sleep(5)  # her ~/.bashrc sleeps when it sees squeue
            return await super().run(target, username, creds, argv, **kw)

    board = StatusBoard(
        "Mini", TARGET, Slow(lambda u, a: (0, squeue_out({"1": ("RUNNING", u), "2": ("RUNNING", u)}), ""))
    )
    board.watch_job("1", "alice", creds)
    board.watch_job("2", "mallory", creds)
    slow = asyncio.ensure_future(board.job("2", "mallory"))
    await asyncio.sleep(0.1)
    t0 = asyncio.get_running_loop().time()
    assert (await board.job("1", "alice")).active
    assert asyncio.get_running_loop().time() - t0 < 2  # not mallory's 5 s
    assert not slow.done()
    assert (await slow).active


async def test_one_id_slurmctld_refuses_costs_a_split_not_every_jobs_status() -> None:
    def answer(user: str, argv: list[str]) -> tuple[int, str, str]:
        if argv[0] == "sacct":
            return 1, "", "sacct: error: Slurm accounting storage is disabled"
        ids = argv[argv.index("-j") + 1].split(",")
        if "99" in ids:
            return 1, "", "slurm_load_jobs error: Invalid job id specified"
        return 0, squeue_out({i: ("RUNNING", "alice") for i in ids}), ""

    pool = ScriptedPool(answer)
    board = StatusBoard("Mini", TARGET, pool, service_user="s", service_credentials=creds)
    ids = [str(i) for i in range(1, 17)] + ["99"]
    for i in ids:
        board.watch_job(i, "alice")
    rows = await asyncio.gather(*(board.job(i, "alice") for i in ids))
    assert [r.state for r in rows] == ["RUNNING"] * 16 + ["GONE"]
    assert sum(1 for _, a, _ in pool.calls if a[0] == "squeue") <= 2 * 5 + 1  # log2(17) levels


async def test_rows_without_an_owner_or_with_an_unknown_state_are_not_believed() -> None:
    out = "1|RUNNING|None|N/A|n1|\n2|EXPLODED|None|N/A|n1|alice\n3|RUNNING|None|N/A|n1|alice\n"
    board = StatusBoard(
        "Mini", TARGET, ScriptedPool(lambda u, a: (0, out, "")), service_user="s", service_credentials=creds
    )
    for i in ("1", "2", "3"):
        board.watch_job(i, "alice")
    one, two, three = await asyncio.gather(
        *(board.job(i, "alice") for i in ("1", "2", "3")), return_exceptions=True
    )
    assert isinstance(one, TransientSchedulerError) and "names no owner" in str(one)
    assert isinstance(two, TransientSchedulerError) and "cannot be believed" in str(two)
    assert three.active


async def test_an_answer_with_more_lines_than_jobs_is_believed_for_none() -> None:
    forged = "".join(f"{i}|CANCELLED|None|N/A|n1|alice\n" for i in range(1, 200))
    board = StatusBoard("Mini", TARGET, ScriptedPool(lambda u, a: (0, forged, "")))
    board.watch_job("7", "alice", creds)
    with pytest.raises(TransientSchedulerError, match="cannot be believed"):
        await board.job("7", "alice")


@pytest.mark.parametrize(
    ("answer", "alive"),
    [
        ((1, "", ""), False),  # ps found none of them: answered
        ((1, "", "error: process ID out of range\n\nUsage:\n ps [options]"), None),
        ((1, "", "error: list of process IDs must follow -p"), None),
        ((0, f"   10 alice {START}\n", ""), True),
    ],
)
async def test_ps_answers_are_told_apart_and_an_error_is_never_dead(
    answer: tuple[int, str, str], alive: bool | None
) -> None:
    board = StatusBoard(
        "Mini", TARGET, ScriptedPool(lambda u, a: answer), service_user="s", service_credentials=creds
    )
    board.watch_process("login1:22", 10, START, "alice")
    if alive is None:
        with pytest.raises(TransientProcessError, match="ps failed"):
            await board.process("login1:22", 10, "alice")
    else:
        assert (await board.process("login1:22", 10, "alice")).alive is alive


@pytest.mark.parametrize("job_id", ["١٢", "0", "007", "1,2", "99999999999", ""])
def test_only_job_ids_can_be_watched(job_id: str) -> None:
    board = StatusBoard("Mini", TARGET, ScriptedPool(lambda u, a: (0, "", "")))
    with pytest.raises(ClaimRefused, match="Mini: job id"):
        board.watch_job(job_id, "mallory")
    assert board.watched == (0, 0)


@pytest.mark.parametrize("pid", ["0", "2147483648", "٣", "-1", "1 2"])
def test_only_pids_can_be_watched(pid: str) -> None:
    # ps -p with one of these fails the whole listing (hole 3): refused before it is asked.
    board = StatusBoard("Mini", TARGET, ScriptedPool(lambda u, a: (0, "", "")), service_user="s")
    with pytest.raises(ClaimRefused, match="Mini: process id"):
        board.watch_process("login1:22", pid, START, "mallory")


async def test_status_account_refuses_a_claim_of_a_process_confirmed_as_anothers() -> None:
    board = StatusBoard(
        "Mini",
        TARGET,
        ScriptedPool(lambda u, a: (0, f"10 alice {START}\n", "")),
        service_user="s",
        service_credentials=creds,
    )
    board.watch_process("login1:22", 10, START, "alice")
    assert (await board.process("login1:22", 10, "alice")).alive
    with pytest.raises(ClaimRefused, match="process 10 on login1:22 is not yours"):
        board.watch_process("login1:22", 10, START, "mallory")


# --- one user's shell cannot grow the board (hostile-user review, finding 1) ------------


def test_one_owner_cannot_grow_the_process_watch_list() -> None:
    # Her find script printed a new PID every second: past the bound, a claim is refused
    # (her start or adoption fails), and nobody else's watch is affected.
    board = StatusBoard("Mini", TARGET, ScriptedPool(lambda u, a: (0, "", "")))
    for pid in range(1000, 1000 + MAX_PROCESSES_PER_OWNER):
        board.watch_process("login1:22", pid, None, "mallory", creds)
    with pytest.raises(ClaimRefused, match="processes of mallory are watched already"):
        board.watch_process("login1:22", 5000, None, "mallory", creds)
    board.watch_process("login1:22", 1000, None, "mallory", creds)  # one watched already: kept
    board.watch_process("login1:22", 5000, START, "alice", creds)
    assert board.watched == (0, MAX_PROCESSES_PER_OWNER + 1)
    board.unwatch_process("login1:22", 1000, "mallory")
    board.watch_process("login1:22", 5000, None, "mallory", creds)
    assert board.watched == (0, MAX_PROCESSES_PER_OWNER + 1)


async def test_the_status_accounts_ps_stays_within_the_status_command_however_many_servers() -> None:
    # 12,000 servers on one login node (200 users x 60): each ps the status account sends
    # is one the forced command (config/login-node/hpchub-status-command) accepts.
    command = load_status_command()
    owners = {pid: f"user{pid % 200}" for pid in range(100_000, 112_000)}

    def answer(user: str, argv: list[str]) -> tuple[int, str, str]:
        request = " ".join(shlex.quote(a) for a in argv)
        if len(request) > command.MAX_REQUEST or not command.allowed(shlex.split(request)):
            return 126, "", f"hpchub-status-command: refused: {request[:200]!r}\n"
        pids = [int(p) for p in argv[-1].split(",")]
        return 0, "".join(f"{p} {owners[p]} {START}\n" for p in pids), ""

    pool = ScriptedPool(answer)
    board = StatusBoard("Mini", TARGET, pool, service_user="s", service_credentials=creds)
    for pid, owner in owners.items():
        board.watch_process("login1:22", pid, START, owner)
    rows = await asyncio.gather(*(board.process("login1:22", p, o) for p, o in owners.items()))
    assert all(r.alive for r in rows)
    assert len(pool.calls) == -(-len(owners) // MAX_IDS_PER_QUERY)


async def test_users_whose_squeue_refuses_lists_and_sleeps_never_take_the_boards_slots() -> None:
    # Three hostile users with six batch servers each. Their squeue answers a list of ids
    # "Invalid job id" at once (the board splits it in halves) and sleeps for a single id,
    # as does their sacct: every leaf of the split would hold one of the board's slots.
    # Each holds at most PER_USER_SLOTS of them, so alice's poll is answered at once.
    hostile = ("mallory", "oscar", "trudy")
    running: dict[str, int] = {}
    most: dict[str, int] = {}

    class Hostile(ScriptedPool):
        async def run(self, target, username, creds, argv, **kw) -> Result:  # noqa: ANN001
            running[username] = running.get(username, 0) + 1
            most[username] = max(most.get(username, 0), running[username])
            try:
                ids = argv[argv.index("-j") + 1].split(",")
                if username in hostile and (argv[0] == "sacct" or len(ids) == 1):
                    await asyncio.sleep(30)  # up to the query timeout, each
                return await super().run(target, username, creds, argv, **kw)
            finally:
                running[username] -= 1

    def answer(user: str, argv: list[str]) -> tuple[int, str, str]:
        ids = argv[argv.index("-j") + 1].split(",")
        if user in hostile:
            return 1, "", "slurm_load_jobs error: Invalid job id specified"
        return 0, squeue_out({i: ("RUNNING", user) for i in ids}), ""

    board = StatusBoard("Mini", TARGET, Hostile(answer))
    for n, user in enumerate(hostile):
        for j in range(6):
            board.watch_job(str(100 + 10 * n + j), user, creds)
    board.watch_job("1", "alice", creds)
    slow = [asyncio.ensure_future(board.job(str(100 + 10 * n), u)) for n, u in enumerate(hostile)]
    await asyncio.sleep(0.5)  # their splits have reached single ids
    t0 = asyncio.get_running_loop().time()
    try:
        assert (await asyncio.wait_for(board.job("1", "alice"), 10)).active
        took = asyncio.get_running_loop().time() - t0
        assert took < 1, f"alice's poll waited {took:.1f} s behind their shells"
        assert all(most[u] <= PER_USER_SLOTS for u in hostile), most
    finally:
        for task in slow + [s.task for s in board._scopes.values() if s.task]:
            task.cancel()
        await asyncio.gather(*slow, return_exceptions=True)
