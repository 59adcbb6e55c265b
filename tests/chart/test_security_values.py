"""Values that would weaken a boundary are refused at install, naming the key (issue 16,
items 10 and 11): privilege escalation (true, null or left out) and added capabilities for
every pod and container security context the chart exposes — hub, proxy, the uninstall
hook's Job and the CA publisher (both take the hub's), hub.initContainers/extraContainers
and Spin's through hub.config — and an SSH CA whose certificates would log in from anywhere
without the operator saying so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from .helm import CONFIG, find, render, render_error

MINIMAL = CONFIG / "values-minimal.yaml"
DEV = CONFIG / "values-dev.yaml"
SAFE = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def values_file(tmp_path: Path, values: dict[str, Any]) -> Path:
    p = tmp_path / "site.yaml"
    p.write_text(yaml.safe_dump(values))
    return p


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] in ("Deployment", "Job")
    }


@pytest.mark.parametrize("component", ["hub", "proxy"])
@pytest.mark.parametrize(
    ("context", "override", "where"),
    [
        # Helm drops a key set to null from the merged values: the default false would be
        # gone and Kubernetes allows escalation when the field is absent.
        ("containerSecurityContext", {"allowPrivilegeEscalation": None}, "missing property 'allowPrivilegeEscalation'"),
        ("containerSecurityContext", {"allowPrivilegeEscalation": True}, "/containerSecurityContext/allowPrivilegeEscalation"),
        ("containerSecurityContext", {"capabilities": {"add": ["NET_ADMIN"]}}, "/containerSecurityContext/capabilities/add"),
        ("containerSecurityContext", {"capabilities": {"add": ["SYS_ADMIN"], "drop": []}}, "/containerSecurityContext/capabilities"),
        ("containerSecurityContext", {"capabilities": None}, "missing property 'capabilities'"),
        ("containerSecurityContext", {"privileged": True}, "/containerSecurityContext/privileged"),
        ("containerSecurityContext", {"runAsUser": 0}, "/containerSecurityContext/runAsUser"),
        ("podSecurityContext", {"runAsNonRoot": None}, "missing property 'runAsNonRoot'"),
        ("podSecurityContext", {"seccompProfile": {"type": "Unconfined"}}, "/podSecurityContext/seccompProfile/type"),
        ("podSecurityContext", {"seccompProfile": None}, "missing property 'seccompProfile'"),
    ],
)  # fmt: skip
def test_privilege_is_refused_in_every_security_context_naming_the_key(
    tmp_path: Path, component: str, context: str, override: dict[str, Any], where: str
) -> None:
    err = render_error([MINIMAL, values_file(tmp_path, {component: {context: override}})])
    assert f"/{component}/{context}" in err, err
    assert where in err, err


def test_the_defaults_and_a_relaxed_read_only_root_render_for_every_pod_and_container(tmp_path: Path) -> None:
    # Positive control: what the schema still lets an operator change.
    relaxed = {
        "containerSecurityContext": {"readOnlyRootFilesystem": False},
        "podSecurityContext": {"runAsUser": None},
    }
    docs = render([DEV, values_file(tmp_path, {"hub": relaxed, "proxy": relaxed})])
    specs = pod_specs(docs)
    assert set(specs) == {"t-hpchub-hub", "t-hpchub-proxy", "t-hpchub-stop-servers"}
    for name, pod in specs.items():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        # The uninstall hook's Job and the CA publisher (an init container) take the hub's.
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}, (
                name,
                c,
            )
            assert sc["readOnlyRootFilesystem"] is False
    assert [c["name"] for c in specs["t-hpchub-hub"]["initContainers"]] == ["publish-ssh-ca"]


@pytest.mark.parametrize("key", ["initContainers", "extraContainers"])
@pytest.mark.parametrize(
    ("security_context", "where"),
    [
        (None, "missing property 'securityContext'"),
        ({}, "missing properties 'allowPrivilegeEscalation', 'capabilities'"),
        ({**SAFE, "allowPrivilegeEscalation": None}, "/securityContext/allowPrivilegeEscalation"),
        ({**SAFE, "allowPrivilegeEscalation": True}, "/securityContext/allowPrivilegeEscalation"),
        (
            {**SAFE, "capabilities": {"drop": ["ALL"], "add": ["NET_RAW"]}},
            "/securityContext/capabilities/add",
        ),
        ({"allowPrivilegeEscalation": False}, "missing property 'capabilities'"),
        ({**SAFE, "privileged": True}, "/securityContext/privileged"),
        ({**SAFE, "runAsUser": 0}, "/securityContext/runAsUser"),
    ],
)
def test_the_operators_containers_must_escalate_nothing(
    tmp_path: Path, key: str, security_context: dict[str, Any] | None, where: str
) -> None:
    container: dict[str, Any] = {"name": "site", "image": "site/tool:1", "command": ["true"]}
    if security_context is not None:
        container["securityContext"] = security_context
    err = render_error([MINIMAL, values_file(tmp_path, {"hub": {key: [container]}})])
    assert f"/hub/{key}/0" in err and where in err, err


def test_the_operators_containers_render_with_their_safe_security_context(tmp_path: Path) -> None:
    container = {"name": "site", "image": "site/tool:1", "command": ["true"], "securityContext": SAFE}
    docs = render(
        [
            MINIMAL,
            values_file(tmp_path, {"hub": {"initContainers": [container], "extraContainers": [container]}}),
        ]
    )
    pod = find(docs, "Deployment", "t-hpchub-hub")["spec"]["template"]["spec"]
    assert [c["securityContext"] for c in pod["initContainers"] if c["name"] == "site"] == [SAFE]
    assert [c["securityContext"] for c in pod["containers"] if c["name"] == "site"] == [SAFE]


@pytest.mark.parametrize(
    ("traits", "where"),
    [
        ({"privileged": True}, "/hub/config/KubeSpawner/privileged"),
        ({"allow_privilege_escalation": True}, "/hub/config/KubeSpawner/allow_privilege_escalation"),
        ({"container_security_context": {"allowPrivilegeEscalation": True}}, "/hub/config/KubeSpawner/container_security_context"),
        ({"pod_security_context": {"runAsUser": 0}}, "/hub/config/KubeSpawner/pod_security_context"),
        ({"extra_container_config": {"securityContext": {"privileged": True}}}, "/hub/config/KubeSpawner/extra_container_config/securityContext"),
        ({"extra_pod_config": {"securityContext": {"runAsUser": 0}}}, "/hub/config/KubeSpawner/extra_pod_config/securityContext"),
        ({"init_containers": [{"name": "x", "image": "x"}]}, "/hub/config/KubeSpawner/init_containers/0"),
        ({"extra_containers": [{"name": "x", "image": "x", "securityContext": {**SAFE, "capabilities": {"drop": ["ALL"], "add": ["SYS_PTRACE"]}}}]}, "/hub/config/KubeSpawner/extra_containers/0/securityContext/capabilities/add"),
    ],
)  # fmt: skip
def test_spin_hardening_cannot_be_taken_away_through_hub_config(
    tmp_path: Path, traits: dict[str, Any], where: str
) -> None:
    err = render_error([MINIMAL, values_file(tmp_path, {"hub": {"config": {"KubeSpawner": traits}}})])
    assert where in err, err


def test_spin_settings_that_keep_the_hardening_pass_through_hub_config(tmp_path: Path) -> None:
    traits = {
        "extra_pod_config": {"priorityClassName": "notebooks"},
        "extra_containers": [{"name": "sidecar", "image": "site/tool:1", "securityContext": SAFE}],
        "allow_privilege_escalation": False,
    }
    render([MINIMAL, values_file(tmp_path, {"hub": {"config": {"KubeSpawner": traits}}})])


def test_an_ssh_ca_without_source_addresses_is_refused_naming_the_key() -> None:
    err = render_error([MINIMAL], ["sshCA.enabled=true"])
    assert (
        "sshCA.sourceAddresses: empty, so a certificate copied off the hub would log in from anywhere" in err
    )
    assert '[0.0.0.0/0, "::/0"]' in err
    # The explicit choice of "anywhere", and the example site's NAT range, install.
    render([MINIMAL], ["sshCA.enabled=true", "sshCA.sourceAddresses={0.0.0.0/0,::/0}"])
    render([CONFIG / "values-nersc-example.yaml"])
    # Without the CA nothing is signed, so nothing is required.
    render([MINIMAL])


def test_the_loader_refuses_the_same_in_the_same_words() -> None:
    from traitlets.config import Config

    from hpchub.config import SOURCE_ADDRESSES_REQUIRED, ConfigError, configure
    from tests.unit.test_config import mounted_values

    values = mounted_values("values-dev.yaml")
    configure(Config(), values, env={"HPCHUB_DUMMY_PASSWORD": "hpchub-dev"})
    values["sshCA"]["sourceAddresses"] = []
    with pytest.raises(ConfigError) as e:
        configure(Config(), values, env={"HPCHUB_DUMMY_PASSWORD": "hpchub-dev"})
    assert str(e.value) == SOURCE_ADDRESSES_REQUIRED
    assert SOURCE_ADDRESSES_REQUIRED in render_error([DEV], ["sshCA.sourceAddresses=null"])
