"""Generated secrets survive upgrades: the chart's own `hpchub.secretValue` helper, rendered
by real helm in a test chart that feeds it what `lookup` would return from a cluster."""

from __future__ import annotations

import base64
import shutil
import string
from pathlib import Path

import pytest
import yaml

from .helm import CHART, CONFIG, find, helm, render

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


def test_chart_secret_uses_the_helper_for_every_generated_value() -> None:
    docs = render([CONFIG / "values-dev.yaml"])
    data = find(docs, "Secret", "t-hpchub-hub-secret")["data"]
    for key in ("hub.cookie-secret", "hub.crypt-key", "proxy.token"):
        assert len(base64.b64decode(data[key])) == 64, key
    ca = base64.b64decode(find(docs, "Secret", "t-hpchub-ssh-ca")["data"]["ca"]).decode()
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
    }
    sets = [f"{k}={v}" for k, v in marks.items()]
    docs = render([CONFIG / "values-dev.yaml"], sets)
    text = base64.b64decode(find(docs, "Secret", "t-hpchub-hub-config")["data"]["values.yaml"]).decode()
    leaked = [k for k, v in marks.items() if v in text]
    assert leaked == []
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
    env = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in find(docs, "Deployment", "t-hpchub-hub")["spec"]["template"]["spec"]["containers"][0]["env"]
        if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
    }
    assert env["HPCHUB_DUMMY_PASSWORD"] == {"name": "t-hpchub-hub-secret", "key": "auth.dummy-password"}
