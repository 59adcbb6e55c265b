"""Edges of the options validator that mutation testing (mutmut on hpchub/options.py)
found untested: boundaries, defaults of absent keys, what reaches the job's directives,
and inputs of the wrong type. Each test here failed against at least one surviving mutant."""

from __future__ import annotations

import copy

import pytest

from hpchub.grid import Grid
from hpchub.options import OptionsError, allowed_fields, choices, parse_slurm_time, validate
from hpchub.schedulers.slurm import SlurmScheduler
from tests.harness.values import add_cell

from .test_options import ALLOC, CONF, FIXED, GRID, VALUES, refused

SLURM = SlurmScheduler()


def grid_with(**slurm_or_singleuser: dict) -> Grid:
    """The test grid with some of system pm's slurm/singleuser keys replaced or removed
    (a value of None removes the key)."""
    values = copy.deepcopy(VALUES)
    pm = values["systems"]["pm"]
    for section, changes in slurm_or_singleuser.items():
        for key, value in changes.items():
            if value is None:
                pm[section].pop(key, None)
            else:
                pm[section][key] = value
    return Grid.from_values(values)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("01:02:03", 3723), ("1-01:02:03", 90123), ("00:00:01", 1), ("1-0", 86400), ("59:59", 3599)],
)
def test_slurm_time_counts_every_component(text: str, seconds: int) -> None:
    assert parse_slurm_time(text) == seconds


@pytest.mark.parametrize("value", [0, -5, True, 1.5, None, "0", "00:00", "0-0:0:0"])
def test_slurm_time_refuses_zero_negative_and_non_times_naming_the_field(value) -> None:
    with pytest.raises(OptionsError) as e:
        parse_slurm_time(value, "time")
    assert e.value.field == "time" and e.value.message


def test_an_int_time_is_minutes_from_one() -> None:
    assert parse_slurm_time(1) == 60


def test_limits_are_inclusive() -> None:
    # Exactly the partition's maxTime and maxNodes, and no GPUs, are allowed.
    clean = validate(CONF, ALLOC, {"partition": "regular", "time": "12:00:00", "nodes": 16, "gpus": 0})
    assert (clean.time, clean.time_seconds, clean.nodes, clean.gpus) == ("12:00:00", 43200, 16, 0)
    assert refused(CONF, {"partition": "regular", "time": "12:00:01"}, ALLOC).field == "time"


def test_the_chosen_account_and_reservation_reach_the_job() -> None:
    allocs = {"allocations": [*ALLOC["allocations"], {"account": "m9999", "partitions": ["regular"]}]}
    clean = validate(CONF, allocs, {"account": "m9999", "reservation": "hackathon"})
    assert clean.account == "m9999"
    assert {"--account=m9999", "--reservation=hackathon"} <= set(SLURM.directives(clean, False))


def test_license_counts_reach_the_job() -> None:
    clean = validate(CONF, None, {"licenses": "scratch:2"})  # one name may come as a string
    assert clean.licenses == ("scratch:2",)
    assert "--licenses=scratch:2" in SLURM.directives(clean, False)
    assert refused(CONF, {"licenses": [7]}).field == "licenses[0]"


def test_one_extra_directive_may_come_as_a_string() -> None:
    assert validate(CONF, None, {"extra_directives": "--mem=4G"}).extra_directives == ("--mem=4G",)


@pytest.mark.parametrize("line", ["--mem=4G\r--exclusive", "--mem=4G\x00", "--mem=4G\n#SBATCH --x"])
def test_a_control_character_in_an_extra_directive_is_refused(line: str) -> None:
    assert refused(CONF, {"extra_directives": [line]}).field == "extra_directives[0]"


def test_a_system_that_does_not_say_so_allows_no_startup_script_and_no_reservation() -> None:
    grid = grid_with(singleuser={"allowStartupScript": None}, slurm={"allowReservations": None})
    conf = grid.cell("pm-configurable")
    assert choices(conf)["startup_script"] is False and choices(conf)["reservations"] is False
    assert refused(conf, {"startup_script": "~/start.sh"}).field == "startup_script"
    assert refused(conf, {"reservation": "r1"}).field == "reservation"


def test_a_system_without_constraints_refuses_a_users_constraint() -> None:
    conf = grid_with(slurm={"constraints": None}).cell("pm-configurable")
    assert refused(conf, {"constraint": "cpu"}).field == "constraint"


def test_a_spin_or_ssh_cell_takes_no_slurm_options() -> None:
    values = add_cell(copy.deepcopy(VALUES), "pm-spin", "kubernetes")
    spin = Grid.from_values(values).cell("pm-spin")
    assert allowed_fields(spin) == ("version",)
    assert refused(spin, {"startup_script": "~/start.sh"}).field == "startup_script"
    ssh = GRID.cell("pm-shared")
    e = refused(ssh, {"nodes": 2})
    assert e.field == "nodes" and e.message == "is not an option of this server"


def test_declining_email_does_not_end_the_check_of_later_options() -> None:
    grid = grid_with(slurm={"emailOnStart": False})
    fixed = grid.cell("pm-exclusive")
    assert refused(fixed, {"email_on_start": False, "nodes": 2}).field == "nodes"


@pytest.mark.parametrize("word", ["Yes", " TRUE ", "On"])
def test_email_on_start_reads_yes_in_any_case(word: str) -> None:
    assert validate(FIXED, None, {"email_on_start": word}).email_on_start


def test_a_configurable_level_takes_the_users_value_over_its_own_settings() -> None:
    values = copy.deepcopy(VALUES)
    values["systems"]["pm"]["levels"]["configurable"]["slurm"] = {"partition": "gpu", "nodes": 2}
    conf = Grid.from_values(values).cell("pm-configurable")
    clean = validate(conf, None, {"nodes": 3})
    assert (clean.partition, clean.nodes) == ("gpu", 3)
    assert choices(conf)["fixed"] == {}


def test_the_form_is_offered_what_the_system_allows() -> None:
    offered = choices(CONF)
    slurm = VALUES["systems"]["pm"]["slurm"]
    assert offered["constraints"] == slurm["constraints"]
    assert offered["licenses"] == slurm["licenses"]
    assert offered["reservations"] is True
    assert offered["extra_directives"] == slurm["extraDirectivesAllowed"]
    assert offered["defaults"] == slurm["defaults"]
    assert choices(FIXED)["fixed"] == VALUES["systems"]["pm"]["levels"]["exclusive"]["slurm"]


def test_a_partition_without_limits_does_not_break_the_check_without_a_partition() -> None:
    grid = grid_with(
        slurm={"partitions": {"small": {"maxNodes": 2}, "nolimit": {}}, "defaults": {"qos": "interactive"}}
    )
    assert validate(grid.cell("pm-configurable"), None, {"nodes": 2}).nodes == 2


@pytest.mark.parametrize("raw", ["nodes=2", ["nodes", 2], 7])
def test_user_options_that_are_not_an_object_are_refused(raw) -> None:
    assert refused(CONF, raw).field == "user_options"
