"""Every rule of every NetworkPolicy the chart renders, against the flows the operator guide
documents ("Network requirements"): the Kubernetes API at its endpoints, the identity
provider at its CIDRs, login nodes on their SSH port, notebooks on `singleuser.portRange`,
DNS to the cluster's DNS only. No rule is skipped: each is expanded into (peer, protocol,
ports) flows and the whole set compared, so a rule "to anywhere" or "every port" shows up
as a flow nobody documented."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from .helm import CHART, CONFIG, find, helm, render, render_error, template_args

MINIMAL = CONFIG / "values-minimal.yaml"
DEV = CONFIG / "values-dev.yaml"
# The HPC network values-dev.yaml names (a placeholder; `make up` sets kind's real subnet).
DEV_HPC_CIDR = yaml.safe_load(DEV.read_text())["hpcNetwork"]["cidrs"][0]
NERSC = CONFIG / "values-nersc-example.yaml"

ANY = "<any address>"
ALL = (1, 65535)
Flow = tuple[str, str, Any, Any]  # (peer, protocol, first port, last port)


def peer(obj: dict[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True)


def pods(component: str) -> str:
    labels = {
        "app.kubernetes.io/name": "hpchub",
        "app.kubernetes.io/instance": "t",
        "app.kubernetes.io/component": component,
    }
    return peer({"podSelector": {"matchLabels": labels}})


def block(cidr: str, *, except_: list[str] | None = None) -> str:
    ip: dict[str, Any] = {"cidr": cidr}
    if except_:
        ip["except"] = except_
    return peer({"ipBlock": ip})


DNS = peer(
    {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }
)
DNS_FLOWS = {(DNS, "UDP", 53, 53), (DNS, "TCP", 53, 53)}


def flows(rules: list[dict[str, Any]], side: str) -> set[Flow]:
    """Every (peer, protocol, port range) a list of rules allows. No `to`/`from`: any
    address; no `ports`: every port of every protocol."""
    out: set[Flow] = set()
    for rule in rules:
        peers = [peer(p) for p in rule.get(side) or []] or [ANY]
        ports = rule.get("ports") or [None]
        for who in peers:
            for p in ports:
                if p is None or "port" not in p:
                    proto = "ANY" if p is None else p.get("protocol", "TCP")
                    out.add((who, proto, *ALL))
                else:
                    out.add((who, p.get("protocol", "TCP"), p["port"], p.get("endPort", p["port"])))
    return out


def policies(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        d["metadata"]["name"].removeprefix("t-hpchub-"): d["spec"]
        for d in docs
        if d["kind"] == "NetworkPolicy"
    }


def egress(docs: list[dict[str, Any]], component: str) -> set[Flow]:
    return flows(policies(docs)[component].get("egress") or [], "to")


def ingress(docs: list[dict[str, Any]], component: str) -> set[Flow]:
    return flows(policies(docs)[component].get("ingress") or [], "from")


def covers(flow: Flow, port: int) -> bool:
    return isinstance(flow[2], int) and flow[2] <= port <= flow[3]


def test_dev_values_allow_exactly_the_documented_flows() -> None:
    docs = render([DEV])
    hpc = block(DEV_HPC_CIDR)
    assert egress(docs, "hub") == {
        (pods("proxy"), "TCP", 8001, 8001),
        (pods("spin"), "TCP", 8888, 8888),
        # The login node's SSH (systems.mini.ssh.port) and notebooks on the default portRange.
        (hpc, "TCP", 22, 22),
        (hpc, "TCP", 1024, 65535),
        *DNS_FLOWS,
    }
    assert egress(docs, "proxy") == {
        (pods("hub"), "TCP", 8081, 8081),
        (pods("spin"), "TCP", 8888, 8888),
        (hpc, "TCP", 1024, 65535),
        *DNS_FLOWS,
    }
    assert egress(docs, "spin") == {(pods("hub"), "TCP", 8081, 8081), *DNS_FLOWS}
    assert ingress(docs, "hub") == {
        (pods("proxy"), "TCP", "http", "http"),
        (pods("spin"), "TCP", "http", "http"),
        (pods("uninstall"), "TCP", "http", "http"),
        (hpc, "TCP", "http", "http"),
    }
    assert ingress(docs, "proxy") == {(ANY, "TCP", "http", "http"), (pods("hub"), "TCP", "api", "api")}
    assert ingress(docs, "spin") == {(pods("proxy"), "TCP", 8888, 8888), (pods("hub"), "TCP", 8888, 8888)}


# Values that reach every branch of the three policies' templates.
VARIANTS: dict[str, tuple[list[Path], list[str]]] = {
    "minimal": ([MINIMAL], []),
    "dev": ([DEV], []),
    "nersc": ([NERSC], []),
    "tunnel": ([DEV], ["systems.mini.ssh.tunnel=true"]),
    "ports": ([DEV], ["systems.mini.ssh.port=2222", "systems.mini.singleuser.portRange.min=40000"]),
    "low-ports": ([DEV], ["systems.mini.singleuser.portRange.min=1"]),
    "spin-cidrs": ([DEV], ["spin.networkPolicy.egressCIDRs={10.20.0.0/16,fd00:20::/64}"]),
    "node-local-dns": ([DEV], ["clusterDNS.cidrs={169.254.20.10/32}"]),
    "api-override": ([DEV], ["hub.networkPolicy.egressAllowRules.kubernetesAPI.cidrs={192.0.2.10/32}"]),
    "idp-public": ([NERSC], ["hub.networkPolicy.egressAllowRules.identityProvider.nonPrivateIPs=true"]),
    "sshproxy": (
        [DEV],
        [
            "auth.type=sshproxy",
            "auth.sshproxy.url=https://keys.example.org/api",
            "hub.networkPolicy.egressAllowRules.identityProvider.cidrs={198.51.100.7/32}",
        ],
    ),
    "postgres": (
        [DEV],
        ["hub.db.type=postgres", "hub.db.postgres.existingSecret=db", "hub.db.postgres.cidrs={10.3.0.12/32}"],
    ),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_no_rule_of_any_policy_opens_dns_or_any_address_beyond_the_documented_flows(variant: str) -> None:
    files, sets = VARIANTS[variant]
    docs = render(files, sets)
    dns_peers = {DNS} | {block("169.254.20.10/32")} if "clusterDNS.cidrs" in " ".join(sets) else {DNS}
    for component, spec in policies(docs).items():
        assert spec["policyTypes"] == ["Ingress", "Egress"], component
        for flow in egress(docs, component):
            who, proto, first, last = flow
            # Port 53 (of any protocol) only to the cluster's DNS: anywhere else a pod could
            # send data out disguised as DNS.
            if proto == "ANY" or covers(flow, 53):
                assert who in dns_peers, (variant, component, flow)
            # Every flow to an address outside the cluster's pods names its address and port.
            assert who != ANY, (variant, component, flow)
            if '"ipBlock"' in who:
                assert proto in ("TCP", "UDP") and isinstance(first, int), (variant, component, flow)
        for who, _proto, first, _last in ingress(docs, component):
            # From anywhere: only the proxy's public web ports.
            if who == ANY:
                assert component == "proxy" and first in ("http", "https"), (variant, component, who, first)


def test_site_ports_narrow_the_hpc_rules() -> None:
    docs = render(*VARIANTS["ports"])
    hpc = block(DEV_HPC_CIDR)
    hub = {f for f in egress(docs, "hub") if f[0] == hpc}
    assert hub == {(hpc, "TCP", 2222, 2222), (hpc, "TCP", 40000, 65535)}
    assert {f for f in egress(docs, "proxy") if f[0] == hpc} == {(hpc, "TCP", 40000, 65535)}


def test_tunnel_mode_reaches_login_nodes_on_ssh_only() -> None:
    docs = render(*VARIANTS["tunnel"])
    hpc = block(DEV_HPC_CIDR)
    # The notebooks' ports are forwarded into the hub pod: the proxy reaches them there,
    # and neither pod reaches the HPC network on them.
    assert {f for f in egress(docs, "hub") if f[0] == hpc} == {(hpc, "TCP", 22, 22)}
    assert not {f for f in egress(docs, "proxy") if f[0] == hpc}
    assert (pods("hub"), "TCP", 1024, 65535) in egress(docs, "proxy")
    assert (pods("proxy"), "TCP", 1024, 65535) in ingress(docs, "hub")


def test_spin_egress_cidrs_get_every_port_but_dns() -> None:
    docs = render(*VARIANTS["spin-cidrs"])
    for cidr in ("10.20.0.0/16", "fd00:20::/64"):
        got = {f for f in egress(docs, "spin") if f[0] == block(cidr)}
        assert got == {
            (block(cidr), proto, first, last)
            for proto in ("TCP", "UDP")
            for first, last in ((1, 52), (54, 65535))
        }


def test_the_identity_provider_is_reached_at_its_cidrs_on_its_ports() -> None:
    docs = render(*VARIANTS["sshproxy"])
    assert (block("198.51.100.7/32"), "TCP", 443, 443) in egress(docs, "hub")
    docs = render([NERSC], ["hub.networkPolicy.egressAllowRules.identityProvider.ports={443,8443}"])
    idp = {f for f in egress(docs, "hub") if f[0] == block("192.0.2.0/28")}
    assert idp == {(block("192.0.2.0/28"), "TCP", 443, 443), (block("192.0.2.0/28"), "TCP", 8443, 8443)}


def test_a_public_identity_provider_is_any_public_address_on_its_port_only() -> None:
    docs = render(*VARIANTS["idp-public"])
    public = {
        block("0.0.0.0/0", except_=["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"]),
        block("::/0", except_=["fc00::/7", "fe80::/10"]),
    }
    assert {f for f in egress(docs, "hub") if f[0] in public} == {(p, "TCP", 443, 443) for p in public}


@pytest.mark.parametrize("auth", ["oauth", "sshproxy"])
def test_an_identity_provider_without_an_egress_rule_is_refused_naming_the_key(auth: str) -> None:
    sets = {
        "oauth": ["hub.networkPolicy.egressAllowRules.identityProvider.cidrs=null"],
        "sshproxy": ["auth.type=sshproxy", "auth.sshproxy.url=https://keys.example.org/api"],
    }[auth]
    err = render_error([NERSC if auth == "oauth" else DEV], sets)
    assert "hub.networkPolicy.egressAllowRules.identityProvider.cidrs: empty" in err
    assert "nonPrivateIPs" in err


def test_the_kubernetes_api_override_replaces_the_lookup() -> None:
    docs = render(*VARIANTS["api-override"])
    api = block("192.0.2.10/32")
    assert {f for f in egress(docs, "hub") if f[0] == api} == {
        (api, "TCP", 443, 443),
        (api, "TCP", 6443, 6443),
    }
    assert not {f for f in egress(docs, "hub") if f[0] == ANY}


# `helm template` has no cluster; `helm install` looks the `kubernetes` Service's
# EndpointSlice up. A copy of the chart answers that lookup from a file, as the API server
# would (kind: the control-plane node's address on 6443).
ENDPOINTS = {
    "apiVersion": "discovery.k8s.io/v1",
    "kind": "EndpointSlice",
    "metadata": {
        "name": "kubernetes",
        "namespace": "default",
        "labels": {"kubernetes.io/service-name": "kubernetes"},
    },
    "addressType": "IPv4",
    "endpoints": [{"addresses": ["172.18.0.2"], "conditions": {"ready": True}}],
    "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
}
LOOKUP = '(lookup "discovery.k8s.io/v1" "EndpointSlice" "default" "kubernetes")'


def _chart_with_api(tmp_path: Path, slice_: dict[str, Any] | None) -> Path:
    chart = tmp_path / "hpchub"
    shutil.copytree(CHART, chart)
    found = 0
    for tpl in (chart / "templates").rglob("*.tpl"):
        text = tpl.read_text()
        found += text.count(LOOKUP)
        tpl.write_text(text.replace(LOOKUP, '(.Files.Get "probe-endpointslice.yaml" | fromYaml)'))
    assert found == 1, "expected one lookup of the kubernetes EndpointSlice"
    (chart / "probe-endpointslice.yaml").write_text(yaml.safe_dump(slice_ or {}))
    return chart


def test_the_kubernetes_api_is_reached_at_its_looked_up_endpoints_only(tmp_path: Path) -> None:
    chart = _chart_with_api(tmp_path, ENDPOINTS)
    docs = [d for d in yaml.safe_load_all(helm(*template_args([DEV], chart=chart)).stdout) if d]
    api = block("172.18.0.2/32")
    # What kube-proxy sends the hub's connections to kubernetes.default:443 to.
    assert (api, "TCP", 6443, 6443) in egress(docs, "hub")
    assert not {f for f in egress(docs, "hub") if f[0] == ANY or (f[0] == api and f[2] != 6443)}
    # IPv6 endpoints get a /128.
    v6 = {**ENDPOINTS, "addressType": "IPv6", "endpoints": [{"addresses": ["fd00::1"]}]}
    docs = [
        d
        for d in yaml.safe_load_all(
            helm(*template_args([DEV], chart=_chart_with_api(tmp_path / "6", v6))).stdout
        )
        if d
    ]
    assert (block("fd00::1/128"), "TCP", 6443, 6443) in egress(docs, "hub")


def test_without_the_lookup_or_the_override_the_api_is_not_opened_and_notes_say_so() -> None:
    docs = render([DEV])
    assert not {f for f in egress(docs, "hub") if f[2] in (443, 6443) and f[0] != block("172.18.0.0/16")}
    out = helm("install", "t", str(CHART), "--dry-run=client", "--namespace", "hpc", "-f", str(DEV)).stdout
    notes = out.split("\nNOTES:\n", 1)[1]
    assert "hub.networkPolicy.egressAllowRules.kubernetesAPI.cidrs" in notes
    # With the override, no warning.
    out = helm(
        "install", "t", str(CHART), "--dry-run=client", "--namespace", "hpc", "-f", str(DEV),
        "--set", "hub.networkPolicy.egressAllowRules.kubernetesAPI.cidrs={192.0.2.10/32}",
    ).stdout  # fmt: skip
    assert "kubernetesAPI" not in out.split("\nNOTES:\n", 1)[1]


def test_policies_are_valid_kubernetes() -> None:
    import kubernetes_validate

    for files, sets in VARIANTS.values():
        for doc in render(files, sets):
            if doc["kind"] == "NetworkPolicy":
                kubernetes_validate.validate(doc, "1.34.0", strict=True)


def test_hub_policy_of_the_site_example() -> None:
    docs = render([NERSC])
    idp = block("192.0.2.0/28")
    assert (idp, "TCP", 443, 443) in egress(docs, "hub")
    hpc = {f for f in egress(docs, "hub") if f[0] in (block("10.42.0.0/16"), block("10.43.0.0/16"))}
    assert {(f[1], f[2], f[3]) for f in hpc} == {("TCP", 22, 22), ("TCP", 1024, 65535)}
    assert find(docs, "NetworkPolicy", "t-hpchub-hub")
