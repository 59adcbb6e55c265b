"""Bad values are refused at `helm template`/`helm install` time with an error that names
the offending key — by the JSON schema for shape, by the chart's validation template for
references between keys."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from tests.harness.values import site_values

from .helm import CONFIG, render, render_error

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


# A fixed level, or a system's defaults, outside its partition's limits: every start of that
# cell would be refused by the options validator, so the chart refuses it at install.
# (override under systems.perlmutter, the key the error must name, the field validate() names)
CROSS_KEY_LIMITS = [
    (
        {"levels": {"exclusive": {"slurm": {"nodes": 99}}}},
        "systems.perlmutter.levels.exclusive.slurm.nodes",
        "nodes",
    ),
    (
        {"levels": {"exclusive": {"slurm": {"time": "1-00:00"}}}},
        "systems.perlmutter.levels.exclusive.slurm.time",
        "time",
    ),
    (
        {"levels": {"exclusive": {"slurm": {"gpus": 1}}}},
        "systems.perlmutter.levels.exclusive.slurm.gpus",
        "gpus",
    ),
    ({"levels": {"gpu": {"slurm": {"gpus": 5}}}}, "systems.perlmutter.levels.gpu.slurm.gpus", "gpus"),
    # The level's partition changes, its time (04:00:00) stays: over debug's 00:30:00.
    (
        {"levels": {"exclusive": {"slurm": {"partition": "debug"}}}},
        "systems.perlmutter.levels.exclusive.slurm.time",
        "time",
    ),
    (
        {"levels": {"exclusive": {"slurm": {"qos": "nosuch"}}}},
        "systems.perlmutter.levels.exclusive.slurm.qos",
        "qos",
    ),
    (
        {"levels": {"exclusive": {"slurm": {"constraint": "knl"}}}},
        "systems.perlmutter.levels.exclusive.slurm.constraint",
        "constraint",
    ),
    # Defaults reach the configurable level; without a partition the loosest limit applies.
    ({"slurm": {"defaults": {"nodes": 17}}}, "systems.perlmutter.slurm.defaults.nodes", "nodes"),
    ({"slurm": {"defaults": {"time": "12:00:01"}}}, "systems.perlmutter.slurm.defaults.time", "time"),
    ({"slurm": {"defaults": {"partition": "debug"}}}, "systems.perlmutter.slurm.defaults.time", "time"),
    (
        {"slurm": {"defaults": {"partition": "nosuch"}}},
        "systems.perlmutter.slurm.defaults.partition",
        "partition",
    ),
]


def _site_values(override: dict) -> dict:
    """The chart's defaults, the NERSC example and ``override``, merged as helm does."""
    return site_values(yaml.safe_load(NERSC.read_text()), override)


def _first_refused_cell(values: dict) -> str:
    """The field the hub's options validator names for the first perlmutter cell it
    refuses with no user options (what every start of that cell would hit)."""
    from hpchub.grid import Grid
    from hpchub.options import OptionsError, validate

    grid = Grid.from_values(values)
    for _name, cell in sorted(grid.cells.items()):
        if cell.system.name == "perlmutter" and cell.backend == "slurm":
            try:
                validate(cell, None, {})
            except OptionsError as e:
                return e.field
    return ""


@pytest.mark.parametrize(
    ("override", "key", "field"),
    CROSS_KEY_LIMITS,
    ids=[c[1].split(".", 2)[2] + "=" + str(c[0]) for c in CROSS_KEY_LIMITS],
)
def test_slurm_settings_outside_the_partition_limits_are_refused_naming_the_key(
    tmp_path: Path, override: dict, key: str, field: str
) -> None:
    err = render_error([NERSC, _values_file(tmp_path, yaml.safe_dump({"systems": {"perlmutter": override}}))])
    assert f"{key}: " in err, err
    # The chart refuses exactly what the hub would refuse at every start of that cell.
    values = _site_values({"systems": {"perlmutter": override}})
    assert _first_refused_cell(values) == field


@pytest.mark.parametrize(
    "override",
    [
        {"levels": {"exclusive": {"slurm": {"nodes": 16, "time": "12:00:00"}}}},
        {"levels": {"gpu": {"slurm": {"gpus": 4, "time": "6:00:00"}}}},
        {"levels": {"exclusive": {"slurm": {"partition": "debug", "time": "30:00", "nodes": 2}}}},
        {"slurm": {"defaults": {"nodes": 16, "time": "12:00:00"}}},
    ],
)
def test_slurm_settings_at_the_partition_limits_are_accepted(tmp_path: Path, override: dict) -> None:
    from .helm import render

    assert render([NERSC, _values_file(tmp_path, yaml.safe_dump({"systems": {"perlmutter": override}}))])
    values = _site_values({"systems": {"perlmutter": override}})
    assert _first_refused_cell(values) == ""


