"""The chart renders, lints and validates against the Kubernetes API schemas of the
versions we support, for every values file kept in config/."""

from __future__ import annotations

import base64
import copy
import re
import shlex
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from .helm import CHART, CONFIG, find, helm, render

VALUES_FILES = ["values-minimal.yaml", "values-dev.yaml", "values-nersc-example.yaml"]
K8S_VERSIONS = ["1.32.0", "1.34.0"]


@pytest.mark.parametrize("values", VALUES_FILES)
def test_helm_lint_strict_passes(values: str) -> None:
    proc = helm("lint", "--strict", str(CHART), "-f", str(CONFIG / values))
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("k8s_version", K8S_VERSIONS)
@pytest.mark.parametrize("values", VALUES_FILES)
def test_every_manifest_validates_against_kubernetes_schema(values: str, k8s_version: str) -> None:
    docs = render([CONFIG / values])
    assert len(docs) >= 12
    for doc in docs:
        # strict: unknown fields are errors, as with `kubectl apply --validate=strict`.
        kubernetes_validate.validate(doc, k8s_version, strict=True)


@pytest.mark.parametrize("k8s_version", K8S_VERSIONS)
def test_schema_validator_rejects_a_misspelled_field(k8s_version: str) -> None:
    # The validator above must be able to fail: a typo in a rendered Deployment is caught.
    dep = copy.deepcopy(find(render([CONFIG / "values-minimal.yaml"]), "Deployment", "t-hpchub-hub"))
    dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, k8s_version, strict=True)


def test_nersc_example_renders_hub_proxy_rbac_and_network_policies() -> None:
    docs = render([CONFIG / "values-nersc-example.yaml"])
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for expected in [
        ("Deployment", "t-hpchub-hub"),
        ("Deployment", "t-hpchub-proxy"),
        ("Service", "t-hpchub-hub"),
        ("Service", "t-hpchub-proxy-api"),
        ("Service", "t-hpchub-proxy-public"),
        # Notebooks call the hub API through an Ingress with TLS (hub.connectBack.scheme https).
        ("Ingress", "t-hpchub-hub-connect"),
        ("ServiceAccount", "t-hpchub-hub"),
        ("Role", "t-hpchub-hub"),
        ("RoleBinding", "t-hpchub-hub"),
        ("NetworkPolicy", "t-hpchub-hub"),
        ("NetworkPolicy", "t-hpchub-proxy"),
        ("NetworkPolicy", "t-hpchub-spin"),
        ("PodDisruptionBudget", "t-hpchub-proxy"),
        ("PersistentVolumeClaim", "t-hpchub-hub-db"),
        ("Secret", "t-hpchub-hub-config"),
        ("Secret", "t-hpchub-hub-secret"),
        ("Ingress", "t-hpchub"),
    ]:
        assert expected in kinds, expected
    connect = find(docs, "Ingress", "t-hpchub-hub-connect")
    assert connect["spec"]["tls"] == [
        {"hosts": ["jupyter-api.example.org"], "secretName": "jupyter-api-example-org-tls"}
    ]
    # The site keeps its SSH CA in its own Secret; the hub mounts that one.
    hub = find(docs, "Deployment", "t-hpchub-hub")
    vols = {v["name"]: v for v in hub["spec"]["template"]["spec"]["volumes"]}
    assert vols["ssh-ca"]["secret"]["secretName"] == "hpchub-ssh-ca"


def test_role_grants_exactly_what_kubespawner_uses() -> None:
    role = find(render([CONFIG / "values-minimal.yaml"]), "Role", "t-hpchub-hub")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules == {
        (("",), ("pods",)): {"get", "list", "watch", "create", "delete"},
        (("",), ("events",)): {"get", "list", "watch"},
    }


