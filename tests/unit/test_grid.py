"""The grid model both the dispatcher and the console read."""

from __future__ import annotations

import pytest

from hpchub.grid import Grid, UnknownServer
from tests.harness.values import chart_levels, grid_values, nersc_values


def nersc() -> Grid:
    return Grid.from_values(nersc_values())


def test_rows_and_columns_are_ordered() -> None:
    g = nersc()
    assert [s.display_name for s in g.systems] == ["Perlmutter", "Cori", "Spin"]
    assert [lv.title for lv in g.levels] == [
        "Shared CPU Node",
        "Exclusive CPU Node",
        "Exclusive GPU Node",
        "Configurable",
    ]


def test_spin_offers_only_the_shared_level() -> None:
    g = nersc()
    spin = next(s for s in g.systems if s.name == "spin")
    row = g.row(spin)
    assert [c.server_name if c else None for c in row] == [
        "spin-shared",
        None,
        None,
        None,
    ]
    assert row[0].backend == "kubernetes"


def test_cells_carry_backend_groups_and_slurm_settings() -> None:
    g = nersc()
    assert g.cell("perlmutter-shared").backend == "ssh"
    gpu = g.cell("perlmutter-gpu")
    assert gpu.backend == "slurm"
    assert gpu.fixed["gpus"] == 4 and gpu.is_batch and gpu.limits == gpu.system.batch["slurm"]
    cori_gpu = g.cell("cori-gpu")
    assert cori_gpu.allowed_for(["gpu-users"]) and not cori_gpu.allowed_for(["other"])
    assert g.cell("perlmutter-gpu").allowed_for([])


def test_maintenance_flag_and_message() -> None:
    cori = nersc().cell("cori-exclusive").system
    assert cori.maintenance is True
    assert "maintenance" in cori.maintenance_message


def test_unknown_named_server_is_refused() -> None:
    with pytest.raises(UnknownServer, match="cori-bigmem"):
        nersc().cell("cori-bigmem")


def test_unknown_level_names_the_key() -> None:
    values = grid_values(cells={"x-huge": "ssh"}, levels=chart_levels())
    with pytest.raises(ValueError, match=r"systems\.x\.levels\.huge: unknown service level"):
        Grid.from_values(values)


def test_unknown_backend_names_the_key_and_the_backends() -> None:
    values = grid_values(cells={"x-shared": "pbs"}, levels=chart_levels())
    with pytest.raises(ValueError) as err:
        Grid.from_values(values)
    assert (
        str(err.value)
        == "systems.x.levels.shared.backend: 'pbs' is not one of ('kubernetes', 'ssh', 'slurm')"
    )


def test_a_maintenance_message_without_enabled_is_not_a_maintenance() -> None:
    values = grid_values(
        {"x": {"maintenance": {"message": "next week"}}}, cells={"x-shared": "ssh"}, levels=chart_levels()
    )
    assert Grid.from_values(values).cell("x-shared").system.maintenance is False


def test_each_system_keeps_its_own_settings_and_each_level_its_texts() -> None:
    """What the spawners and the console read from a cell arrives unchanged: the system's
    ssh, singleuser, slurm, preSpawnChecks and status settings, the level's texts, and the
    versions of the cell's own environment (mutation testing: `sv.get("ssh") or {}` turned
    into `and {}` passed every grid test)."""
    values = nersc_values()
    values["systems"]["perlmutter"]["status"] = {"intervalSeconds": 45}
    g = Grid.from_values(values)
    pm = values["systems"]["perlmutter"]
    cell = g.cell("perlmutter-shared")
    assert cell.system.ssh == pm["ssh"] and cell.system.ssh["hosts"]
    assert cell.system.singleuser == pm["singleuser"]
    assert cell.system.batch["slurm"] == pm["slurm"] and cell.system.scheduler == "slurm"
    # A batch cell reads its system's scheduler settings; a login-node cell has none.
    assert g.cell("perlmutter-exclusive").limits == pm["slurm"] and cell.limits == {}
    assert cell.system.pre_spawn_checks == pm["preSpawnChecks"] and pm["preSpawnChecks"]
    assert cell.system.status == {"intervalSeconds": 45}
    shared = chart_levels()["shared"]
    assert (cell.level.resources, cell.level.use_cases) == (shared["resources"], shared["useCases"])
    assert cell.versions == pm["singleuser"]["versions"]
    spin = g.cell("spin-shared")
    assert spin.versions == values["spin"]["versions"] and spin.versions != cell.versions
    assert spin.default_version == values["spin"]["defaultVersion"]