DEV = CONFIG / "values-dev.yaml"


def test_ssh_and_slurm_systems_with_cluster_ip_connect_back_are_refused() -> None:
    # Notebooks on login and compute nodes cannot reach a ClusterIP Service.
    err = render_error([DEV], ["hub.connectBack.type=ClusterIP"])
    assert "hub.connectBack.type: ClusterIP cannot work for systems.mini" in err
    assert "shared (ssh)" in err and "exclusive (slurm)" in err
    assert "systems.mini.ssh.tunnel" in err


def test_cluster_ip_connect_back_is_fine_in_tunnel_mode_and_for_spin_only() -> None:
    from .helm import render

    assert render([DEV], ["hub.connectBack.type=ClusterIP", "systems.mini.ssh.tunnel=true"])
    assert render([MINIMAL], ["hub.connectBack.type=ClusterIP"])


def test_ssh_system_without_hpc_network_cidrs_is_refused() -> None:
    # The hub's NetworkPolicy would allow no connection to the login nodes' port 22.
    err = render_error([DEV], ["hpcNetwork.cidrs=null"])
    assert "hpcNetwork.cidrs: empty" in err
    assert "systems.mini" in err


def test_empty_cidrs_are_accepted_when_the_operator_opens_egress_or_turns_the_policy_off() -> None:
    from .helm import render

    assert render([DEV], ["hpcNetwork.cidrs=null", "hub.networkPolicy.enabled=false"])
    assert render(
        [DEV],
        ["hpcNetwork.cidrs=null", "hub.networkPolicy.extraEgress[0].to[0].ipBlock.cidr=10.1.0.0/16"],
    )


def test_a_status_account_set_in_a_values_file_is_turned_off_with_null() -> None:
    """Per-user status queries over values-dev's status account (the e2e per-user mode)."""
    docs = render([DEV], ["systems.mini.status.user=null", "systems.mini.status.forceCommand=null"])
    (secret,) = [d for d in docs if d["kind"] == "Secret" and "values.yaml" in (d.get("data") or {})]
    mini = yaml.safe_load(base64.b64decode(secret["data"]["values.yaml"]))["systems"]["mini"]
    assert not (mini.get("status") or {}).get("user"), mini.get("status")


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ("systems.perlmutter.status.intervalSeconds=0", "/systems/perlmutter/status/intervalSeconds"),
        ("systems.perlmutter.status.user=Bad User", "/systems/perlmutter/status/user"),
        ("systems.perlmutter.status.forceCommand=relative/path", "/systems/perlmutter/status/forceCommand"),
        (
            "systems.perlmutter.ssh.maxConcurrentHandshakes=0",
            "/systems/perlmutter/ssh/maxConcurrentHandshakes",
        ),
        ("systems.perlmutter.ssh.idleSeconds=-1", "/systems/perlmutter/ssh/idleSeconds"),
    ],
)
def test_bad_status_and_ssh_pool_values_are_refused_naming_the_key(setting: str, key: str) -> None:
    assert key in render_error([NERSC], [setting])


@pytest.mark.parametrize(
    ("settings", "shown"),
    [
        (
            [
                "systems.perlmutter.singleuser.portRange.min=9000",
                "systems.perlmutter.singleuser.portRange.max=8000",
            ],
            "min 9000 is above max 8000",
        ),
        (
            [
                "systems.perlmutter.singleuser.portRange.min=2000",
                "systems.perlmutter.singleuser.portRange.max=1500",
            ],
            "min 2000 is above max 1500",
        ),
        (["systems.perlmutter.singleuser.portRange.max=1000"], "min 1024 is above max 1000"),
    ],
)
def test_an_empty_port_range_is_refused_naming_the_key(settings: list[str], shown: str) -> None:
    err = render_error([NERSC], settings)
    assert "systems.perlmutter.singleuser.portRange: " + shown in err


def test_a_port_range_of_one_port_renders() -> None:
    from .helm import render

    assert render(
        [NERSC],
        [
            "systems.perlmutter.singleuser.portRange.min=8000",
            "systems.perlmutter.singleuser.portRange.max=8000",
        ],
    )


def test_default_cell_must_be_a_cell_of_the_grid() -> None:
    err = render_error([NERSC], ["console.defaultCell=perlmutter-bigmem"])
    assert 'console.defaultCell: "perlmutter-bigmem" is not a cell' in err
    assert "perlmutter-shared" in err
    err = render_error([NERSC], ["console.defaultCell=Perlmutter"])
    assert "/console/defaultCell" in err


