"""Values a user's shell or job reports, parsed at the boundary (hpchub/claims.py, the node
list reader, the launchers' marks): each hole of issue 16 as its smallest example."""

from __future__ import annotations

import pytest

from hpchub import claims, hostlist
from hpchub.claims import ClaimRefused
from hpchub.remoteops import run_directory
from hpchub.schedulers import TransientSchedulerError
from hpchub.schedulers.base import parse_cancel, parse_found
from hpchub.schedulers.slurm import SlurmScheduler
from hpchub.spawners.batch import parse_address


@pytest.mark.parametrize(
    "text",
    [
        "١٢٣",  # Arabic-Indic digits: str.isdigit() says yes, int() says 123, Slurm says no
        "１２",  # full-width digits
        "0",
        "007",  # not how Slurm spells an id: it would never match squeue's row
        "2147483648",
        "99999999999",
        "1 2",
        "1\n2",
        "12\x00",
        "-1",
        "+1",
        "1_2",  # array job: not what sbatch --parsable prints for hpchub's jobs
        "",
        "12" * 30,
    ],
)
def test_job_ids_are_ascii_decimal_slurm_spellings(text: str) -> None:
    with pytest.raises(ClaimRefused, match="Mini: job id"):
        claims.job_id("Mini", text)


def test_job_ids_sbatch_prints_are_accepted() -> None:
    assert claims.job_id("Mini", "123") == "123"
    assert claims.job_id("Mini", " 123;perlmutter\n") == "123"
    assert claims.job_id("Mini", str(claims.MAX_JOB_ID)) == str(claims.MAX_JOB_ID)


@pytest.mark.parametrize("text", ["0", "4194305", "2147483648", "1e3", "٣", "12 ", "0x10", "", "-5"])
def test_pids_out_of_range_or_not_decimal_are_refused(text: str) -> None:
    if text == "12 ":
        assert claims.pid("Mini", text) == 12  # surrounding blanks are ps's own padding
        return
    with pytest.raises(ClaimRefused, match="Mini: process id"):
        claims.pid("Mini", text)


@pytest.mark.parametrize("text", ["0", "65536", "٨٠", "80.5", "", "99999999999999999999"])
def test_ports_are_1_to_65535(text: str) -> None:
    with pytest.raises(ClaimRefused, match="port"):
        claims.port("Mini", text)
    assert claims.port("Mini", "8888") == 8888


def test_pid_start_is_ps_lstart_and_normalised() -> None:
    assert claims.pid_start("M", "Tue Nov  4 10:00:00 2026") == "Tue Nov 4 10:00:00 2026"
    for bad in ("yesterday", "Tue Nov 4 10:00:00 2026\nforged", "x" * 100):
        with pytest.raises(ClaimRefused):
            claims.pid_start("M", bad)


def test_states_and_texts_are_bounded_words() -> None:
    assert claims.state("CANCELLED by 1234") == "CANCELLED"
    assert claims.state("RUNNING+") == "RUNNING"
    assert claims.state("running") == "UNKNOWN"
    assert claims.state("ＲＵＮＮＩＮＧ") == "UNKNOWN"
    assert claims.text("Priority\x1b[2J" + "x" * 500) == "Priority[2J" + "x" * 189
    assert claims.timestamp("2026-11-24T10:00:00") == "2026-11-24T10:00:00"
    assert claims.timestamp("N/A") == "" and claims.timestamp("2026-11-24T10:00:00x") == ""


def test_node_list_bomb_is_read_without_building_it() -> None:
    # The node list of hole 1: 10^10 hosts, 20 characters.
    bomb = "n[0-99998]m[0-99998]"
    assert hostlist.first(bomb) == "n0m0"
    assert hostlist.count(bomb) == hostlist.MAX_HOSTS + 1
    with pytest.raises(hostlist.HostlistError, match="more than"):
        hostlist.expand(bomb)
    # Many ranges per bracket, many parts: refused before anything is built.
    with pytest.raises(hostlist.HostlistError):
        hostlist.expand(",".join(f"a{i}[0-99998]" for i in range(50)))
    with pytest.raises(hostlist.HostlistError, match="characters"):
        hostlist.first("n" * (hostlist.MAX_TEXT + 1))
    with pytest.raises(hostlist.HostlistError, match="not ASCII"):
        hostlist.first("nid[١-٣]")


def test_address_file_with_a_port_that_is_not_one_is_no_address() -> None:
    assert parse_address("5", "HPCHUB-ADDR n1 ٨٠٨٠ 5\nHPCHUB-ADDR n1 8080 5\n") == ("n1", 8080)
    assert parse_address("5", "HPCHUB-ADDR n1 0 5\n") is None
    assert parse_address("5", "HPCHUB-ADDR n1 8080 6\n") is None


def test_found_and_cancel_answers_take_only_job_ids() -> None:
    assert parse_found("١٢|RUNNING\n12|PENDING\nHPCHUB-RC 0\n") == {"12": "PENDING"}
    assert parse_cancel(SlurmScheduler(), "HPCHUB-SCANCEL 0\n٣|RUNNING\nHPCHUB-JRC 0\n", "3") == set()
    with pytest.raises(TransientSchedulerError):
        parse_found("garbage")


def test_run_directory_must_be_a_plain_absolute_path() -> None:
    assert run_directory("M", "/home/a/.hpchub/jobs/ab12") == "/home/a/.hpchub/jobs/ab12"
    for bad in ("relative/x", "/home/a/x y", "/home/a/\nx", "/home/ä", "/" + "a" * 5000):
        with pytest.raises(ClaimRefused, match="run directory"):
            run_directory("M", bad)
