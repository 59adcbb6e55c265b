"""The configurable form: fields from values and allocations; form data -> user_options
that the one validator (hpchub.options) accepts or refuses naming the field."""

from __future__ import annotations

import pytest

from hpchub.console.form import MAIL_DIRECTIVE, error_field, form_fields, options_from_form, render_fields
from hpchub.grid import Grid
from hpchub.options import OptionsError, validate
from hpchub.schedulers.slurm import SlurmScheduler
from tests.harness.values import nersc_values

SLURM = SlurmScheduler()


ALLOCS = {
    "allocations": [
        {"account": "m1000", "qos": ["interactive", "regular"], "partitions": ["regular", "debug"]},
        {"account": "m2000", "qos": ["regular"], "partitions": ["gpu"]},
    ]
}


@pytest.fixture(scope="module")
def cell():
    values = nersc_values()
    return Grid.from_values(values).cell("perlmutter-configurable")


def by_name(fields):
    return {f.name: f for f in fields}


def test_fields_come_from_the_systems_slurm_settings_and_the_users_allocations(cell):
    f = by_name(form_fields(cell, ALLOCS))
    assert [v for v, _ in f["account"].choices] == ["m1000", "m2000"]
    assert [v for v, _ in f["partition"].choices] == ["debug", "gpu", "regular"]
    assert "regular: up to 16 nodes, 12:00:00 max" in f["partition"].help
    assert f["qos"].value == "interactive"  # the system's default
    assert f["time"].value == "01:00:00"
    assert f["gpus"].max == 4
    assert [v for v, _ in f["version"].choices] == ["2026.11", "2026.05"]
    assert f["version"].value == "2026.11"
    assert f["email_on_start"].kind == "checkbox" and f["email_on_start"].value is False
    assert "--mem" in f["extra_directives"].help
    assert "reservation" in f and "licenses" in f


def test_without_a_default_version_the_form_preselects_what_start_gives(cell):
    """No defaultVersion: a plain Start runs the system's own environment, so the form
    offers and preselects that, not the first version label (user guide, "Previous
    environment versions")."""
    values = nersc_values()
    del values["systems"]["perlmutter"]["singleuser"]["defaultVersion"]
    nodefault = Grid.from_values(values).cell("perlmutter-configurable")
    f = by_name(form_fields(nodefault, ALLOCS))["version"]
    assert f.choices[0] == ("", "current environment (default)")
    assert [v for v, _ in f.choices[1:]] == ["2026.11", "2026.05"]
    assert f.value == ""
    submitted = validate(nodefault, ALLOCS, options_from_form({"version": [f.value]}))
    assert submitted.version is None
    assert validate(nodefault, ALLOCS, {}).version is None  # Start without options


def test_without_allocation_data_the_account_is_free_text(cell):
    assert by_name(form_fields(cell, {}))["account"].kind == "text"


def test_last_options_are_prefilled(cell):
    last = {"partition": "gpu", "time": "02:00:00", "extra_directives": ["--mem=64G", MAIL_DIRECTIVE]}
    f = by_name(form_fields(cell, ALLOCS, last))
    assert f["partition"].value == "gpu"
    assert f["time"].value == "02:00:00"
    assert f["email_on_start"].value is True
    assert f["extra_directives"].value == "--mem=64G"


def test_form_data_becomes_options_the_validator_accepts(cell):
    form = {
        "_xsrf": ["x"],
        "account": ["m1000"],
        "partition": ["regular"],
        "qos": ["interactive"],
        "nodes": ["2"],
        "time": ["02:00:00"],
        "gpus": ["0"],
        "constraint": [""],
        "reservation": [""],
        "licenses": ["scratch", "cfs"],
        "version": ["2026.05"],
        "extra_directives": ["--mem=64G\r\n\r\n--comment=test"],
        "email_on_start": ["on"],
    }
    raw = options_from_form(form)
    assert raw["extra_directives"] == ["--mem=64G", "--comment=test"]
    assert raw["email_on_start"] is True
    assert "constraint" not in raw and "_xsrf" not in raw
    clean = validate(cell, ALLOCS, raw)
    assert clean.time == "02:00:00" and clean.nodes == 2 and clean.licenses == ("scratch", "cfs")
    assert "--mail-type=BEGIN" in SLURM.directives(clean, False)


def test_refusal_names_the_field_it_is_shown_next_to(cell):
    raw = options_from_form({"partition": ["debug"], "time": ["05:00:00"]})
    with pytest.raises(OptionsError) as exc:
        validate(cell, ALLOCS, raw)
    html = render_fields(form_fields(cell, ALLOCS, raw, {exc.value.field: exc.value.message}))
    assert 'id="opt-time-error"' in html
    assert 'aria-describedby="opt-time-help opt-time-error"' in html
    assert "over the limit" in html


def test_extra_directive_errors_belong_to_the_textarea():
    assert error_field("extra_directives[2]") == "extra_directives"
    assert error_field("time") == "time"


def test_user_text_is_escaped_in_the_form(cell):
    html = render_fields(form_fields(cell, ALLOCS, {"reservation": '"><script>alert(1)</script>'}))
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_email_on_start_is_offered_on_fixed_slurm_levels_unless_turned_off():
    values = nersc_values()
    grid = Grid.from_values(values)
    # Perlmutter's exclusive level is fixed; its Options… form still has the box.
    assert "email_on_start" in by_name(form_fields(grid.cell("perlmutter-exclusive"), ALLOCS))
    assert "email_on_start" not in by_name(form_fields(grid.cell("perlmutter-shared"), ALLOCS))
    assert options_from_form({"version": ["2026.05"]}) == {"version": "2026.05"}  # unchecked: absent
    values["systems"]["perlmutter"]["slurm"]["emailOnStart"] = False
    grid = Grid.from_values(values)
    for name in ("perlmutter-exclusive", "perlmutter-configurable"):
        assert "email_on_start" not in by_name(form_fields(grid.cell(name), ALLOCS))
