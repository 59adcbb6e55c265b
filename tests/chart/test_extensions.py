"""The extension points an operator coming from z2jh relies on, rendered by real helm and
validated against the Kubernetes API schemas: each lands where z2jh puts it, and the unsafe
uses are refused at install naming the key. The loader side is tests/unit/test_extensions.py
and a real hub serving them is tests/integration/test_hub_extensions.py."""

from __future__ import annotations

import base64
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from .helm import CHART, CONFIG, find, helm, render, render_error

DEV = CONFIG / "values-dev.yaml"
# The schema requires an operator's containers to say they escalate nothing.
SAFE = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}

EXT = {
    "global": {"storageClass": "fast", "imageRegistry": "reg.example.org"},
    "hub": {
        "extraEnv": {
            "SITE_MOTD": "hello",
            "SITE_TOKEN": {"valueFrom": {"secretKeyRef": {"name": "site", "key": "token"}}},
        },
        "extraFiles": {
            "motd": {"mountPath": "/usr/local/etc/site/motd.txt", "stringData": "Welcome\n"},
            "site": {
                "mountPath": "/usr/local/etc/site/site.json",
                "data": {"a": 1, "b": ["x"]},
                "mode": 0o440,
            },
            "logo": {
                "mountPath": "/usr/local/etc/site/logo.png",
                "binaryData": base64.b64encode(b"\x89PNG").decode(),
            },
        },
        "extraVolumes": [{"name": "site-cm", "configMap": {"name": "site"}}],
        "extraVolumeMounts": [{"name": "site-cm", "mountPath": "/usr/local/etc/site-cm"}],
        "initContainers": [
            {"name": "wait-for-db", "image": "busybox:1", "command": ["true"], "securityContext": SAFE}
        ],
        "extraContainers": [
            {
                "name": "sidecar",
                "image": "busybox:1",
                "command": ["sleep", "infinity"],
                "securityContext": SAFE,
            }
        ],
        "services": {"stats": {"url": "http://stats:9000"}, "announce": {"apiToken": "ab" * 16}},
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "hub", "operator": "In", "values": ["yes"]}]}
                    ]
                }
            }
        },
        "priorityClassName": "hpc-critical",
        "serviceAccount": {"annotations": {"iam.example.org/role": "hub"}},
        # OpenShift assigns uids itself: drop the chart's.
        "podSecurityContext": {"runAsUser": None, "runAsGroup": None, "fsGroup": None},
    },
    "proxy": {"priorityClassName": "hpc-critical", "affinity": {"podAntiAffinity": {}}},
    "console": {"templates": {"login.html": '{% extends "hpchub/login.html" %}\n'}},
}


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    f = tmp_path_factory.mktemp("ext") / "ext.yaml"
    f.write_text(yaml.safe_dump(EXT))
    return render([DEV, f])


def _hub_pod(docs: list[dict]) -> dict:
    return find(docs, "Deployment", "t-hpchub-hub")["spec"]["template"]["spec"]


def test_everything_validates_against_kubernetes(docs: list[dict]) -> None:
    for doc in docs:
        kubernetes_validate.validate(doc, "1.34.0", strict=True)


