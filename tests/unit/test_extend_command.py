"""The extend account's forced command (config/login-node/hpchub-extend-command): it raises
a job's limit only where Slurm itself has the job the hub submitted, in the shape the hub
checked (name, partition, QOS, account, nodes, GPUs per node, exclusive nodes, requeue), and refuses any request word that is not
one it knows. Slurm is faked here (the module's one ``slurm`` runner); the real sshd, sudo
and Slurm run it in tests/integration/test_walltime_extend.py and tests/e2e/test_16_extend_account.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness.loginnode import LOGIN_NODE, load_script

SCRIPT = LOGIN_NODE / "hpchub-extend-command"
NAME = "hpchub-0123456789abcdef"
# The request the hub sends for alice's one-node job in partition debug, QOS and account
# left to Slurm, no GPUs, nodes shared, not requeued: user, job id, minutes, job name,
# partition, QOS, account, nodes, GPUs per node, exclusive, requeue.
GOOD = ["alice", "42", "90", NAME, "debug", "-", "-", "1", "0", "shared", "no-requeue"]
PARTITIONS = (
    "PartitionName=debug AllowGroups=ALL Default=YES ExclusiveUser=NO MaxTime=02:00:00 State=UP OverSubscribe=NO\n"
    "PartitionName=big AllowGroups=ALL Default=NO ExclusiveUser=NO MaxTime=00:30:00 State=UP OverSubscribe=NO\n"
    # Every job's nodes whole: Slurm 22.05 shows a plain job there as OverSubscribe NO, USER.
    "PartitionName=whole AllowGroups=ALL Default=NO ExclusiveUser=NO State=UP OverSubscribe=EXCLUSIVE\n"
    "PartitionName=mine AllowGroups=ALL Default=NO ExclusiveUser=YES State=UP OverSubscribe=NO\n"
)


CMD = load_script("hpchub-extend-command")


# squeue -O's fields as this fake's job keys them.
SQUEUE_KEYS = {
    "UserName": "user", "State": "state", "TimeLimit": "limit", "NumNodes": "nodes",
    "MaxNodes": "max_nodes", "Partition": "partition", "QOS": "qos", "Account": "account",
    "OverSubscribe": "oversubscribe", "Requeue": "requeue", "tres-per-node": "per_node",
    "tres-per-job": "per_job", "tres-per-task": "per_task", "tres-per-socket": "per_socket",
    "Name": "name",
}  # fmt: skip


class FakeSlurm:
    """squeue's one line for job 42 (the fields its -O asks, as Slurm 22.05 prints them:
    tests/integration/test_walltime_extend.py runs the real one), scontrol's partitions,
    sacctmgr's rows; every call kept."""

    def __init__(self, job: dict[str, str] | None = None, sacctmgr: dict[str, str] | None = None) -> None:
        self.job = {
            "user": "alice",
            "state": "RUNNING",
            "limit": "01:00:00",
            "nodes": "1",
            "max_nodes": "1",
            "partition": "debug",
            "qos": "(null)",
            "account": "(null)",
            "oversubscribe": "OK",
            "requeue": "0",
            "per_node": "N/A",
            "per_job": "N/A",
            "per_task": "N/A",
            "per_socket": "N/A",
            "name": NAME,
            **(job or {}),
        }
        self.sacctmgr = sacctmgr or {}
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], opts: dict[str, str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv)
        out, rc = "", 0
        if argv[0] == "squeue":
            assert argv[4] == "-O"
            # "Field:|" prints the field and "|", "Name:0" the name unpadded (no size: 20 wide).
            fields = [re.fullmatch(r"([\w-]+):(\||0)", f) for f in argv[5].split(",")]
            assert all(fields), argv[5]
            out = "".join(self.job[SQUEUE_KEYS[m[1]]] + ("|" if m[2] == "|" else "") for m in fields if m)
            out = out + "\n" if argv[3] == "42" else ""
        elif argv[:2] == ["scontrol", "-a"]:
            named = argv[5:]  # scontrol -a -o show partition [<name>]
            out = "".join(
                line + "\n" for line in PARTITIONS.splitlines() if line.split()[0][14:] in named or not named
            )
            if not out:
                return subprocess.CompletedProcess(argv, 1, "", f"Partition {named[0]} not found\n")
        elif argv[0] == "sacctmgr":
            key = argv[5]  # sacctmgr -n -P show user <user> ... / show assoc where ...
            if key not in self.sacctmgr:
                return subprocess.CompletedProcess(argv, 1, "", "sacctmgr: error: slurmdbd not reachable")
            out = self.sacctmgr[key]
        return subprocess.CompletedProcess(argv, rc, out, "")

    @property
    def updates(self) -> list[list[str]]:
        return [c for c in self.calls if c[:2] == ["scontrol", "update"]]


