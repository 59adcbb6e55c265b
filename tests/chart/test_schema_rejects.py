"""Bad values are refused at `helm template`/`helm install` time with an error that names
the offending key — by the JSON schema for shape, by the chart's validation template for
references between keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helm import CONFIG, render_error

MINIMAL = CONFIG / "values-minimal.yaml"
NERSC = CONFIG / "values-nersc-example.yaml"


def _values_file(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    return p


def test_misspelled_key_is_refused_naming_it(tmp_path: Path) -> None:
    err = render_error([MINIMAL, _values_file(tmp_path, "hub:\n  imagee: {repository: x, tag: y}\n")])
    assert "imagee" in err
    assert "/hub" in err


def test_misspelled_nested_key_in_a_system_is_refused(tmp_path: Path) -> None:
    err = render_error(
        [
            NERSC,
            _values_file(tmp_path, "systems:\n  perlmutter:\n    ssh:\n      hostz: [a]\n"),
        ]
    )
    assert "hostz" in err
    assert "/systems/perlmutter/ssh" in err


def test_wrong_type_is_refused_naming_the_key() -> None:
    err = render_error([MINIMAL], ["culling.timeout=soon"])
    assert "/culling/timeout" in err
    assert "integer" in err


def test_unknown_service_level_is_refused_naming_system_and_level(
    tmp_path: Path,
) -> None:
    bad = "systems:\n  perlmutter:\n    levels:\n      bigmem: {backend: slurm}\n"
    err = render_error([NERSC, _values_file(tmp_path, bad)])
    assert "systems.perlmutter.levels.bigmem: unknown service level" in err
    assert "configurable, exclusive, gpu, shared" in err


def test_unknown_backend_is_refused(tmp_path: Path) -> None:
    bad = "systems:\n  spin:\n    levels:\n      shared: {backend: docker}\n"
    err = render_error([NERSC, _values_file(tmp_path, bad)])
    assert "/systems/spin/levels/shared/backend" in err


@pytest.mark.parametrize("cidr", ["10.0.0.0/33", "300.1.2.3/8", "10.0.0.0", "example.org/24"])
def test_bad_cidr_is_refused_naming_the_key(cidr: str) -> None:
    err = render_error([MINIMAL], [f"hpcNetwork.cidrs[0]={cidr}"])
    assert "/hpcNetwork/cidrs/0" in err


def test_good_cidrs_are_accepted() -> None:
    from .helm import render

    docs = render(
        [MINIMAL],
        ["hpcNetwork.cidrs[0]=10.0.0.0/8", "hpcNetwork.cidrs[1]=fd00:10::/64"],
    )
    assert docs


def test_system_name_too_long_for_a_named_server_is_refused(tmp_path: Path) -> None:
    bad = "systems:\n  averyveryverylongname:\n    displayName: X\n    levels:\n      shared: {backend: kubernetes}\n"
    err = render_error([MINIMAL, _values_file(tmp_path, bad)])
    assert "averyveryverylongname" in err


def test_slurm_level_partition_must_exist(tmp_path: Path) -> None:
    bad = "systems:\n  perlmutter:\n    levels:\n      exclusive:\n        backend: slurm\n        slurm: {partition: nosuch}\n"
    err = render_error([NERSC, _values_file(tmp_path, bad)])
    assert "systems.perlmutter.levels.exclusive.slurm.partition" in err
    assert "nosuch" in err


def test_ssh_backend_without_known_hosts_is_refused(tmp_path: Path) -> None:
    bad = "systems:\n  hpc:\n    displayName: H\n    ssh: {hosts: [login1]}\n    levels:\n      shared: {backend: ssh}\n"
    err = render_error([MINIMAL, _values_file(tmp_path, bad)])
    assert "knownHosts" in err


def test_ssh_backend_without_ssh_settings_is_refused(tmp_path: Path) -> None:
    bad = "systems:\n  hpc:\n    displayName: H\n    levels:\n      shared: {backend: ssh}\n"
    err = render_error([MINIMAL, _values_file(tmp_path, bad)])
    assert "systems.hpc.levels.shared.backend" in err
    assert "systems.hpc.ssh" in err


def test_connect_back_without_host_is_refused() -> None:
    err = render_error([MINIMAL], ["hub.connectBack.type=NodePort"])
    assert "hub.connectBack.host: required" in err


def test_oauth_without_client_is_refused_with_a_hint() -> None:
    err = render_error([], [])  # the chart's defaults: auth.type=oauth, nothing configured
    assert "auth.oauth.clientId: required with auth.type=oauth" in err
    assert "auth.type=dummy" in err


def test_generated_secret_values_must_be_hex() -> None:
    err = render_error([MINIMAL], ["proxy.secretToken=not-hex"])
    assert "/proxy/secretToken" in err