def test_extra_env_in_both_forms(docs: list[dict], tmp_path: Path) -> None:
    env = {e["name"]: e for e in _hub_pod(docs)["containers"][0]["env"]}
    assert env["SITE_MOTD"] == {"name": "SITE_MOTD", "value": "hello"}
    assert env["SITE_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "site", "key": "token"}
    as_list = render([DEV], ["hub.extraEnv[0].name=A", "hub.extraEnv[0].value=one"])
    assert {"name": "A", "value": "one"} in _hub_pod(as_list)["containers"][0]["env"]


def test_extra_files_are_kept_in_a_secret_and_mounted_one_by_one(docs: list[dict]) -> None:
    data = {k: base64.b64decode(v) for k, v in find(docs, "Secret", "t-hpchub-hub-files")["data"].items()}
    assert data["motd"] == b"Welcome\n"
    assert yaml.safe_load(data["site"]) == {"a": 1, "b": ["x"]}  # JSON by the .json extension
    assert data["logo"] == b"\x89PNG"
    pod = _hub_pod(docs)
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["/usr/local/etc/site/motd.txt"] == {
        "name": "files",
        "mountPath": "/usr/local/etc/site/motd.txt",
        "subPath": "motd",
        "readOnly": True,
    }
    vol = next(v for v in pod["volumes"] if v["name"] == "files")
    assert {i["key"]: i.get("mode") for i in vol["secret"]["items"]} == {
        "logo": None,
        "motd": None,
        "site": 0o440,
    }
    # A changed file restarts the hub; its content never reaches the hub's values file.
    assert (
        "checksum/files"
        in find(docs, "Deployment", "t-hpchub-hub")["spec"]["template"]["metadata"]["annotations"]
    )
    values = base64.b64decode(find(docs, "Secret", "t-hpchub-hub-config")["data"]["values.yaml"]).decode()
    assert "Welcome" not in values


def test_volumes_and_containers_are_added(docs: list[dict]) -> None:
    pod = _hub_pod(docs)
    assert {"name": "site-cm", "configMap": {"name": "site"}} in pod["volumes"]
    assert {"name": "site-cm", "mountPath": "/usr/local/etc/site-cm"} in pod["containers"][0]["volumeMounts"]
    # The chart's own init container (SSH CA) first, then the operator's.
    assert [c["name"] for c in pod["initContainers"]] == ["publish-ssh-ca", "wait-for-db"]
    assert [c["name"] for c in pod["containers"]] == ["hub", "sidecar"]


def test_scheduling_security_and_service_account(docs: list[dict]) -> None:
    pod = _hub_pod(docs)
    assert pod["priorityClassName"] == "hpc-critical"
    assert pod["affinity"] == EXT["hub"]["affinity"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    proxy = find(docs, "Deployment", "t-hpchub-proxy")["spec"]["template"]["spec"]
    assert proxy["priorityClassName"] == "hpc-critical"
    assert proxy["securityContext"]["runAsUser"] == 1000  # untouched
    sa = find(docs, "ServiceAccount", "t-hpchub-hub")
    assert sa["metadata"]["annotations"] == {"iam.example.org/role": "hub"}


def test_service_tokens_are_kept_in_the_secret_not_the_values_file(docs: list[dict]) -> None:
    secret = find(docs, "Secret", "t-hpchub-hub-secret")["data"]
    assert base64.b64decode(secret["hub.services.announce.apiToken"]).decode() == "ab" * 16
    assert len(base64.b64decode(secret["hub.services.stats.apiToken"])) == 64
    values = base64.b64decode(find(docs, "Secret", "t-hpchub-hub-config")["data"]["values.yaml"]).decode()
    assert "ab" * 16 not in values
    env = {e["name"]: e for e in _hub_pod(docs)["containers"][0]["env"]}
    assert env["HPCHUB_SERVICE_TOKEN_STATS"]["valueFrom"]["secretKeyRef"] == {
        "name": "t-hpchub-hub-secret",
        "key": "hub.services.stats.apiToken",
    }


def test_derived_service_tokens_are_stable_and_distinct() -> None:
    sets = ["hub.cookieSecret=" + "c" * 64, "hub.services.a.url=http://a", "hub.services.b.url=http://b"]
    one = find(render([DEV], sets), "Secret", "t-hpchub-hub-secret")["data"]
    two = find(render([DEV], sets), "Secret", "t-hpchub-hub-secret")["data"]
    assert one["hub.services.a.apiToken"] == two["hub.services.a.apiToken"]
    assert one["hub.services.a.apiToken"] != one["hub.services.b.apiToken"]


def test_service_tokens_come_from_the_existing_secret_under_gitops() -> None:
    docs = render(
        [DEV],
        [
            "hub.existingSecret=site-tokens",
            "hub.services.stats.url=http://stats",
            "hub.services.ann.apiToken=" + "ab" * 16,
        ],
    )
    pod = _hub_pod(docs)
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    # Without apiToken the token is the mounted Secret's key (the hub reads it there);
    # with one, the chart's Secret carries it too (the operator's Secret still wins).
    assert "HPCHUB_SERVICE_TOKEN_STATS" not in env
    assert env["HPCHUB_SERVICE_TOKEN_ANN"]["valueFrom"]["secretKeyRef"] == {
        "name": "t-hpchub-hub-secret",
        "key": "hub.services.ann.apiToken",
    }
    assert {"name": "existing-secret", "secret": {"secretName": "site-tokens", "defaultMode": 0o400}} in pod[
        "volumes"
    ]
    assert "hub.services.stats.apiToken" not in (
        find(docs, "Secret", "t-hpchub-hub-secret").get("data") or {}
    )


def test_templates_are_mounted_from_a_configmap(docs: list[dict]) -> None:
    cm = find(docs, "ConfigMap", "t-hpchub-hub-templates")
    assert cm["data"]["login.html"] == '{% extends "hpchub/login.html" %}\n'
    c = _hub_pod(docs)["containers"][0]
    assert {"name": "templates", "mountPath": "/usr/local/etc/hpchub-templates", "readOnly": True} in c[
        "volumeMounts"
    ]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["HPCHUB_TEMPLATES_DIR"] == "/usr/local/etc/hpchub-templates"


def test_nothing_extra_by_default() -> None:
    docs = render([DEV])
    pod = _hub_pod(docs)
    assert [c["name"] for c in pod["containers"]] == ["hub"]
    assert not [d for d in docs if d["metadata"]["name"] in ("t-hpchub-hub-files", "t-hpchub-hub-templates")]
    assert "priorityClassName" not in pod and "affinity" not in pod
    assert "annotations" not in find(docs, "ServiceAccount", "t-hpchub-hub")["metadata"]


def test_global_makes_the_chart_usable_as_a_subchart(tmp_path: Path) -> None:
    # A parent chart passes `global` (and our values under `hpchub:`) to its subcharts.
    parent = tmp_path / "site"
    (parent / "charts").mkdir(parents=True)
    (parent / "Chart.yaml").write_text(
        "apiVersion: v2\nname: site\nversion: 1.0.0\ndependencies:\n  - {name: hpchub, version: '*'}\n"
    )
    import shutil

    shutil.copytree(CHART, parent / "charts" / "hpchub")
    (parent / "values.yaml").write_text(
        yaml.safe_dump({"global": {"storageClass": "fast"}, "hpchub": yaml.safe_load(DEV.read_text())})
    )
    out = helm("template", "site", str(parent), "--namespace", "hpc").stdout
    kinds = {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(out) if d}
    assert ("Deployment", "site-hpchub-hub") in kinds


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            ["hub.config.GenericOAuthenticator.client_secret=s3cret"],
            "hub.config.GenericOAuthenticator.client_secret: looks like a secret",
        ),
        (["hub.config.CryptKeeper.keys[0]=k"], "hub.config.CryptKeeper.keys: looks like a secret"),
        (["hub.config.JupyterHub.services[0].name=x"], "hub.config.JupyterHub.services: use hub.services"),
        (
            ["hub.config.JupyterHub.load_roles[0].name=x"],
            "hub.config.JupyterHub.load_roles: use hub.loadRoles",
        ),
        (["hub.config.jupyterhub.base_url=/x"], "hub.config.jupyterhub: not a configurable class name"),
        (
            ["hub.services.uninstall.url=http://x"],
            "hub.services.uninstall: the chart runs a service named uninstall itself",
        ),
        (
            ["hub.services.x.url=http://x", "hub.services.x.name=metrics"],
            "hub.services.x: the chart runs a service named metrics itself",
        ),
        (
            ["hub.services.a.url=http://a", "hub.services.b.name=a"],
            "hub.services.b: service name a is also hub.services.a's",
        ),
        (["hub.services.x.api_token=" + "a" * 32], "hub.services.x.api_token: use hub.services.x.apiToken"),
        (
            ["hub.services.x.apiToken=short-but-secret"],
            "hub.services.x.apiToken: must be 32 to 64 characters: letters, digits and - _ . ~ + / =",
        ),
        (["hub.services.x.apiToken=" + "a" * 65], "hub.services.x.apiToken: must be 32 to 64 characters"),
        (
            ["hub.services.x.apiToken=" + "a" * 31 + " "],
            "hub.services.x.apiToken: must be 32 to 64 characters",
        ),
        (
            ["hub.loadRoles.myRole.scopes[0]=list:users"],
            'hub.loadRoles.myRole: "myRole" is not a role name JupyterHub accepts',
        ),
        (["hub.loadRoles.a1.name=Bad"], "/hub/loadRoles/a1/name"),
        (
            ["hub.loadRoles.one.name=same", "hub.loadRoles.two.name=same"],
            "hub.loadRoles.two: role name same is also hub.loadRoles.one's",
        ),
        (["hub.extraEnv.JPY_COOKIE_SECRET=x"], "hub.extraEnv.JPY_COOKIE_SECRET: set by the chart itself"),
        (["hub.extraEnv.HPCHUB_VALUES=/tmp/v"], "hub.extraEnv.HPCHUB_VALUES: set by the chart itself"),
        (["hub.extraFiles.f.mountPath=/x.txt"], "hub.extraFiles.f: give exactly one of"),
        (
            ["hub.extraFiles.f.mountPath=/x.txt", "hub.extraFiles.f.data.a=1"],
            "hub.extraFiles.f.data: written as YAML, JSON or TOML",
        ),
        (["hub.podSecurityContext.runAsUser=0"], "/hub/podSecurityContext/runAsUser"),
        (["hub.podSecurityContext.runAsNonRoot=false"], "/hub/podSecurityContext/runAsNonRoot"),
        (["hub.containerSecurityContext.privileged=true"], "/hub/containerSecurityContext/privileged"),
        (
            ["proxy.containerSecurityContext.allowPrivilegeEscalation=true"],
            "/proxy/containerSecurityContext/allowPrivilegeEscalation",
        ),
        (["console.templates.login=x"], "console.templates.login: not a template file name"),
    ],
)
def test_unsafe_or_misplaced_extensions_are_refused_naming_the_key(sets: list[str], message: str) -> None:
    err = render_error([DEV], sets)
    assert message in err
    # A refused token is never printed (helm's errors reach CI logs).
    assert "short-but-secret" not in err