def test_ended_retention_days_is_a_whole_number_of_days_from_1() -> None:
    for bad in ("0", "3651", "seven"):
        err = render_error([MINIMAL], [f"console.endedRetentionDays={bad}"])
        assert "/console/endedRetentionDays" in err, (bad, err)


# Users' uid/gid (issue 8, hole 1): shared file systems in Spin only with a trusted uid
# source; the old lookup that ran `id` as the user fails loudly, saying what to write.
NO_IDENTITY = "identity: {fromAuthState: {uid: '', gid: ''}, lookup: {system: '', user: ''}}\n"


@pytest.mark.parametrize(
    ("volume", "words"),
    [
        (
            "{mountPath: '/home/{username}', subPath: '{username}', nfs: {server: nfs.example.org, path: /h}}",
            "per-user",
        ),
        ("{mountPath: /scratch, hostPath: {path: /scratch}}", "writable"),
    ],
)
def test_spin_volumes_without_a_trusted_uid_source_are_refused_naming_the_key(
    tmp_path: Path, volume: str, words: str
) -> None:
    bad = NO_IDENTITY + f"spin:\n  volumes:\n    home: {volume}\n"
    err = render_error([MINIMAL, _values_file(tmp_path, bad)])
    assert f"spin.volumes.home: a {words}" in err and "identity.lookup" in err


def test_read_only_and_data_volumes_need_no_uid_source(tmp_path: Path) -> None:
    from .helm import render

    ok = NO_IDENTITY + (
        "spin:\n  volumes:\n"
        "    cfs: {mountPath: /global/cfs, readOnly: true, persistentVolumeClaim: {claimName: cfs}}\n"
        "    site: {mountPath: /etc/site, configMap: {name: site}}\n"
        # The pod's own scratch (z2jh's emptyDir extraVolumes, e.g. /dev/shm): no other pod sees it.
        "    shm: {mountPath: /dev/shm, emptyDir: {medium: Memory, sizeLimit: 1Gi}}\n"
    )
    assert render([MINIMAL, _values_file(tmp_path, ok)])
    bad = NO_IDENTITY + "spin:\n  volumes:\n    shm: {mountPath: /dev/shm, emptyDir: {medium: Disk}}\n"
    assert "/spin/volumes/shm/emptyDir/medium" in render_error([MINIMAL, _values_file(tmp_path, bad)])


@pytest.mark.parametrize(
    ("override", "key", "instead"),
    [
        ("spin: {uidLookup: {system: perlmutter}}", "spin.uidLookup: removed", "identity.lookup.user"),
        ("spin: {uidFromAuthState: true}", "spin.uidFromAuthState: removed", "identity.fromAuthState"),
        ("identity: {fromAuthState: {uid: uid, gid: ''}}", "identity.fromAuthState: set both", ""),
        ("identity: {lookup: {system: nosuch}}", 'identity.lookup.system: "nosuch"', ""),
        ("identity: {lookup: {user: ''}}", "identity.lookup.user: required", "service account"),
        ("sshCA: {enabled: false}", "identity.lookup: needs sshCA.enabled", ""),
    ],
)
def test_identity_settings_are_checked_naming_the_key(
    tmp_path: Path, override: str, key: str, instead: str
) -> None:
    err = render_error([NERSC, _values_file(tmp_path, override + "\n")])
    assert key in err and instead in err


def test_activity_too_stale_for_the_culling_timeout_is_refused_at_install() -> None:
    err = render_error([MINIMAL], ["culling.timeout=900"])
    assert "hub.activityIntervalSeconds: activity up to 600 s old is too stale for culling.timeout 900" in err
    render([MINIMAL], ["culling.timeout=900", "culling.enabled=false"])  # no culler: no limit


EXTEND = "systems:\n  perlmutter:\n    slurm:\n      extend:\n"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            EXTEND + "        enabled: true\n        maxTime: '04:00:00'\n",
            "systems.perlmutter.slurm.extend.user: required",
        ),
        (
            EXTEND + "        enabled: true\n        user: hpchubext\n",
            "systems.perlmutter.slurm.extend.maxTime: required",
        ),
        (
            EXTEND + "        enabled: false\n        maxTime: soon\n",
            "/systems/perlmutter/slurm/extend/maxTime",
        ),
        (
            EXTEND + "        qos: {debug: '25:00'}\n        steps: []\n",
            "/systems/perlmutter/slurm/extend/steps",
        ),
        (
            "systems:\n  perlmutter:\n    levels:\n      shared: {backend: ssh, extend: {maxTime: '01:00:00'}}\n",
            "systems.perlmutter.levels.shared.extend: only batch levels",
        ),
        (
            "systems:\n  perlmutter:\n    walltime: {saveBeforeSeconds: 5}\n",
            "/systems/perlmutter/walltime/saveBeforeSeconds",
        ),
        (
            "systems:\n  perlmutter:\n    walltime: {warningsMinutes: [0]}\n",
            "/systems/perlmutter/walltime/warningsMinutes",
        ),
    ],
)
def test_bad_walltime_and_extend_values_are_refused_naming_the_key(
    tmp_path: Path, text: str, error: str
) -> None:
    assert error in render_error([NERSC, _values_file(tmp_path, text)])