@pytest.mark.parametrize("values", VALUES_FILES)
def test_every_pod_runs_non_root_with_all_capabilities_dropped(values: str) -> None:
    # Every pod the chart makes (Deployments and the uninstall hook's Job), every container
    # including init containers: the operator guide's "Security defaults" says "every pod".
    workloads = [d for d in render([CONFIG / values]) if d["kind"] in ("Deployment", "Job")]
    assert {d["kind"] for d in workloads} == {"Deployment", "Job"}
    for dep in workloads:
        pod = dep["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["capabilities"]["drop"] == ["ALL"], dep["metadata"]["name"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True


def test_hub_deployment_is_recreate_with_probes_and_secrets_from_env() -> None:
    hub = find(render([CONFIG / "values-nersc-example.yaml"]), "Deployment", "t-hpchub-hub")
    assert hub["spec"]["strategy"]["type"] == "Recreate"
    c = hub["spec"]["template"]["spec"]["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/hub/health"
    assert c["livenessProbe"]["httpGet"]["path"] == "/hub/health"
    env = {e["name"]: e for e in c["env"]}
    for secret_env in [
        "JPY_COOKIE_SECRET",
        "JUPYTERHUB_CRYPT_KEY",
        "CONFIGPROXY_AUTH_TOKEN",
    ]:
        assert "secretKeyRef" in env[secret_env]["valueFrom"], secret_env
    # The OAuth client secret comes from the operator's existing Secret.
    ref = env["HPCHUB_OAUTH_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "hpchub-oauth-client", "key": "client-secret"}
    # Tokens never on the command line.
    assert not any("token" in a.lower() or "secret" in a.lower() for a in c["args"])


def test_values_reach_the_hub_as_one_mounted_yaml_with_computed_names() -> None:
    docs = render([CONFIG / "values-nersc-example.yaml"])
    secret = find(docs, "Secret", "t-hpchub-hub-config")
    values = yaml.safe_load(base64.b64decode(secret["data"]["values.yaml"]))
    assert set(values["systems"]) == {"perlmutter", "cori", "spin"}
    assert values["_internal"]["names"]["proxyApi"] == "t-hpchub-proxy-api"
    assert values["_internal"]["release"] == {"name": "t", "namespace": "hpc"}
    hub = find(docs, "Deployment", "t-hpchub-hub")
    mounts = {
        m["name"]: m["mountPath"] for m in hub["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    }
    assert mounts["config"] == "/usr/local/etc/hpchub"


def _annotations(docs: list[dict], name: str) -> dict[str, str]:
    return find(docs, "Deployment", name)["spec"]["template"]["metadata"]["annotations"]


def test_config_change_rolls_the_hub_and_nothing_else_rolls_it() -> None:
    fixed = [
        "hub.cookieSecret=" + "a" * 64,
        "hub.cryptKey=" + "b" * 64,
        "proxy.secretToken=" + "c" * 64,
    ]
    base = render([CONFIG / "values-minimal.yaml"], fixed)
    same = render([CONFIG / "values-minimal.yaml"], fixed)
    changed = render([CONFIG / "values-minimal.yaml"], [*fixed, "culling.timeout=7200"])
    assert _annotations(base, "t-hpchub-hub") == _annotations(same, "t-hpchub-hub")
    assert (
        _annotations(base, "t-hpchub-hub")["checksum/config"]
        != _annotations(changed, "t-hpchub-hub")["checksum/config"]
    )
    # A hub-only setting does not restart the proxy (which would drop its routes).
    assert _annotations(base, "t-hpchub-proxy") == _annotations(changed, "t-hpchub-proxy")


def test_postgres_replaces_the_pvc_and_reads_the_url_from_a_secret() -> None:
    docs = render(
        [CONFIG / "values-minimal.yaml"],
        ["hub.db.type=postgres", "hub.db.postgres.existingSecret=hub-db-url"],
    )
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    env = {
        e["name"]: e
        for e in find(docs, "Deployment", "t-hpchub-hub")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["HPCHUB_DB_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "hub-db-url",
        "key": "url",
    }


@pytest.mark.parametrize(
    ("sets", "kind", "check"),
    [
        (
            [
                "hub.connectBack.type=NodePort",
                "hub.connectBack.host=h.example.org",
                "hub.connectBack.nodePort=31001",
            ],
            "Service",
            lambda d: (
                d["spec"]["type"] == "NodePort"
                and d["spec"]["ports"][0]["nodePort"] == 31001
                and d["spec"]["externalTrafficPolicy"] == "Local"
            ),
        ),
        (
            ["hub.connectBack.type=LoadBalancer", "hub.connectBack.host=h.example.org"],
            "Service",
            lambda d: d["spec"]["type"] == "LoadBalancer",
        ),
        (
            ["hub.connectBack.type=Ingress", "hub.connectBack.host=h.example.org"],
            "Ingress",
            lambda d: d["spec"]["rules"][0]["http"]["paths"][0]["path"] == "/hub/api",
        ),
    ],
)
def test_connect_back_exposes_the_hub_api(sets: list[str], kind: str, check) -> None:
    docs = render([CONFIG / "values-minimal.yaml"], sets)
    assert check(find(docs, kind, "t-hpchub-hub-connect"))


def test_cluster_ip_connect_back_creates_no_external_endpoint() -> None:
    docs = render([CONFIG / "values-minimal.yaml"])
    assert not [d for d in docs if d["metadata"]["name"] == "t-hpchub-hub-connect"]


def test_proxy_api_is_reachable_from_the_hub_only() -> None:
    np = find(
        render([CONFIG / "values-nersc-example.yaml"]),
        "NetworkPolicy",
        "t-hpchub-proxy",
    )
    api_rules = [r for r in np["spec"]["ingress"] if r.get("ports") == [{"port": "api"}]]
    assert len(api_rules) == 1
    assert api_rules[0]["from"] == [
        {
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "hpchub",
                    "app.kubernetes.io/instance": "t",
                    "app.kubernetes.io/component": "hub",
                }
            }
        }
    ]


def test_hpc_cidrs_may_reach_the_hub_api() -> None:
    np = find(render([CONFIG / "values-nersc-example.yaml"]), "NetworkPolicy", "t-hpchub-hub")
    cidrs = [p["ipBlock"]["cidr"] for r in np["spec"]["ingress"] for p in r.get("from", []) if "ipBlock" in p]
    assert cidrs == ["10.42.0.0/16", "10.43.0.0/16"]


def test_network_policies_can_be_turned_off() -> None:
    docs = render(
        [CONFIG / "values-minimal.yaml"],
        [
            "hub.networkPolicy.enabled=false",
            "proxy.networkPolicy.enabled=false",
            "spin.networkPolicy.enabled=false",
        ],
    )
    assert not [d for d in docs if d["kind"] == "NetworkPolicy"]


def _install_dry_run(values_files: list[str], sets: list[str]) -> tuple[str, list[dict]]:
    """NOTES.txt and the manifests (hooks included) of a client-side `helm install`."""
    args = ["install", "t", str(CHART), "--dry-run=client", "--namespace", "hpc"]
    for f in values_files:
        args += ["-f", str(CONFIG / f)]
    for v in sets:
        args += ["--set", v]
    out = helm(*args).stdout
    manifests, notes = out.split("\nNOTES:\n", 1)
    body = manifests.split("\nHOOKS:\n", 1)[1].replace("\nMANIFEST:\n", "\n---\n")
    return notes, [d for d in yaml.safe_load_all(body) if d]


def _kubectl_commands(notes: str) -> list[list[str]]:
    return [shlex.split(line.split("|")[0].strip(" ()")) for line in notes.splitlines() if "kubectl " in line]


def _check_kubectl_references(notes: str, docs: list[dict]) -> None:
    """Every object a printed kubectl command names is one the chart renders, in the
    release's namespace, with the port or key used."""
    objects = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    for cmd in _kubectl_commands(notes):
        assert cmd[:3] == ["kubectl", "--namespace", "hpc"], cmd
        if cmd[3] == "get":
            kind = {"service": "Service", "secret": "Secret", "configmap": "ConfigMap"}[cmd[4]]
            obj = objects[(kind, cmd[5])]
            for flag in cmd[6:]:
                m = re.fullmatch(r"jsonpath=\{\.data\.(.+)\}", flag)
                # A Secret's keys are rendered; a ConfigMap the hub fills at start is not.
                if m and kind == "Secret":
                    assert m.group(1) in obj["data"], cmd
        elif cmd[3] == "logs":
            # The uninstall hook's Job, kept when it fails.
            kind, _, name = cmd[4].partition("/")
            assert kind == "job" and ("Job", name) in objects, cmd
        else:
            assert cmd[3] == "port-forward", cmd
            svc = objects[("Service", cmd[4].removeprefix("service/"))]
            assert int(cmd[5].split(":")[1]) in [p["port"] for p in svc["spec"]["ports"]], cmd


@pytest.mark.parametrize(
    ("files", "sets", "url"),
    [
        (["values-dev.yaml"], [], "http://<any node address>:30080/"),
        (
            ["values-minimal.yaml"],
            ["proxy.service.type=ClusterIP", "proxy.service.port=8000", "hub.baseUrl=/jupyter/"],
            "then http://localhost:8080/jupyter/",
        ),
        (
            ["values-minimal.yaml"],
            ["proxy.service.type=LoadBalancer"],
            "then http://<EXTERNAL-IP>/ (if EXTERNAL-IP stays <pending>, the cluster has",
        ),
        (
            ["values-minimal.yaml"],
            ["ingress.enabled=true", "ingress.hosts[0]=jupyter.example.org", "ingress.tlsSecretName=tls"],
            "https://jupyter.example.org/",
        ),
        # offload: TLS ends at the site's load balancer, the Service's https port is plain HTTP.
        (
            ["values-minimal.yaml"],
            [
                "proxy.https.enabled=true",
                "proxy.https.type=offload",
                "proxy.service.type=NodePort",
                "proxy.service.httpsNodePort=30443",
            ],
            "https://<your load balancer's address>/",
        ),
        (
            ["values-minimal.yaml"],
            [
                "proxy.https.enabled=true",
                "proxy.https.type=offload",
                "proxy.service.type=ClusterIP",
                "proxy.service.disableHttpPort=true",
            ],
            "then http://localhost:8080/ (offload: that port serves plain HTTP to your load balancer)",
        ),
    ],
)
def test_notes_print_the_url_and_how_to_log_in(files: list[str], sets: list[str], url: str) -> None:
    notes, docs = _install_dry_run(files, sets)
    _check_kubectl_references(notes, docs)
    assert re.search(rf"^   {re.escape(url)}$", notes, re.M), notes
    public = find(docs, "Service", "t-hpchub-proxy-public")
    path = urlsplit(url.split()[1] if url.startswith("then ") else url).path
    if ":30080/" in url:
        assert public["spec"]["ports"][0]["nodePort"] == 30080
    if "proxy.https.type=offload" in sets:
        # What NOTES points at is the Service's https port, which sends plain HTTP on.
        port = next(p for p in public["spec"]["ports"] if p["name"] == "https")
        assert port["targetPort"] == "http", port
        if "load balancer's address" in url:
            assert port["nodePort"] == 30443 and "port 30443 of any node" in notes, notes
    if "ingress.enabled=true" in sets:
        rule = find(docs, "Ingress", "t-hpchub")["spec"]["rules"][0]
        assert rule["host"] == urlsplit(url).hostname and rule["http"]["paths"][0]["path"] == path
        assert find(docs, "Ingress", "t-hpchub")["spec"]["tls"][0]["secretName"] == "tls"
    values = yaml.safe_load(
        base64.b64decode(find(docs, "Secret", "t-hpchub-hub-config")["data"]["values.yaml"])
    )
    assert path == values["hub"]["baseUrl"]
    assert "any username, password from auth.dummy.password" in notes


def test_notes_print_the_identity_provider_and_the_connect_back_url_the_hub_uses() -> None:
    from traitlets.config import Config

    from hpchub.config import configure

    # OAuth, Ingress connect-back over https: the sign-in target and the URL notebooks are given.
    notes, docs = _install_dry_run(["values-nersc-example.yaml"], [])
    values = yaml.safe_load(
        base64.b64decode(find(docs, "Secret", "t-hpchub-hub-config")["data"]["values.yaml"])
    )
    assert f'"Sign in" takes users to {values["auth"]["oauth"]["authorizeUrl"]}.' in notes
    c = Config()
    configure(c, values, env={"HPCHUB_OAUTH_CLIENT_SECRET": "x"})
    assert f"{c.RemoteSpawner.hub_connect_url}/hub/api" in notes.split()
    # sshproxy, LoadBalancer connect-back under a base URL.
    notes, docs = _install_dry_run(
        ["values-minimal.yaml"],
        [
            "auth.type=sshproxy",
            "auth.sshproxy.url=https://keys.example.org/api",
            "hub.networkPolicy.egressAllowRules.identityProvider.cidrs={198.51.100.7/32}",
            "hub.baseUrl=/jupyter/",
            "hub.connectBack.type=LoadBalancer",
            "hub.connectBack.host=hub-api.example.org",
        ],
    )
    values = yaml.safe_load(
        base64.b64decode(find(docs, "Secret", "t-hpchub-hub-config")["data"]["values.yaml"])
    )
    c = Config()
    configure(c, values, env={})
    assert f"{c.RemoteSpawner.hub_connect_url}/jupyter/hub/api" in notes.split()
    assert "checked by https://keys.example.org/api." in notes
    svc = find(docs, "Service", "t-hpchub-hub-connect")
    assert svc["spec"]["type"] == "LoadBalancer" and svc["spec"]["ports"][0]["port"] == 8081
    # ClusterIP: NOTES says notebooks outside the cluster have no address.
    notes, _ = _install_dry_run(["values-minimal.yaml"], [])
    assert "no address outside the cluster: hub.connectBack.type is ClusterIP" in notes


@pytest.mark.parametrize("given", ["imagePullSecrets[0]=regcred", "imagePullSecrets[0].name=regcred"])
async def test_image_pull_secrets_reach_every_deployment_and_spin(
    monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    # A name, or {name: ...} as a pod spec and z2jh have it.
    docs = render([CONFIG / "values-minimal.yaml"], [given])
    pods = {
        (d["kind"], d["metadata"]["name"]): d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")
    }
    assert {
        ("Deployment", "t-hpchub-hub"),
        ("Deployment", "t-hpchub-proxy"),
        ("Job", "t-hpchub-stop-servers"),
    } <= set(pods)
    for name, pod in pods.items():
        assert pod.get("imagePullSecrets") == [{"name": "regcred"}], name
    # Spin pods: the hub's loader reads the values the chart mounts, and KubeSpawner builds
    # the pod from its traits (no cluster: only the API client is left out).
    monkeypatch.setattr("kubespawner.spawner.load_config", lambda **kw: None)
    monkeypatch.setattr("kubespawner.spawner.shared_client", lambda name: None)
    from types import SimpleNamespace

    from jupyterhub.objects import Hub
    from traitlets.config import Config

    from hpchub.config import configure
    from hpchub.spawners.dispatch import DispatchSpawner
    from hpchub.spawners.spin import SpinSpawner

    values = yaml.safe_load(
        base64.b64decode(find(docs, "Secret", "t-hpchub-hub-config")["data"]["values.yaml"])
    )
    c = Config()
    configure(c, values, env={"HPCHUB_DUMMY_PASSWORD": "x"})
    user = SimpleNamespace(
        name="alice", id=1, url="/user/alice/", escaped_name="alice", json_escaped_name="alice"
    )
    orm = SimpleNamespace(name="spin-shared", state=None, server=None)
    spin = DispatchSpawner(config=c, _mock=True, user=user, hub=Hub(), orm_spawner=orm)
    assert type(spin) is SpinSpawner
    spin.api_token = "not-used"
    pod = await spin.get_pod_manifest()
    assert [ref.name for ref in pod.spec.image_pull_secrets or []] == ["regcred"]


def test_uninstall_hook_stops_servers_through_the_hub_with_its_own_token() -> None:
    docs = render([CONFIG / "values-nersc-example.yaml"])
    job = find(docs, "Job", "t-hpchub-stop-servers")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["args"] == ["python", "-m", "hpchub.uninstall"]
    env = {e["name"]: e for e in c["env"]}
    assert env["HPCHUB_HUB_API_URL"]["value"] == "http://t-hpchub-hub:8081/hub/api"
    assert env["HPCHUB_UNINSTALL_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "hub.uninstall-token"
    # The hub admits the hook's pod.
    np = find(docs, "NetworkPolicy", "t-hpchub-hub")
    comps = [
        p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for r in np["spec"]["ingress"]
        for p in r.get("from", [])
        if "podSelector" in p
    ]
    assert "uninstall" in comps


def test_a_failed_uninstall_hook_keeps_its_job_and_log_and_names_the_release() -> None:
    notes, docs = _install_dry_run(["values-minimal.yaml"], [])
    job = find(docs, "Job", "t-hpchub-stop-servers")
    # Deleted once it succeeded (and before the next try); a failed one stays for kubectl logs.
    policy = job["metadata"]["annotations"]["helm.sh/hook-delete-policy"].split(",")
    assert sorted(policy) == ["before-hook-creation", "hook-succeeded"]
    assert "ttlSecondsAfterFinished" not in job["spec"]
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert (env["HPCHUB_RELEASE"], env["HPCHUB_NAMESPACE"]) == ("t", "hpc")
    assert (env["HPCHUB_HOOK_JOB"], env["HPCHUB_HUB_DEPLOYMENT"]) == ("t-hpchub-stop-servers", "t-hpchub-hub")
    # NOTES tells the operator where that log is.
    assert "kubectl --namespace hpc logs job/t-hpchub-stop-servers" in notes
    # Its whole budget fits in helm uninstall's default --timeout (5m) with the pod's start.
    assert int(env["HPCHUB_STOP_TIMEOUT"]) <= 240


def test_uninstall_hook_can_be_turned_off() -> None:
    docs = render([CONFIG / "values-minimal.yaml"], ["hub.uninstall.stopServers=false"])
    assert not [d for d in docs if d["kind"] == "Job"]
    notes, _ = _install_dry_run(["values-minimal.yaml"], ["hub.uninstall.stopServers=false"])
    assert "logs job/" not in notes


def test_tunnel_mode_lets_the_proxy_reach_forwarded_ports_on_the_hub(tmp_path) -> None:
    extra = tmp_path / "tunnel.yaml"
    extra.write_text("systems:\n  perlmutter:\n    ssh:\n      tunnel: true\n")
    docs = render([CONFIG / "values-nersc-example.yaml", extra])
    hub_np = find(docs, "NetworkPolicy", "t-hpchub-hub")
    # The forwarded ports are the kernel's pick in the hub pod: any unprivileged port.
    forwarded = [{"port": 1024, "endPort": 65535, "protocol": "TCP"}]
    any_port = [r for r in hub_np["spec"]["ingress"] if r.get("ports") == forwarded]
    assert len(any_port) == 1
    assert any_port[0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "proxy"
    proxy_np = find(docs, "NetworkPolicy", "t-hpchub-proxy")
    assert proxy_np["spec"]["egress"][0]["ports"] == forwarded
    env = {
        e["name"]: e
        for e in find(docs, "Deployment", "t-hpchub-hub")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    # Without tunnel mode the hub admits the proxy on its API port only.
    plain = find(render([CONFIG / "values-nersc-example.yaml"]), "NetworkPolicy", "t-hpchub-hub")
    assert all("ports" in r for r in plain["spec"]["ingress"])


@pytest.mark.parametrize(
    "values",
    ["config/mini-hpc/values-test.yaml", "tests/browser/values-browser.yaml", "config/values-kind.yaml"],
)
def test_values_the_test_harnesses_use_are_valid_chart_values(values: str, tmp_path) -> None:
    # Tests may only use settings an operator can set: the harness files pass the schema
    # once the login hosts, host keys and hub address the harness fills in at start are
    # given (its notebooks reach the hub on loopback, tests/harness/jupyterhub_config.py,
    # where a cluster needs a connect-back Service and the HPC network's CIDRs).
    from .helm import ROOT

    data = yaml.safe_load((ROOT / values).read_text())
    for system in (data.get("systems") or {}).values():
        ssh = system.get("ssh")
        if ssh is not None:
            ssh["hosts"] = ssh.get("hosts") or ["127.0.0.1"]
            ssh["knownHosts"] = ssh.get("knownHosts") or "127.0.0.1 ssh-ed25519 AAAA"
            if (data.get("hub") or {}).get("connectBack", {}).get("type") == "ClusterIP":
                data["hub"]["connectBack"] = {"type": "NodePort", "host": "127.0.0.1"}
                data.setdefault("hpcNetwork", {"cidrs": ["127.0.0.0/8"]})
    if data.get("systems") and not (data.get("sshCA") or {}).get("enabled"):
        # values-browser.yaml's hubs start every server as a local process, never over SSH
        # (tests/browser/conftest.py); on a cluster its HPC cells need the CA (HPCHUB-R057).
        data["sshCA"] = {"enabled": True, "sourceAddresses": ["127.0.0.1/32"]}
    f = tmp_path / "filled.yaml"
    f.write_text(yaml.safe_dump(data))
    # values-kind.yaml is layered over values-dev.yaml (hack/kind/helm-install.sh).
    base = CONFIG / ("values-dev.yaml" if values == "config/values-kind.yaml" else "values-minimal.yaml")
    assert render([base, f])


@pytest.mark.parametrize("values", VALUES_FILES)
def test_spin_pods_reach_only_dns_the_hub_api_and_the_listed_networks(values: str) -> None:
    """The user guide tells users Spin cannot download packages (create conda environments
    on a login node): Spin's egress is DNS to the cluster DNS, the hub API, and
    spin.networkPolicy.egressCIDRs — no rule without a destination, no port 80/443."""
    for extra, cidrs in (([], []), (["spin.networkPolicy.egressCIDRs={10.9.0.0/16}"], ["10.9.0.0/16"])):
        pol = find(render([CONFIG / values], extra), "NetworkPolicy", "t-hpchub-spin")["spec"]
        assert pol["policyTypes"] == ["Ingress", "Egress"]
        seen_cidrs = []
        for rule in pol["egress"]:
            assert rule.get("to"), f"an egress rule to any address: {rule}"
            ports = {p["port"] for p in rule.get("ports", [])}
            blocks = [t["ipBlock"]["cidr"] for t in rule["to"] if "ipBlock" in t]
            if ports == {8081}:
                components = [
                    t["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for t in rule["to"]
                ]
                assert components == ["hub"], rule
            elif ports == {53}:
                pass  # DNS: the cluster DNS pods, or clusterDNS.cidrs
            else:
                # spin.networkPolicy.egressCIDRs: every TCP and UDP port but 53.
                assert rule["ports"] == [
                    {"port": first, "endPort": last, "protocol": proto}
                    for proto in ("TCP", "UDP")
                    for first, last in ((1, 52), (54, 65535))
                ], rule
                assert blocks == rule_cidrs(rule), rule
                seen_cidrs += blocks
            assert "0.0.0.0/0" not in blocks
        assert seen_cidrs == cidrs


def rule_cidrs(rule: dict) -> list[str]:
    return [t["ipBlock"]["cidr"] for t in rule["to"]]


PLAIN_HTTP_WARNING = "WARNING: notebooks call the hub API over plain HTTP across the HPC network"


@pytest.mark.parametrize(
    ("files", "sets", "warned"),
    [
        # The site example: Ingress with TLS, https.
        (["values-nersc-example.yaml"], [], False),
        # Off-cluster connect-back over http: every kind warns.
        (["values-nersc-example.yaml"], ["hub.connectBack.scheme=http"], True),
        (
            ["values-nersc-example.yaml"],
            ["hub.connectBack.type=NodePort", "hub.connectBack.scheme=http"],
            True,
        ),
        (["values-dev.yaml"], [], True),  # the dev site: NodePort over http
        (
            ["values-nersc-example.yaml"],
            ["hub.connectBack.type=LoadBalancer", "hub.connectBack.scheme=https"],
            False,
        ),
        # ClusterIP: nothing leaves the cluster, no warning.
        (["values-minimal.yaml"], [], False),
        (["values-minimal.yaml"], ["hub.connectBack.scheme=http"], False),
    ],
)
def test_notes_warn_when_an_off_cluster_connect_back_is_plain_http(
    files: list[str], sets: list[str], warned: bool
) -> None:
    notes, docs = _install_dry_run(files, sets)
    assert notes.count(PLAIN_HTTP_WARNING) == (1 if warned else 0), notes
    values = yaml.safe_load(
        base64.b64decode(find(docs, "Secret", "t-hpchub-hub-config")["data"]["values.yaml"])
    )
    cb = values["hub"]["connectBack"]
    # The warning follows what notebooks will use: an off-cluster address over http.
    assert warned == (cb["type"] != "ClusterIP" and cb.get("scheme", "http") == "http")