def test_z2jh_style_service_tokens_within_the_rule_are_accepted() -> None:
    # Not only hex: base64 and other header-safe tokens of 32-64 characters.
    for token in ("A" * 32, "a1_B2-c3.d4~e5+f6/g7=h8" + "x" * 9, "f" * 64):
        docs = render([DEV], [f"hub.services.x.apiToken={token}"])
        data = find(docs, "Secret", "t-hpchub-hub-secret")["data"]
        assert base64.b64decode(data["hub.services.x.apiToken"]).decode() == token


def test_role_and_service_names_as_in_z2jh(tmp_path: Path) -> None:
    # z2jh keys maps by anything and takes `name` when given.
    f = tmp_path / "names.yaml"
    f.write_text(
        yaml.safe_dump(
            {
                "hub": {
                    "loadRoles": {"statsReader": {"name": "stats-reader", "scopes": ["list:users"]}},
                    "services": {"stats": {"name": "site-stats", "url": "http://stats"}},
                }
            }
        )
    )
    docs = render([DEV, f])
    values = yaml.safe_load(
        base64.b64decode(find(docs, "Secret", "t-hpchub-hub-config")["data"]["values.yaml"])
    )
    assert values["hub"]["loadRoles"]["statsReader"]["name"] == "stats-reader"
    # The token stays under the key, where the service's pods read it.
    assert "hub.services.stats.apiToken" in find(docs, "Secret", "t-hpchub-hub-secret")["data"]
