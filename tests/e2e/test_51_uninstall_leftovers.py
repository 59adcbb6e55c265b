"""`helm uninstall` never orphans silently: when the hub does not answer, or a stop is held
by the reaper because slurmctld is down, the pre-delete hook fails, Helm keeps the release,
and the hook's Job and log stay, naming what is left and how to finish (the command NOTES
printed shows it). Both ways out the report gives work: with the hub gone for good, its
commands (--no-hooks, delete the Job) and ending by hand what it names; once slurmctld is
back, helm uninstall again, which finishes with nothing left."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from kubernetes import client

from .conftest import (
    HUB_URL,
    NAMESPACE,
    PASSWORD,
    RELEASE,
    SLURM_SERVER,
    SSH_SERVER,
    USER,
    Hub,
    docker_exec,
    helm,
    helm_install,
    login,
    login_node_servers,
    pods,
    slurm_jobs,
    wait_for,
)
from .test_11_notes import notes, run_printed

HOOK_JOB = f"{RELEASE}-stop-servers"
HUB_DEPLOYMENT = f"{RELEASE}-hub"
# The hook's whole budget here (default 240 s): the failing paths wait this long.
HOOK_TIMEOUT = 60


def docker(*args: str) -> None:
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"docker {' '.join(args)}: {r.stderr}"


def release_status() -> str:
    """Helm's status of the release; "" once it is gone."""
    r = helm("status", RELEASE, "-o", "json")
    if r.returncode != 0:
        return ""
    return str(json.loads(r.stdout)["info"]["status"])


def squeue_answers() -> bool:
    return docker_exec("hpc-login", "squeue", "-h").returncode == 0


def hook_job(batch: client.BatchV1Api) -> client.V1Job | None:
    try:
        return batch.read_namespaced_job(HOOK_JOB, NAMESPACE)
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


def scale_hub(replicas: int) -> None:
    client.AppsV1Api().patch_namespaced_deployment_scale(
        HUB_DEPLOYMENT, NAMESPACE, {"spec": {"replicas": replicas}}
    )


@dataclass
class Release:
    hub: Hub
    notes: str  # what helm install printed

    def log_command(self) -> str:
        """The command NOTES printed for the hook's log."""
        (line,) = [s.strip() for s in self.notes.splitlines() if f"logs job/{HOOK_JOB}" in s]
        return line


@pytest.fixture(scope="module")
def release(kube: client.CoreV1Api) -> Iterator[Release]:
    """The release with a 60 s hook; afterwards the release as make up installs it, and
    slurmctld running, whatever happened."""
    helm_install("--set", f"hub.uninstall.timeoutSeconds={HOOK_TIMEOUT}")
    try:
        # The upgrade restarted the hub: the proxy answers 503 until it is back.
        wait_for("the hub through the proxy", lambda: requests.get(f"{HUB_URL}/hub/login", timeout=10).ok)
        yield Release(login(USER, PASSWORD), notes())
    finally:
        docker("start", "hpc-ctl")
        if release_status() not in ("", "deployed"):
            scale_hub(1)
            helm("uninstall", RELEASE, "--no-hooks", "--wait", "--timeout", "5m")
        wait_for("squeue answering", squeue_answers)
        for job_id, _state, _nodes in slurm_jobs():
            docker_exec("hpc-login", "scancel", job_id)
        docker_exec("hpc-login", "pkill", "-u", USER, "-f", "jupyterhub-singleuser")
        for p in kube.list_namespaced_pod(
            NAMESPACE, label_selector="app.kubernetes.io/managed-by=kubespawner"
        ).items:
            kube.delete_namespaced_pod(p.metadata.name, NAMESPACE, grace_period_seconds=0)
        if hook_job(client.BatchV1Api()):
            client.BatchV1Api().delete_namespaced_job(HOOK_JOB, NAMESPACE, propagation_policy="Background")
        helm_install()