def run_root(monkeypatch: pytest.MonkeyPatch, words: list[str], slurm: FakeSlurm) -> int:
    """The second run, as root: the request as arguments after --root."""
    monkeypatch.setattr(CMD, "slurm", slurm)
    monkeypatch.setattr(CMD.os, "geteuid", lambda: 0)
    return CMD.main([str(SCRIPT), "--slurm-conf", "/etc/slurm/slurm.conf", "--root", *words])


def refused(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    m = re.fullmatch(r"hpchub-extend-command: refused: (.*)\n", err)
    assert m, err
    return m.group(1)


def with_(i: int, word: str) -> list[str]:
    words = list(GOOD)
    words[i] = word
    return words


def test_the_exact_job_the_server_asked_for_is_extended(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    slurm = FakeSlurm()
    assert run_root(monkeypatch, GOOD, slurm) == 0
    assert slurm.updates == [["scontrol", "update", "JobId=42", "TimeLimit=90"]]
    assert capsys.readouterr().out == "job 42: time limit 90 minutes\n"
    squeue = slurm.calls[0]
    assert squeue[:5] == ["squeue", "-h", "-j", "42", "-O"]
    assert squeue[5].endswith(",Name:0")  # the job name (the user's text) last


@pytest.mark.parametrize(
    ("job", "words", "why"),
    [
        ({"nodes": "64"}, GOOD, "job 42 has 64 nodes; the server asked for 1 node"),
        ({"nodes": "1"}, with_(7, "2"), "job 42 has 1 node; the server asked for 2 nodes"),
        ({"partition": "big"}, GOOD, "job 42 runs in partition big; the server asked for debug"),
        ({"partition": "Debug"}, GOOD, "job 42 runs in partition Debug; the server asked for debug"),
        ({"qos": "short"}, with_(5, "normal"), "job 42 runs in QOS short; the server asked for normal"),
        ({"qos": "(null)"}, with_(5, "normal"), "job 42 runs in QOS none; the server asked for normal"),
        ({"account": "proj2"}, with_(6, "proj1"), "job 42 runs in account proj2; the server asked for proj1"),
        (
            {"account": "a b"},
            with_(6, "proj1"),
            "job 42 runs in account (a name with other characters); the server asked for proj1",
        ),
        (
            {"name": "hpchub-ffffffffffffffff"},
            GOOD,
            f"job 42 is hpchub-ffffffffffffffff, not the server's job {NAME}",
        ),
        ({"name": "analysis"}, GOOD, "job 42 is not an hpchub notebook job"),
        ({"user": "bob"}, GOOD, "job 42 is not alice's"),
        ({"state": "PENDING"}, GOOD, "job 42 is PENDING; only a running job is extended"),
        ({"limit": "1:30:00"}, GOOD, "job 42's time limit is 1:30:00; 90 minutes would not raise it"),
        # A '|' in the account (any text, without accounting) pushes the rest into the name.
        ({"account": f"x|{NAME}"}, GOOD, "job 42 is not an hpchub notebook job"),
        ({}, with_(1, "43"), "job 43 is not a job squeue knows"),
        # --nodes=1-64: Slurm shows a range only while it may still apply.
        ({"max_nodes": "64"}, GOOD, "job 42 may have up to 64 nodes; the server asked for 1 node"),
        # GPUs: --gpus-per-node=4 or --gres=gpu:4 on a level without GPUs, or another count.
        ({"per_node": "gres:gpu:4"}, GOOD, "job 42 has 4 GPUs per node; the server asked for none"),
        ({"per_node": "gres/gpu:a100:4"}, GOOD, "job 42 has 4 GPUs per node; the server asked for none"),
        ({"per_node": "gres:gpu"}, GOOD, "job 42 has 1 GPU per node; the server asked for none"),
        (
            {"per_node": "gres:gpu:4"},
            with_(8, "2"),
            "job 42 has 4 GPUs per node; the server asked for 2 GPUs per node",
        ),
        ({}, with_(8, "2"), "job 42 has no GPUs; the server asked for 2 GPUs per node"),
        ({"per_job": "gres:gpu:8"}, GOOD, "job 42 asks for GPUs per job; the server asked for none"),
        (
            {"per_node": "gres:gpu:1", "per_task": "gres:gpu:2"},
            with_(8, "1"),
            "job 42 asks for GPUs per task; the server asked for 1 GPU per node",
        ),
        ({"per_socket": "gres:gpu:1"}, GOOD, "job 42 asks for GPUs per socket; the server asked for none"),
        ({"per_node": "gres:gpu:x:y:1"}, GOOD, "job 42 asks for GPUs in a form not known here"),
        # --exclusive (the whole node for the extended time) where the server shares, and back.
        (
            {"oversubscribe": "NO"},
            GOOD,
            "job 42 holds its nodes whole (OverSubscribe=NO); the server asked to share them",
        ),
        (
            {"oversubscribe": "USER"},
            GOOD,
            "job 42 holds its nodes whole (OverSubscribe=USER); the server asked to share them",
        ),
        (
            {"oversubscribe": "OK"},
            with_(9, "exclusive"),
            "job 42 does not hold its nodes whole (OverSubscribe=OK); the server asked for exclusive nodes",
        ),
        # --requeue where the server asked --no-requeue, and back.
        (
            {"partition": "mine", "oversubscribe": "NO"},
            with_(4, "mine"),
            "job 42 holds its nodes whole (OverSubscribe=NO); the server asked to share them",
        ),
        (
            {"partition": "gone", "oversubscribe": "NO"},
            with_(4, "gone"),
            "partition gone is not known here (scontrol show partition)",
        ),
        ({"requeue": "1"}, GOOD, "job 42 is requeueable; the server asked for no-requeue"),
        ({"requeue": "0"}, with_(10, "requeue"), "job 42 is not requeueable; the server asked for requeue"),
        ({"requeue": ""}, GOOD, "job 42 is of requeue none; the server asked for no-requeue"),
    ],
)
def test_a_job_of_another_shape_is_refused_naming_the_difference(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    job: dict[str, str],
    words: list[str],
    why: str,
) -> None:
    """What an sbatch wrapper first on the user's PATH (``--nodes=64 --qos=short``) or
    SBATCH_* variables make of the hub's job script, or another job of the user's."""
    slurm = FakeSlurm(job)
    assert run_root(monkeypatch, words, slurm) == 126
    assert refused(capsys) == why
    assert slurm.updates == []


def test_account_and_qos_names_compare_as_slurm_keeps_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slurm keeps account and QOS names in lower case; a partition's case counts."""
    slurm = FakeSlurm({"qos": "debug", "account": "proj1"})
    assert run_root(monkeypatch, [*GOOD[:5], "Debug", "Proj1", *GOOD[7:]], slurm) == 0


@pytest.mark.parametrize(
    ("job", "words"),
    [
        ({"per_node": "gres:gpu:4", "nodes": "2", "max_nodes": "2"}, [*GOOD[:7], "2", "4", *GOOD[9:]]),
        ({"per_node": "gres:gpu:a100:2,gres:nvme:1"}, with_(8, "2")),
        ({"per_node": "gres:nvme:1"}, GOOD),  # another GRES: not a GPU
        ({"oversubscribe": "NO"}, with_(9, "exclusive")),
        ({"oversubscribe": "YES"}, GOOD),  # --oversubscribe: shares more, holds nothing whole
        ({"requeue": "1"}, with_(10, "requeue")),
        ({"max_nodes": "0"}, GOOD),  # no maximum given (a job without --nodes, on some versions)
        # "-": the level's extra directives ask for GPUs or exclusive nodes their own way.
        ({"per_task": "gres:gpu:2"}, with_(8, "-")),
        ({"oversubscribe": "USER"}, with_(9, "-")),
        # A partition that holds every job's nodes whole: the server's job there is so too.
        ({"partition": "whole", "oversubscribe": "NO"}, with_(4, "whole")),
        ({"partition": "mine", "oversubscribe": "USER"}, with_(4, "mine")),
    ],
)
def test_gpus_exclusive_and_requeue_as_the_server_asked_are_extended(
    monkeypatch: pytest.MonkeyPatch, job: dict[str, str], words: list[str]
) -> None:
    slurm = FakeSlurm(job)
    assert run_root(monkeypatch, words, slurm) == 0
    assert len(slurm.updates) == 1


ASSOC = "where"  # FakeSlurm's key for `sacctmgr show assoc where ...`


@pytest.mark.parametrize(
    ("job", "sacctmgr", "ok"),
    [
        # Without accounting Slurm gives a job no QOS and no account: nothing to escape.
        ({}, {}, True),
        # With accounting: the user's default account, its association's default QOS.
        (
            {"account": "proj1", "qos": "normal"},
            {"alice": "proj1\n", ASSOC: "|normal|normal,debug\n"},
            True,
        ),
        ({"account": "proj2", "qos": "normal"}, {"alice": "proj1\n", ASSOC: "|normal|normal\n"}, False),
        ({"account": "proj1", "qos": "debug"}, {"alice": "proj1\n", ASSOC: "|normal|normal,debug\n"}, False),
        # No default QOS: the one QOS the association may use, else "normal".
        ({"account": "proj1", "qos": "debug"}, {"alice": "proj1\n", ASSOC: "||debug\n"}, True),
        ({"account": "proj1", "qos": "normal"}, {"alice": "proj1\n", ASSOC: "||debug,normal\n"}, True),
        ({"account": "proj1", "qos": "debug"}, {"alice": "proj1\n", ASSOC: "||debug,normal\n"}, False),
        # A partition's own association wins over the general one.
        (
            {"account": "proj1", "qos": "gpuq"},
            {"alice": "proj1\n", ASSOC: "|normal|normal\ndebug|gpuq|gpuq\n"},
            True,
        ),
        # Rows that disagree (several clusters in one database): not known, refused.
        (
            {"account": "proj1", "qos": "normal"},
            {"alice": "proj1\n", ASSOC: "|normal|normal\n|debug|debug\n"},
            False,
        ),
        # sacctmgr cannot tell (no slurmdbd, or it is down): refused, never guessed.
        ({"account": "proj1", "qos": "normal"}, {}, False),
    ],
)
def test_what_the_hub_left_to_slurm_must_be_slurms_default(
    monkeypatch: pytest.MonkeyPatch, job: dict[str, str], sacctmgr: dict[str, str], ok: bool
) -> None:
    slurm = FakeSlurm(job, sacctmgr)
    assert run_root(monkeypatch, GOOD, slurm) == (0 if ok else 126)
    assert len(slurm.updates) == (1 if ok else 0)


def test_slurms_defaults_are_asked_of_slurm_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    slurm = FakeSlurm({"account": "proj1", "qos": "normal"}, {"alice": "proj1\n", ASSOC: "|normal|normal\n"})
    assert run_root(monkeypatch, with_(4, "-"), slurm) == 0
    assert slurm.calls[1:4] == [
        ["scontrol", "-a", "-o", "show", "partition"],
        ["sacctmgr", "-n", "-P", "show", "user", "alice", "format=DefaultAccount"],
        [
            "sacctmgr", "-n", "-P", "show", "assoc", "where", "users=alice", "accounts=proj1",
            "format=Partition,DefaultQOS,QOS",
        ],
    ]  # fmt: skip


def test_a_partition_left_to_slurm_must_be_its_default_partition(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_root(monkeypatch, with_(4, "-"), FakeSlurm()) == 0
    capsys.readouterr()
    slurm = FakeSlurm({"partition": "big"})
    assert run_root(monkeypatch, with_(4, "-"), slurm) == 126
    assert refused(capsys) == "job 42 runs in partition big; the server asked for Slurm's default (debug)"
    assert slurm.updates == []


@pytest.mark.parametrize(
    "words",
    [
        GOOD[:3],  # the request of a hub before the job's shape was sent
        GOOD[:7],
        [*GOOD, "1"],
        with_(3, "hpchub-0123456789ABCDEF"),
        with_(3, "hpchub-0123"),
        with_(4, ""),
        with_(4, "--"),
        with_(4, "-debug"),
        with_(4, "a,b"),
        with_(4, "x" * 65),
        with_(5, "normal;id"),
        with_(6, "$(id)"),
        with_(7, "0"),
        with_(7, "01"),
        with_(7, "1000000"),
        with_(7, "-"),
        with_(7, "１"),
        GOOD[:8],  # the request of a hub before GPUs, exclusive and requeue were sent
        GOOD[:10],
        with_(8, "01"),
        with_(8, "-1"),
        with_(8, "10000"),
        with_(8, ""),
        with_(9, "yes"),
        with_(9, "Exclusive"),
        with_(9, "--exclusive"),
        with_(10, "-"),
        with_(10, "requeue;id"),
        with_(10, "norequeue"),
    ],
)
def test_malformed_words_are_refused_before_slurm_is_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], words: list[str]
) -> None:
    slurm = FakeSlurm()
    assert run_root(monkeypatch, words, slurm) == 126
    assert refused(capsys).startswith("expected: extend <user> <job id> <minutes> <job name>")
    assert slurm.calls == []


PATTERNS = [
    CMD.JOB_NAME, CMD.SLURM_NAME, CMD.SLURM_NAME, CMD.SLURM_NAME, CMD.NODES,
    re.compile("0|[1-9][0-9]{0,3}"), re.compile("exclusive|shared"), re.compile("requeue|no-requeue"),
]  # fmt: skip
# The words that may be "-" (Slurm's default; GPUs or exclusive not compared).
MAY_BE_DEFAULT = (1, 2, 3, 5, 6)


def not_a(i: int) -> Callable[[str], bool]:
    def bad(word: str) -> bool:
        return not (PATTERNS[i].fullmatch(word) or (i in MAY_BE_DEFAULT and word == "-"))

    return bad


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), i=st.integers(0, 7))
def test_any_word_out_of_its_pattern_is_refused(data: st.DataObject, i: int) -> None:
    """Any text at any of the eight shape words (hypothesis): refused by the same check
    both runs make, before anything runs."""
    word = data.draw(st.text(max_size=80).filter(not_a(i)))
    with pytest.raises(CMD.Refused, match="^expected: extend"):
        CMD.check_request(with_(3 + i, word), {})


