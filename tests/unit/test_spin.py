"""Spin's KubeSpawner traits come from values (no cluster needed)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from tornado import web

from hpchub.console.form import form_fields
from hpchub.grid import Grid
from hpchub.options import OptionsError, choices, validate
from hpchub.spawners.spin import SpinSpawner, image_for, volumes_from_values
from tests.harness.values import dispatcher, grid_values, nersc_values

SPIN = {
    "image": {"repository": "hpchub/singleuser", "tag": "0.1.0", "pullPolicy": "Always"},
    "versions": {"2026.05": {"tag": "0.0.9"}},
    "defaultVersion": "",
    "uid": 1000,
    "gid": 100,
    "startTimeout": 240,
    "resources": {"shared": {"cpuGuarantee": 0.5, "cpuLimit": 2, "memGuarantee": "1G", "memLimit": "4G"}},
    "volumes": {
        "home": {"mountPath": "/home/{username}", "nfs": {"server": "nfs.example.org", "path": "/homes"}},
        "cfs": {"mountPath": "/global/cfs", "readOnly": True, "persistentVolumeClaim": {"claimName": "cfs"}},
    },
    "nodeSelector": {"pool": "spin"},
}
# Spin's versions are `spin.versions` (as documented); the system itself lists none.
VALUES = grid_values(cells={"spin-shared": "kubernetes"})


@pytest.fixture(autouse=True)
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    # KubeSpawner loads a kube config and builds an API client in __init__; these tests
    # check traits only (live pods are the cluster issue's tests).
    monkeypatch.setattr("kubespawner.spawner.load_config", lambda **kw: None)
    monkeypatch.setattr("kubespawner.spawner.shared_client", lambda name: None)


def spawner(values: dict | None = None) -> SpinSpawner:
    s = dispatcher(values or {**VALUES, "spin": SPIN}, "spin-shared", _mock=True)
    assert type(s) is SpinSpawner
    return s


def test_kubespawner_traits_from_values() -> None:
    s = spawner()
    assert s.image == "hpchub/singleuser:0.1.0"
    assert s.image_pull_policy == "Always"
    assert (s.cpu_guarantee, s.cpu_limit) == (0.5, 2)
    assert (s.mem_guarantee, s.mem_limit) == (1024**3, 4 * 1024**3)
    assert (s.uid, s.gid, s.fs_gid) == (1000, 100, 100)
    assert s.node_selector == {"pool": "spin"}
    assert s.start_timeout == 240
    assert s.extra_labels["hpchub/level"] == "shared"
    names = {v["name"]: v for v in s.volumes}
    assert names["home"]["nfs"]["server"] == "nfs.example.org"
    assert {"name": "cfs", "mountPath": "/global/cfs", "readOnly": True} in s.volume_mounts


CLAIMS = {"fromAuthState": {"uid": "oauth_user.uidNumber", "gid": "oauth_user.gidNumber"}}


def user(auth_state: dict | None) -> SimpleNamespace:
    async def get_auth_state() -> dict | None:
        return auth_state

    return SimpleNamespace(name="alice", id=7, url="/user/alice/", get_auth_state=get_auth_state)


async def test_uid_and_gid_from_the_idp_claims_in_auth_state() -> None:
    s = spawner()
    s.identity = CLAIMS
    s.user = user({"oauth_user": {"uidNumber": 54321, "gidNumber": "6789"}})
    await s.check_options({})
    assert (s.uid, s.gid, s.fs_gid) == (54321, 6789, 6789)


@pytest.mark.parametrize(
    ("claims", "status", "words"),
    [
        ({"uidNumber": 0, "gidNumber": 0}, 403, "uid 0, below 1000"),
        ({"uidNumber": 5000, "gidNumber": 0}, 403, "gid 0, below 100"),
        ({"gidNumber": 100}, 403, "did not say which uid"),
        ({"uidNumber": True, "gidNumber": 100}, 403, "did not say which uid"),
    ],
)
async def test_a_missing_or_system_uid_is_refused_never_defaulted(claims, status, words) -> None:
    s = spawner()
    s.identity = CLAIMS
    s.user = user({"oauth_user": claims})
    with pytest.raises(web.HTTPError) as e:
        await s.check_options({})
    assert e.value.status_code == status and words in (e.value.log_message % e.value.args)
    assert (s.uid, s.gid) == (1000, 100)  # unchanged: the pod is never made


async def test_home_is_the_users_mounted_home_and_tmp_is_writable() -> None:
    s = spawner()
    s.user = user(None)
    await s.check_options({})
    assert s.environment["HOME"] == "/home/alice" and s.working_dir == "/home/alice"
    mounts = {m["mountPath"]: m["name"] for m in s.volume_mounts}
    assert mounts["/home/{username}"] == "home"  # the user's volume, no scratch over it
    assert mounts["/tmp"] == "hpchub-tmp"
    assert {"name": "hpchub-tmp", "emptyDir": {}} in s.volumes
    assert "hpchub-home" not in mounts.values()


async def test_home_without_a_home_volume_is_a_scratch_directory() -> None:
    s = spawner()
    s.spin = {**SPIN, "volumes": {}}
    s.configure_from_cell()
    s.user = user(None)
    await s.check_options({})
    await s.check_options({})  # a second start adds no second scratch volume
    assert s.environment["HOME"] == "/home/alice"
    assert [m for m in s.volume_mounts if m["mountPath"] == "/home/alice"] == [
        {"name": "hpchub-home", "mountPath": "/home/alice"}
    ]
    assert len(s.volumes) == 2


async def test_spin_pods_get_the_charts_hardening() -> None:
    s = spawner()
    s.user = user(None)
    await s.check_options({})
    pod = await s.get_pod_manifest()
    csc = pod.spec.containers[0].security_context
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert csc["allowPrivilegeEscalation"] is False and csc["readOnlyRootFilesystem"] is True
    assert csc["runAsNonRoot"] is True and csc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert (csc["runAsUser"], csc["runAsGroup"]) == (1000, 100)
    assert pod.spec.security_context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod.spec.security_context["runAsNonRoot"] is True


async def test_version_selects_the_image_tag() -> None:
    s = spawner()
    s.user = user(None)
    await s.check_options({"version": "2026.05"})
    assert s.image == "hpchub/singleuser:0.0.9"


def test_image_and_volume_helpers() -> None:
    assert image_for({"image": {"repository": "r", "tag": "1"}}, None) == "r:1"
    vols, mounts = volumes_from_values({"scratch": {"mountPath": "/s", "hostPath": {"path": "/scratch"}}})
    assert vols == [{"name": "scratch", "hostPath": {"path": "/scratch"}}]
    assert mounts == [{"name": "scratch", "mountPath": "/s"}]
    # z2jh's emptyDir extraVolumes, e.g. a larger /dev/shm.
    vols, mounts = volumes_from_values({"shm": {"mountPath": "/dev/shm", "emptyDir": {"medium": "Memory"}}})
    assert vols == [{"name": "shm", "emptyDir": {"medium": "Memory"}}]
    assert mounts == [{"name": "shm", "mountPath": "/dev/shm"}]


def test_spin_versions_of_the_nersc_example_are_offered_and_accepted() -> None:
    cell = Grid.from_values(nersc_values()).cell("spin-shared")
    assert validate(cell, None, {"version": "2026.05"}).version == "2026.05"
    assert validate(cell, None, {}).version == "2026.11"  # spin.defaultVersion
    assert choices(cell)["versions"] == ["2026.05", "2026.11"]
    assert choices(cell)["default_version"] == "2026.11"
    (field,) = [f for f in form_fields(cell, None) if f.name == "version"]
    assert [v for v, _ in field.choices] == ["2026.11", "2026.05"] and field.value == "2026.11"
    with pytest.raises(OptionsError) as e:
        validate(cell, None, {"version": "1999"})
    assert e.value.field == "version" and "2026.05, 2026.11" in e.value.message


async def test_spin_version_of_the_nersc_example_selects_its_image() -> None:
    s = spawner(nersc_values())
    s.user = user(None)
    await s.check_options({"version": "2026.05"})
    assert s.image == "hpchub/singleuser:0.0.9"
    await s.check_options({})
    assert s.image == "hpchub/singleuser:0.1.0"


def test_an_hpc_systems_versions_are_not_spins() -> None:
    # Perlmutter's module versions do not leak into Spin, nor Spin's images into Perlmutter.
    values = nersc_values()
    values["spin"]["versions"] = {"2025.01": {"tag": "0.0.1"}}
    values["spin"]["defaultVersion"] = "2025.01"
    grid = Grid.from_values(values)
    assert choices(grid.cell("spin-shared"))["versions"] == ["2025.01"]
    assert choices(grid.cell("perlmutter-shared"))["versions"] == ["2026.05", "2026.11"]