def test_uninstall_with_the_hub_down_fails_keeps_everything_and_says_how_to_remove_it_anyway(
    kube: client.CoreV1Api, release: Release
) -> None:
    hub = release.hub
    hub.start(SSH_SERVER)
    before = login_node_servers()
    assert before, "the SSH server runs no process on hpc-login"
    scale_hub(0)
    wait_for("no hub pod", lambda: not pods(kube, "app.kubernetes.io/component=hub"), timeout=120)
    t0 = time.monotonic()
    r = helm("uninstall", RELEASE, "--timeout", "5m")
    took = time.monotonic() - t0
    # Helm reports the failed hook and stops: the release and everything in it stay.
    assert r.returncode != 0, r.stdout
    assert HOOK_JOB in r.stderr, r.stderr
    # It waited for the hub (60 s), then gave up within its budget.
    assert HOOK_TIMEOUT - 5 < took < HOOK_TIMEOUT + 120, f"helm uninstall took {took:.0f} s: {r.stderr}"
    assert release_status() == "uninstalling"
    assert client.AppsV1Api().read_namespaced_deployment(HUB_DEPLOYMENT, NAMESPACE)
    assert login_node_servers() == before, "the notebook on hpc-login went away"
    # The failed Job stays, and the command NOTES printed shows its report.
    job = hook_job(client.BatchV1Api())
    assert job is not None and (job.status.failed or 0) >= 1, job
    log = run_printed(release.log_command())
    assert "UNINSTALL STOPPED: the hub did not answer" in log, log
    assert "Nothing was stopped" in log, log

    # The way out the report gives when the hub cannot come back: its commands, as printed,
    # then the notebook its run directory names, ended by hand.
    printed = [
        line.strip()
        for line in log.splitlines()
        if line.strip().startswith(("helm uninstall", "kubectl"))
        and ("--no-hooks" in line or " delete " in line)
    ]
    assert [c.split()[0:4] for c in printed] == [
        ["helm", "uninstall", RELEASE, "--namespace"],
        ["kubectl", "--namespace", NAMESPACE, "delete"],
        ["kubectl", "--namespace", NAMESPACE, "delete"],
    ], printed
    for command in printed:
        run_printed(command)
    r = docker_exec("hpc-login", "sh", "-c", f"cat /home/{USER}/.hpchub/ssh/*/pid")
    named = set(r.stdout.split()) & set(before)  # run directories of earlier runs hold old pids
    assert named, f"no pid file names the notebook {before}: {r.stdout!r}"
    for pid in named:
        # The shell's kill, as an operator types it (procps' /bin/kill exits 1 for a group
        # it did signal).
        r = docker_exec("hpc-login", "sh", "-c", f"kill -TERM -{pid}")
        assert r.returncode == 0, r.stderr
    wait_for("the notebook on hpc-login gone", lambda: not login_node_servers(), timeout=60)
    assert release_status() == ""
    assert hook_job(client.BatchV1Api()) is None
    wait_for(
        "no pods left in the namespace", lambda: not kube.list_namespaced_pod(NAMESPACE).items, timeout=180
    )
    # Back for the next test (the hub's database was kept: it finds the notebook gone).
    helm_install("--set", f"hub.uninstall.timeoutSeconds={HOOK_TIMEOUT}")


def test_uninstall_with_a_stop_held_by_the_reaper_fails_naming_the_job_then_finishes(
    kube: client.CoreV1Api, release: Release
) -> None:
    hub = release.hub
    if release_status() != "deployed":  # the test before failed halfway
        helm_install("--set", f"hub.uninstall.timeoutSeconds={HOOK_TIMEOUT}")
    wait_for("hub API", lambda: hub.api("GET", "/").ok, timeout=300)
    hub.start(SLURM_SERVER)
    running = [j[0] for j in slurm_jobs() if j[1] == "RUNNING"]
    assert len(running) == 1, slurm_jobs()
    (job,) = running
    docker("stop", "hpc-ctl")
    try:
        r = hub.api("DELETE", f"/users/{USER}/servers/{SLURM_SERVER}")
        assert r.status_code in (202, 204), r.text
        # The spawner cannot confirm the cancel and hands the job to the reaper.
        wait_for(f"{SLURM_SERVER} gone from the hub", lambda: hub.server(SLURM_SERVER) is None, timeout=300)
        r = helm("uninstall", RELEASE, "--timeout", "5m")
        assert r.returncode != 0, r.stdout
        assert HOOK_JOB in r.stderr, r.stderr
        assert release_status() == "uninstalling"
        log = run_printed(release.log_command())
        assert f"Slurm job {job} of {USER} (server {SLURM_SERVER}, system mini)" in log, log
        assert f"by hand: scancel {job}   (on a login node of mini, as {USER} or root)" in log, log
        # What could be stopped was: the SSH server of the test before.
        assert not login_node_servers(), "the hook left the notebook on hpc-login"
    finally:
        docker("start", "hpc-ctl")
    wait_for("squeue answering", squeue_answers)
    assert [j for j in slurm_jobs() if j[0] == job], "the held job vanished while slurmctld was down"
    # slurmctld is back: the hook has the reaper retry now, confirms, and Helm goes on.
    r = helm("uninstall", RELEASE, "--wait", "--timeout", "5m")
    assert r.returncode == 0, r.stderr
    assert release_status() == ""
    assert hook_job(client.BatchV1Api()) is None, "a succeeded hook's Job is deleted"
    assert not [j for j in slurm_jobs() if j[1] in ("RUNNING", "PENDING")], slurm_jobs()
    assert not login_node_servers()
    wait_for(
        "no pods left in the namespace",
        lambda: not [p.metadata.name for p in kube.list_namespaced_pod(NAMESPACE).items],
        timeout=180,
    )