def test_the_first_run_hands_root_exactly_the_checked_words(monkeypatch: pytest.MonkeyPatch) -> None:
    """As the extend account: everything checked, then sudo with the options as given and
    the request's words, nothing else."""
    slurm = FakeSlurm()
    monkeypatch.setattr(CMD, "slurm", slurm)
    ran: list[list[str]] = []
    monkeypatch.setattr(CMD.os, "execv", lambda path, argv: ran.append(argv))
    monkeypatch.setenv("SSH_ORIGINAL_COMMAND", "extend " + " ".join(GOOD))
    CMD.main(["/usr/local/libexec/hpchub-extend-command", "--max-minutes", "600"])
    assert ran == [
        [CMD.SUDO, "-n", "/usr/local/libexec/hpchub-extend-command", "--max-minutes", "600", "--root", *GOOD]
    ]
    assert slurm.updates == []
    # Slurm's defaults are the root run's to ask (PrivateData may hide associations from the account).
    slurm = FakeSlurm({"account": "proj1", "qos": "normal"})
    monkeypatch.setattr(CMD, "slurm", slurm)
    monkeypatch.setenv("SSH_ORIGINAL_COMMAND", "extend " + " ".join(with_(4, "-")))
    CMD.main(["/usr/local/libexec/hpchub-extend-command"])
    assert [c[0] for c in slurm.calls] == ["squeue"] and ran[-1][-11:] == with_(4, "-")


def test_a_refused_request_exits_126_without_running_anything(tmp_path: Path) -> None:
    """The program itself, as sshd runs it: the request of an earlier hub (three words),
    a word with shell in it, a shape word missing (the previous hub's request), root mode
    asked for."""
    marker = tmp_path / "ran"
    for request in (
        "extend alice 42 90",
        f"extend alice 42 90 {NAME} debug - - 1 0 shared no-requeue; touch {marker}",
        f"extend alice 42 90 {NAME} debug - $(touch {marker}) 1 0 shared no-requeue",
        f"extend alice 42 90 {NAME} debug - - 1 0 shared $(touch {marker})",
        f"extend alice 42 90 {NAME} debug - -",
        f"extend alice 42 90 {NAME} debug - - 1",
        f"--root {' '.join(GOOD)}",
    ):
        r = subprocess.run(
            [sys.executable, str(SCRIPT)],
            env={**os.environ, "SSH_ORIGINAL_COMMAND": request},
            capture_output=True,
            text=True,
        )
        assert r.returncode == 126 and "refused" in r.stderr, (request, r)
    assert not marker.exists()
