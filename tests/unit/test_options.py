"""The one options validator: what users may ask of each cell, and what is refused."""

from __future__ import annotations

import pytest

from hpchub.grid import Grid
from hpchub.options import (
    OptionsError,
    allowed_fields,
    choices,
    format_slurm_time,
    parse_slurm_time,
    validate,
)
from hpchub.schedulers.slurm import SlurmScheduler
from tests.harness.values import grid_values

VALUES = grid_values(
    {
        "pm": {
            "displayName": "Perlmutter",
            "singleuser": {
                "versions": {"2026.11": {"modules": ["py/3.12"]}, "2026.05": {"modules": ["py/3.11"]}},
                "defaultVersion": "2026.11",
                "allowStartupScript": True,
            },
            "slurm": {
                "partitions": {
                    "regular": {"maxNodes": 16, "maxTime": "12:00:00", "maxGpus": 0},
                    "gpu": {"maxNodes": 4, "maxTime": "06:00:00", "maxGpus": 4},
                },
                "qos": ["interactive", "regular"],
                "constraints": ["cpu", "gpu"],
                "licenses": ["scratch", "cfs"],
                "allowReservations": True,
                "extraDirectivesAllowed": ["--mem", "--mail-type", "--exclusive"],
                "defaults": {"qos": "interactive", "time": "01:00:00", "partition": "regular", "nodes": 1},
            },
        }
    },
    cells={
        "pm-shared": "ssh",
        "pm-exclusive": {
            "backend": "slurm",
            "slurm": {"partition": "regular", "nodes": 1, "time": "04:00:00", "exclusive": True},
        },
        "pm-configurable": "slurm",
    },
    levels={
        "shared": "Shared",
        "exclusive": "Exclusive",
        "configurable": {"title": "Configurable", "configurable": True},
    },
)
GRID = Grid.from_values(VALUES)
CONF = GRID.cell("pm-configurable")
FIXED = GRID.cell("pm-exclusive")
SHARED = GRID.cell("pm-shared")
ALLOC = {"allocations": [{"account": "m1234", "qos": ["interactive"], "partitions": ["regular", "gpu"]}]}

SLURM = SlurmScheduler()


def refused(cell, raw, auth_state=None) -> OptionsError:
    with pytest.raises(OptionsError) as e:
        validate(cell, auth_state, raw)
    return e.value


def test_configurable_level_accepts_allowed_values_and_fills_defaults() -> None:
    clean = validate(
        CONF,
        ALLOC,
        {
            "partition": "gpu",
            "nodes": "2",
            "gpus": 4,
            "time": "90",
            "constraint": "gpu",
            "licenses": ["scratch"],
        },
    )
    assert clean.account == "m1234"  # the user's first allocation
    assert clean.qos == "interactive"  # system default
    assert (clean.partition, clean.nodes, clean.gpus, clean.time) == ("gpu", 2, 4, "01:30:00")
    assert clean.version == "2026.11"
    assert "--partition=gpu" in SLURM.directives(clean, False)
    # GPUs are per node everywhere (form, schema, limits): never the job total --gpus.
    assert "--gpus-per-node=4" in SLURM.directives(clean, False)
    assert not any(d.startswith("--gpus=") for d in SLURM.directives(clean, False))
    assert "--licenses=scratch" in SLURM.directives(clean, False)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"account": "; rm -rf ~"}, "account"),
        ({"account": "$(touch /tmp/x)"}, "account"),
        ({"partition": "nosuch"}, "partition"),
        ({"nodes": -1}, "nodes"),
        ({"nodes": "1; id"}, "nodes"),
        ({"nodes": True}, "nodes"),
        ({"nodes": 17}, "nodes"),
        ({"time": "13:00:00"}, "time"),
        ({"time": "1:00:00`id`"}, "time"),
        ({"gpus": 1}, "gpus"),  # regular has maxGpus 0
        ({"qos": "premium"}, "qos"),
        ({"constraint": "knl"}, "constraint"),
        ({"licenses": ["nosuch"]}, "licenses[0]"),
        ({"reservation": "a b"}, "reservation"),
        ({"extra_directives": ["--mem=4G\n#SBATCH --wrap=id"]}, "extra_directives[0]"),
        ({"extra_directives": ["--wrap=id"]}, "extra_directives[0]"),
        ({"extra_directives": ["--mem=$(id)"]}, "extra_directives[0]"),
        ({"extra_directives": ["--mem='4G'"]}, "extra_directives[0]"),
        ({"version": "1999"}, "version"),
        ({"startup_script": "~/x.sh; id"}, "startup_script"),
        ({"startup_script": "../../etc/x"}, "startup_script"),
        ({"command": "bash"}, "command"),
    ],
)
def test_bad_options_are_refused_naming_the_field(raw: dict, field: str) -> None:
    assert refused(CONF, raw).field == field


def test_without_a_partition_the_loosest_partition_limits_apply() -> None:
    values = {**VALUES, "systems": {"pm": {**VALUES["systems"]["pm"]}}}
    values["systems"]["pm"]["slurm"] = {**VALUES["systems"]["pm"]["slurm"], "defaults": {}}
    cell = Grid.from_values(values).cell("pm-configurable")
    assert refused(cell, {"time": "13:00:00"}).field == "time"
    assert refused(cell, {"nodes": 17}).field == "nodes"
    assert validate(cell, None, {"time": "11:00:00", "gpus": 4}).partition is None


