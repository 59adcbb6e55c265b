"""Generated secrets survive upgrades: the chart's own `hpchub.secretValue` helper, rendered
by real helm in a test chart that feeds it what `lookup` would return from a cluster."""

from __future__ import annotations

import base64
import re
import shutil
import string
from pathlib import Path

import pytest
import yaml

from .helm import CHART, CONFIG, find, helm, render, template_args

PROBE = """\
{{- range $name, $case := .Values.cases }}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: {{ $name }}}
data:
  value: {{ include "hpchub.secretValue" (dict "explicit" $case.explicit "existing" ($case.existing | default dict) "key" "k" "gen" $case.gen) | quote }}
{{- end }}
"""


@pytest.fixture(scope="module")
def probe_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("probe")
    (root / "templates").mkdir()
    (root / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.0.1\n")
    shutil.copy(CHART / "templates/_helpers.tpl", root / "templates/_helpers.tpl")
    (root / "templates/probe.yaml").write_text(PROBE)
    return root


def _run(chart: Path, tmp_path: Path, cases: dict) -> dict[str, str]:
    values = tmp_path / "cases.yaml"
    values.write_text(yaml.safe_dump({"cases": cases}))
    out = helm("template", "p", str(chart), "-f", str(values)).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    return {d["metadata"]["name"]: base64.b64decode(d["data"]["value"]).decode() for d in docs}


def test_explicit_value_wins_over_the_existing_secret(probe_chart: Path, tmp_path: Path) -> None:
    got = _run(
        probe_chart,
        tmp_path,
        {
            "c": {
                "explicit": "abc",
                "existing": {"k": base64.b64encode(b"old").decode()},
                "gen": "hex32",
            }
        },
    )
    assert got["c"] == "abc"


def test_existing_secret_is_kept_across_renders(probe_chart: Path, tmp_path: Path) -> None:
    existing = {"k": base64.b64encode(b"kept-token").decode()}
    first = _run(
        probe_chart,
        tmp_path,
        {"c": {"explicit": "", "existing": existing, "gen": "hex32"}},
    )
    second = _run(
        probe_chart,
        tmp_path,
        {"c": {"explicit": "", "existing": existing, "gen": "hex32"}},
    )
    assert first["c"] == second["c"] == "kept-token"


def test_fresh_value_is_random_hex_when_nothing_exists(probe_chart: Path, tmp_path: Path) -> None:
    a = _run(probe_chart, tmp_path, {"c": {"explicit": "", "gen": "hex32"}})["c"]
    b = _run(probe_chart, tmp_path, {"c": {"explicit": "", "gen": "hex32"}})["c"]
    assert len(a) == 64 and set(a) <= set(string.hexdigits.lower())
    assert a != b  # only the lookup makes it stable, never a constant


def test_empty_existing_key_is_regenerated(probe_chart: Path, tmp_path: Path) -> None:
    got = _run(
        probe_chart,
        tmp_path,
        {"c": {"explicit": "", "existing": {"k": ""}, "gen": "hex32"}},
    )
    assert len(got["c"]) == 64


def test_ssh_ca_key_is_generated_as_an_openssh_usable_ed25519_key(probe_chart: Path, tmp_path: Path) -> None:
    import asyncssh

    pem = _run(probe_chart, tmp_path, {"c": {"explicit": "", "gen": "ed25519"}})["c"]
    key = asyncssh.import_private_key(pem)
    assert key.algorithm == b"ssh-ed25519"


# `helm template` has no cluster, so `lookup` returns nothing there. To see what the chart does
# on an upgrade, a copy of it gets each `(lookup "v1" "Secret" <ns> <name>)` call replaced by
# a template that answers from a file standing in for the cluster, and only when asked for
# exactly that Secret in the release's namespace.
CLUSTER_LOOKUP = """\
{{- define "probe.lookup" -}}
{{- $key := printf "%s/%s/%s/%s" (index . 1) (index . 2) (index . 3) (index . 4) -}}
{{- index ((index . 0).Files.Get "probe-cluster.yaml" | fromYaml) $key | default dict | toYaml -}}
{{- end -}}
"""
LOOKUP_CALL = re.compile(r'\(lookup ("v1") ("Secret") (\.Release\.Namespace) (\(include "[^"]+" \.\))\)')
GENERATED = {
    "t-hpchub-hub-secret": ("hub.cookie-secret", "hub.crypt-key", "proxy.token"),
    "t-hpchub-ssh-ca": ("ca",),
}


def _chart_in_a_cluster(tmp_path: Path, cluster: dict[str, dict]) -> Path:
    chart = tmp_path / "hpchub"
    shutil.copytree(CHART, chart)
    patched = 0
    for tpl in (chart / "templates").rglob("*.yaml"):
        text, n = LOOKUP_CALL.subn(
            r'(include "probe.lookup" (list $ \1 \2 \3 \4) | fromYaml)', tpl.read_text()
        )
        tpl.write_text(text)
        patched += n
    # Without the lookups the chart would rotate every generated secret on each upgrade.
    assert patched == len(GENERATED), f"expected a lookup of each generated Secret, found {patched}"
    (chart / "templates/_probe-lookup.tpl").write_text(CLUSTER_LOOKUP)
    (chart / "probe-cluster.yaml").write_text(
        yaml.safe_dump({f"v1/Secret/hpc/{name}": {"data": data} for name, data in cluster.items()})
    )
    return chart


def _generated(chart: Path) -> dict[str, dict[str, str]]:
    args = template_args([CONFIG / "values-dev.yaml"], ["sshCA.enabled=true"], chart=chart)
    docs = [d for d in yaml.safe_load_all(helm(*args).stdout) if d]
    return {name: dict(find(docs, "Secret", name)["data"]) for name in GENERATED}


def test_chart_secret_uses_the_helper_for_every_generated_value(tmp_path: Path) -> None:
    # What the cluster holds from the first install ...
    installed = _generated(_chart_in_a_cluster(tmp_path / "a", {}))
    fresh = _generated(_chart_in_a_cluster(tmp_path / "b", {}))
    for name, keys in GENERATED.items():
        for key in keys:
            assert installed[name][key] != fresh[name][key], f"{name} {key} is a constant"
    # ... is what an upgrade renders again, for every generated value.
    upgraded = _generated(_chart_in_a_cluster(tmp_path / "c", installed))
    for name, keys in GENERATED.items():
        for key in keys:
            assert upgraded[name][key] == installed[name][key], f"{name} {key} changed on upgrade"
    # The uninstall hook's token follows the kept cookie secret.
    hub = "t-hpchub-hub-secret"
    assert upgraded[hub]["hub.uninstall-token"] == installed[hub]["hub.uninstall-token"]
    assert len(base64.b64decode(installed[hub]["hub.cookie-secret"])) == 64
    ca = base64.b64decode(installed["t-hpchub-ssh-ca"]["ca"]).decode()
    assert "PRIVATE KEY" in ca


def test_no_secret_sits_in_the_hubs_values_file() -> None:
    # Secrets set explicitly in values reach the hub as env vars from a Secret; the mounted
    # values file (readable by anything that can read the hub's config volume) has none.
    marks = {
        "hub.cookieSecret": "c0" * 32,
        "hub.cryptKey": "c1" * 32,
        "proxy.secretToken": "c2" * 32,
        "auth.dummy.password": "dummy-pw-c3c3c3",
        "sshCA.privateKey": "ssh-ca-key-c4c4c4",
        "hub.services.site-svc.apiToken": "c6" * 32,
        "hub.extraFiles.site-cfg.stringData": "file-content-c7c7c7",
    }
    sets = [f"{k}={v}" for k, v in marks.items()] + ["hub.extraFiles.site-cfg.mountPath=/etc/site/cfg"]
    docs = render([CONFIG / "values-dev.yaml"], sets)
    text = base64.b64decode(find(docs, "Secret", "t-hpchub-hub-config")["data"]["values.yaml"]).decode()
    leaked = [k for k, v in marks.items() if v in text]
    assert leaked == []
    # The service itself is in the file (its other keys are the hub's config), its token not.
    assert yaml.safe_load(text)["hub"]["services"] == {"site-svc": {}}
    oauth = render(
        [CONFIG / "values-nersc-example.yaml"],
        ["auth.oauth.existingSecret=", "auth.oauth.clientSecret=oauth-secret-c5c5c5"],
    )
    text = base64.b64decode(find(oauth, "Secret", "t-hpchub-hub-config")["data"]["values.yaml"]).decode()
    assert "oauth-secret-c5c5c5" not in text
    # They are in the chart's Secret, from which the hub's environment takes them.
    data = find(docs, "Secret", "t-hpchub-hub-secret")["data"]
    assert base64.b64decode(data["auth.dummy-password"]).decode() == marks["auth.dummy.password"]
    assert base64.b64decode(data["hub.cookie-secret"]).decode() == marks["hub.cookieSecret"]
    token = base64.b64decode(data["hub.services.site-svc.apiToken"]).decode()
    assert token == marks["hub.services.site-svc.apiToken"]
    # A file's content is in its own Secret, mounted where hub.extraFiles says.
    files = find(docs, "Secret", "t-hpchub-hub-files")["data"]
    assert base64.b64decode(files["site-cfg"]).decode() == marks["hub.extraFiles.site-cfg.stringData"]
    env = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in find(docs, "Deployment", "t-hpchub-hub")["spec"]["template"]["spec"]["containers"][0]["env"]
        if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
    }
    assert env["HPCHUB_DUMMY_PASSWORD"] == {"name": "t-hpchub-hub-secret", "key": "auth.dummy-password"}
