"""What `helm install` printed (NOTES.txt) works on the real cluster: the console URL
answers, the printed kubectl command shows the port in it, and the connect-back URL answers
from the login node. (The SSH CA line: test_62_ssh_ca_public_key.py.)"""

from __future__ import annotations

import os
import re
import subprocess

import requests

from .conftest import CLUSTER, HELM, RELEASE, STATE, docker_exec, helm


def notes() -> str:
    r = helm("get", "notes", RELEASE)
    assert r.returncode == 0, r.stderr
    return r.stdout


def run_printed(command: str) -> str:
    """A printed command, run as the operator would: through a shell, with kubectl and
    helm on PATH and the cluster's kubeconfig."""
    env = {**os.environ, "PATH": f"{os.path.dirname(HELM)}{os.pathsep}{os.environ['PATH']}"}
    env.setdefault("KUBECONFIG", str(STATE / "kubeconfig"))
    r = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"{command}: {r.stderr}"
    return r.stdout


def test_printed_console_url_answers_on_a_node_address() -> None:
    text = notes()
    (url,) = re.findall(r"^\s+(http://<any node address>:\d+/\S*)$", text, re.M)
    (command,) = re.findall(r"^\s+\((kubectl .* get service \S+) shows the port\)$", text, re.M)
    port = url.split(":")[2].split("/")[0]
    assert f":{port}/TCP" in run_printed(command)
    node = subprocess.run(
        [
            "docker",
            "inspect",
            "-f",
            '{{(index .NetworkSettings.Networks "kind").IPAddress}}',
            f"{CLUSTER}-control-plane",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.strip()
    assert node, f"no address of the kind node {CLUSTER}-control-plane"
    r = requests.get(url.replace("<any node address>", node) + "hub/login", timeout=30)
    assert r.status_code == 200 and 'name="password"' in r.text


def test_printed_connect_back_url_answers_from_the_login_node() -> None:
    (url,) = re.findall(r"^\s+(http://\S+/hub/api)$", notes(), re.M)
    probe = f"import json, urllib.request; print(json.load(urllib.request.urlopen({url!r}, timeout=20))['version'])"
    r = docker_exec("hpc-login", "python3", "-c", probe)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith("6.")