def test_account_must_be_one_of_the_users_allocations() -> None:
    e = refused(CONF, {"account": "m9999"}, ALLOC)
    assert e.field == "account" and "m1234" in e.message


def test_allocation_limits_qos_and_partition() -> None:
    alloc = {"allocations": [{"account": "m1", "qos": ["interactive"], "partitions": ["gpu"]}]}
    assert refused(CONF, {"qos": "regular", "partition": "gpu"}, alloc).field == "qos"
    assert refused(CONF, {}, alloc).field == "partition"  # default partition 'regular' not allowed


def test_fixed_level_takes_its_settings_and_refuses_changes() -> None:
    clean = validate(FIXED, None, {"reservation": "maint"})
    assert (clean.partition, clean.nodes, clean.time, clean.exclusive) == ("regular", 1, "04:00:00", True)
    assert clean.reservation == "maint"
    assert "--exclusive" in SLURM.directives(clean, False)
    e = refused(FIXED, {"nodes": 4})
    assert e.field == "nodes" and "fixed" in e.message


def test_ssh_level_accepts_only_version_and_startup_script() -> None:
    clean = validate(SHARED, None, {"version": "2026.05", "startup_script": "~/start.sh"})
    assert (clean.version, clean.startup_script, clean.partition) == ("2026.05", "~/start.sh", None)
    assert refused(SHARED, {"partition": "regular"}).field == "partition"
    assert allowed_fields(SHARED) == ("version", "startup_script")


def test_empty_form_fields_mean_not_set() -> None:
    assert validate(CONF, None, {"reservation": "", "licenses": [], "account": None}).reservation is None


def test_extra_directives_are_normalised() -> None:
    clean = validate(CONF, None, {"extra_directives": ["#SBATCH --mem 4G", "--mail-type=END", "--exclusive"]})
    assert clean.extra_directives == ("--mem=4G", "--mail-type=END", "--exclusive")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 1800), ("30:15", 1815), ("01:00:00", 3600), ("1-00", 86400), ("1-02:03:04", 93784), (45, 2700)],
)
def test_slurm_time_formats(text, seconds) -> None:
    assert parse_slurm_time(text) == seconds


def test_slurm_time_formatting() -> None:
    assert format_slurm_time(93784) == "1-02:03:04"
    assert format_slurm_time(5400) == "01:30:00"


def test_options_error_carries_field_and_message() -> None:
    e = OptionsError("nodes", "must be at least 1")
    assert (e.field, e.message, str(e)) == ("nodes", "must be at least 1", "nodes: must be at least 1")


def test_choices_for_the_form_follow_limits_and_allocations() -> None:
    alloc = {"allocations": [{"account": "m1", "qos": ["interactive"], "partitions": ["gpu"]}]}
    c = choices(CONF, alloc)
    assert c["accounts"] == ["m1"] and list(c["partitions"]) == ["gpu"] and c["qos"] == ["interactive"]
    assert c["partitions"]["gpu"]["maxGpus"] == 4 and c["versions"] == ["2026.05", "2026.11"]
    assert choices(FIXED)["fixed"]["partition"] == "regular"
    assert choices(SHARED) == {
        "fields": ["version", "startup_script"],
        "versions": ["2026.05", "2026.11"],
        "default_version": "2026.11",
        "startup_script": True,
    }


def test_email_on_start_is_a_choice_on_every_slurm_level() -> None:
    for cell in (FIXED, CONF):
        assert "email_on_start" in allowed_fields(cell) and choices(cell)["email_on_start"] is True
        assert "--mail-type=BEGIN" in SLURM.directives(validate(cell, None, {"email_on_start": True}), False)
        assert "--mail-type=BEGIN" in SLURM.directives(validate(cell, None, {"email_on_start": "on"}), False)
        # Off unless asked: no mail directive, and no --mail-user ever (Slurm mails the owner).
        for raw in ({}, {"email_on_start": False}, {"email_on_start": "off"}):
            assert not any(d.startswith("--mail") for d in SLURM.directives(validate(cell, None, raw), False))
    assert "email_on_start" not in allowed_fields(SHARED)
    assert refused(SHARED, {"email_on_start": True}).field == "email_on_start"


@pytest.mark.parametrize("value", ["yes; id", "$(id)", 2, ["on"], {"a": 1}])
def test_email_on_start_takes_only_yes_or_no(value) -> None:
    assert refused(FIXED, {"email_on_start": value}).field == "email_on_start"


def test_operators_can_turn_email_on_start_off() -> None:
    values = {**VALUES, "systems": {"pm": {**VALUES["systems"]["pm"]}}}
    values["systems"]["pm"]["slurm"] = {**VALUES["systems"]["pm"]["slurm"], "emailOnStart": False}
    grid = Grid.from_values(values)
    for name in ("pm-exclusive", "pm-configurable"):
        cell = grid.cell(name)
        assert "email_on_start" not in allowed_fields(cell) and choices(cell)["email_on_start"] is False
        e = refused(cell, {"email_on_start": True})
        assert e.field == "email_on_start" and "does not send job emails" in e.message
        assert not validate(cell, None, {"email_on_start": False}).email_on_start
