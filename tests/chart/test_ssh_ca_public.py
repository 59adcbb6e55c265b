"""The SSH CA's public key is published in a ConfigMap the hub alone may patch, and NOTES
and the operator guide print the kubectl command that outputs it (the command's output is
fed to a real sshd in tests/integration/test_ssh_ca_public_key.py and, on kind, in
tests/e2e/test_62_ssh_ca_public_key.py)."""

from __future__ import annotations

import re
import shlex

from hpchub.sshca_publish import KEY

from .helm import CHART, CONFIG, ROOT, find, helm, render

DEV = CONFIG / "values-dev.yaml"


def notes_command(release: str = "t", namespace: str = "hpc", values=DEV) -> list[str]:
    out = helm("install", release, str(CHART), "--dry-run=client", "-n", namespace, "-f", str(values)).stdout
    notes = out.split("NOTES:", 1)[1]
    (line,) = [ln.strip() for ln in notes.splitlines() if KEY in ln]
    return shlex.split(line)


def test_public_key_configmap_and_the_one_permission_to_patch_it() -> None:
    docs = render([DEV])
    cm = find(docs, "ConfigMap", "t-hpchub-ssh-ca-public")
    assert "data" not in cm  # the hub writes it; upgrades keep what it wrote
    rules = find(docs, "Role", "t-hpchub-hub")["rules"]
    cm_rules = [r for r in rules if "configmaps" in r["resources"]]
    assert cm_rules == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["t-hpchub-ssh-ca-public"],
            "verbs": ["get", "patch"],
        }
    ]


def test_init_container_publishes_from_the_mounted_key_without_privileges() -> None:
    pod = find(render([DEV]), "Deployment", "t-hpchub-hub")["spec"]["template"]["spec"]
    (init,) = [c for c in pod["initContainers"] if c["name"] == "publish-ssh-ca"]
    assert init["args"] == ["python", "-m", "hpchub.sshca_publish"]
    env = {e["name"]: e.get("value") for e in init["env"]}
    assert env["HPCHUB_SSH_CA_CONFIGMAP"] == "t-hpchub-ssh-ca-public"
    assert {m["name"]: m["mountPath"] for m in init["volumeMounts"]} == {
        "ssh-ca": "/usr/local/etc/hpchub-ssh-ca"
    }
    sc = init["securityContext"]
    assert sc["capabilities"]["drop"] == ["ALL"] and sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True


def test_nothing_is_published_without_the_ca() -> None:
    docs = render([CONFIG / "values-minimal.yaml"])
    assert not [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("ssh-ca-public")
    ]
    rules = find(docs, "Role", "t-hpchub-hub")["rules"]
    assert not [r for r in rules if "configmaps" in r["resources"]]
    pod = find(docs, "Deployment", "t-hpchub-hub")["spec"]["template"]["spec"]
    assert not pod.get("initContainers")


def test_notes_prints_a_kubectl_command_reading_exactly_that_key() -> None:
    argv = notes_command("site", "jupyter")
    assert argv == [
        "kubectl",
        "--namespace",
        "jupyter",
        "get",
        "configmap",
        "site-hpchub-ssh-ca-public",
        "-o",
        "jsonpath={.data.trusted-user-ca-keys}",
    ]
    # Never the private key again.
    out = helm("install", "site", str(CHART), "--dry-run=client", "-n", "jupyter", "-f", str(DEV)).stdout
    assert "ssh-keygen -y" not in out.split("NOTES:", 1)[1]
    assert "get secret" not in out.split("NOTES:", 1)[1]


def test_operator_guide_gives_the_same_command_as_notes() -> None:
    guide = (ROOT / "docs/operator-guide.md").read_text()
    (line,) = [ln for ln in guide.splitlines() if ln.startswith("kubectl") and KEY in ln]
    guide_argv = shlex.split(re.sub(r"\s*>.*$", "", line))
    assert guide_argv == notes_command("hpchub", "jupyter")