def test_extend_without_the_ssh_ca_is_refused(tmp_path: Path) -> None:
    text = EXTEND + "        enabled: true\n        user: hpchubext\n        maxTime: '04:00:00'\n"
    off = "sshCA: {enabled: false}\nidentity: {lookup: {system: ''}}\n"
    err = render_error([NERSC, _values_file(tmp_path, text + off)])
    assert "systems.perlmutter.slurm.extend.enabled: the extend account's certificate is signed" in err
    render([NERSC, _values_file(tmp_path, text)])  # with the NERSC example's CA: installs


def test_activity_too_stale_for_a_levels_or_a_cells_timeout_is_refused_naming_it() -> None:
    err = render_error([MINIMAL], ["serviceLevels.shared.culling.timeout=900"])
    assert "activity up to 600 s old is too stale for serviceLevels.shared.culling.timeout 900" in err
    render([NERSC])  # perlmutter's GPU cell: 1800 s, fine with reports every 600 s
    err = render_error([NERSC], ["systems.perlmutter.levels.gpu.culling.timeout=1000"])
    assert "too stale for systems.perlmutter.levels.gpu.culling.timeout 1000" in err
    # the cell's own timeout wins over its level's, so only what a cell gets counts
    render(
        [MINIMAL],
        ["serviceLevels.shared.culling.timeout=900", "systems.spin.levels.shared.culling.timeout=1200"],
    )
    render([MINIMAL], ["serviceLevels.shared.culling.timeout=900", "hub.activityIntervalSeconds=450"])


@pytest.mark.parametrize(
    "override, where",
    [
        ("serviceLevels.shared.culling.timeout=30", "/serviceLevels/shared/culling/timeout"),
        (
            "serviceLevels.shared.culling.warnBeforeSeconds=-5",
            "/serviceLevels/shared/culling/warnBeforeSeconds",
        ),
        ("systems.spin.levels.shared.culling.timeout=soon", "/systems/spin/levels/shared/culling/timeout"),
        ("serviceLevels.shared.culling.timout=900", "timout"),
        ("culling.warnBeforeSeconds=ten", "/culling/warnBeforeSeconds"),
    ],
)
def test_culling_rules_of_a_level_or_a_cell_are_checked_naming_the_key(override: str, where: str) -> None:
    assert where in render_error([MINIMAL], [override])


def test_activity_thresholds_out_of_range_are_refused_at_install() -> None:
    assert "/culling/busyCpuPercent" in render_error([MINIMAL], ["culling.busyCpuPercent=-1"])
    err = render_error([NERSC], ["systems.perlmutter.levels.gpu.culling.busyGpuPercent=150"])
    assert "/systems/perlmutter/levels/gpu/culling/busyGpuPercent" in err
    assert "/serviceLevels/shared/culling/busyGpuPercent" in render_error(
        [MINIMAL], ["serviceLevels.shared.culling.busyGpuPercent=lots"]
    )
    render([NERSC], ["culling.busyCpuPercent=50", "systems.perlmutter.levels.gpu.culling.busyGpuPercent=10"])


@pytest.mark.parametrize(
    "text", ["imagePullSecrets: [{nme: regcred}]\n", "imagePullSecrets: [{}]\n", "imagePullSecrets: ['']\n"]
)
def test_an_image_pull_secret_without_a_name_is_refused(tmp_path: Path, text: str) -> None:
    err = render_error([MINIMAL, _values_file(tmp_path, text)])
    assert "imagePullSecrets" in err, err


def test_an_ingress_without_a_host_is_refused(tmp_path: Path) -> None:
    # Kubernetes refuses an Ingress with no rules only once the install is under way.
    for text in ("ingress: {enabled: true}\n", "ingress: {enabled: true, hosts: []}\n"):
        err = render_error([MINIMAL, _values_file(tmp_path, text)])
        assert "hosts" in err, err
    docs = render([MINIMAL, _values_file(tmp_path, "ingress: {enabled: false, hosts: []}\n")])
    assert not [d for d in docs if d["kind"] == "Ingress"]
