"""Activity besides busy kernels (hpchub_notebook.activity): the GPUs' utilization as
nvidia-smi reports it, for the GPUs this server may use, against a threshold. No GPU is on
this machine: nvidia-smi here is a stand-in script printing what the real one prints. The
CPU threshold against real processes: here (short-lived ones) and in test_lab_standin_hub.py."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from hpchub_notebook.activity import (
    MAX_GPUS,
    CpuBusy,
    GpuBusy,
    _bounded_output,
    cpu_used,
    gpu_ids,
    gpu_utilization,
    threshold,
)
from hypothesis import given, settings
from hypothesis import strategies as st


def test_utilization_lines_are_read_and_gpus_reporting_none_left_out():
    assert gpu_utilization("87\n 3\n[N/A]\n[Not Supported]\n100\n") == [87, 3, 100]
    assert gpu_utilization("101\n-1\n1e2\n٣\n\n") == []  # no percentage, a non-ASCII digit


def test_the_gpus_are_cuda_visible_devices_else_all_and_nothing_odd():
    assert gpu_ids({}) is None  # unset: every GPU nvidia-smi lists
    assert gpu_ids({"CUDA_VISIBLE_DEVICES": "0,2"}) == ["0", "2"]
    uuid = "GPU-5b9a2d4c-1f0e-4b8a-9c3d-2e1f0a9b8c7d"
    assert gpu_ids({"CUDA_VISIBLE_DEVICES": f"{uuid}, MIG-0a1b"}) == [uuid, "MIG-0a1b"]
    # none given (Slurm's NoDevFiles, empty), or anything that is no id: no GPU is ours
    for value in ("", "NoDevFiles", "0;rm -rf ~", "-1", "0,,1", ",".join(["0"] * (MAX_GPUS + 1))):
        assert gpu_ids({"CUDA_VISIBLE_DEVICES": value}) == [], value


def test_the_hubs_threshold_wins_where_it_sets_one():
    assert threshold(None, 30.0) == 30.0 and threshold(50.0, 30.0) == 50.0 and threshold(0.0, 30.0) == 0.0


def fake_nvidia_smi(tmp_path: Path, output: str, code: int = 0) -> list[str]:
    script = tmp_path / "nvidia-smi"
    script.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\nprintf "{output}"\nexit {code}\n')
    script.chmod(0o755)
    return [str(script), "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]


def test_busy_is_the_average_of_the_servers_gpus_against_the_threshold(tmp_path):
    argv = fake_nvidia_smi(tmp_path, "90\\n10\\n")
    gpus = GpuBusy({"CUDA_VISIBLE_DEVICES": "1,3"}, argv)
    assert gpus.busy(50) and not gpus.busy(51) and not gpus.busy(0)
    assert (tmp_path / "args").read_text().split()[-2:] == ["-i", "1,3"]
    assert not GpuBusy({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}, argv).busy(1)


def test_an_nvidia_smi_that_fails_or_is_missing_is_no_activity_and_says_why(tmp_path):
    failing = GpuBusy({}, fake_nvidia_smi(tmp_path, "NVIDIA-SMI has failed", code=9))
    assert not failing.busy(1) and failing.error.endswith("exited 9")
    missing = GpuBusy({}, [str(tmp_path / "no-such-nvidia-smi")])
    assert not missing.busy(1) and "FileNotFoundError" in missing.error


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=5000) | st.binary(max_size=5000).map(lambda b: b.decode("latin-1")))
def test_any_output_gives_bounded_percentages_quickly(text):
    t = time.perf_counter()
    used = gpu_utilization(text * 50)  # up to 250 kB
    assert time.perf_counter() - t < 1.0
    assert len(used) <= MAX_GPUS and all(0 <= u <= 100 for u in used)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=2000))
def test_any_cuda_visible_devices_gives_none_or_bounded_ids(value):
    ids = gpu_ids({"CUDA_VISIBLE_DEVICES": value * 20})
    assert ids == [] or (ids and len(ids) <= MAX_GPUS and all(len(i) <= 100 and "," not in i for i in ids))


@pytest.mark.parametrize("percent", [-1.0, 0.0])
def test_off_never_runs_nvidia_smi(tmp_path, percent):
    argv = fake_nvidia_smi(tmp_path, "100\\n")
    assert not GpuBusy({}, argv).busy(percent) and not (tmp_path / "args").exists()


def test_cpu_seconds_between_samples_count_new_processes_whole_and_never_go_back():
    before = {("server", 1): 5.0, (10, 100.0): 2.0, (11, 100.0): 9.0}
    now = {("server", 1): 6.5, (10, 100.0): 2.5, (12, 200.0): 0.75, (13, 50.0): 40.0}
    # 11 ended (its time is in the server's reaped-children time); 12 is new; 13 was there
    # before the first sample without being seen (reparented in): only from now on
    assert cpu_used(before, now, new={(12, 200.0)}) == 1.5 + 0.5 + 0.75
    assert cpu_used({(10, 1.0): 3.0}, {(10, 1.0): 2.0}, set()) == 0.0


def test_short_lived_processes_are_busy_and_a_quiet_server_is_not():
    """Real processes: this test's own children are the "server's" (psutil.Process())."""
    cpu = CpuBusy()
    assert cpu.psutil is not None  # ipykernel brings it; the harness venv has it
    assert not cpu.busy(10)  # the first sample: no verdict
    for _ in range(3):  # three short compilers, each done before the next sample
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass",
            ],
            check=True,
        )
    assert cpu.busy(10)  # 0.9 s of CPU: busy unless the machine stretched it past 9 s
    time.sleep(1.0)
    assert not cpu.busy(10)
    assert not cpu.busy(0)  # off


def test_a_command_is_bounded_in_time_and_size_and_its_failures_named(tmp_path):
    slow = tmp_path / "slow"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    chatty = tmp_path / "chatty"
    chatty.write_text("#!/bin/sh\nexec yes 100\n")
    failing = tmp_path / "failing"
    failing.write_text("#!/bin/sh\necho 50\nexit 3\n")
    for f in (slow, chatty, failing):
        f.chmod(0o755)
    t = time.monotonic()
    assert _bounded_output([str(slow)], 0.5, 1000) == ("", f"{slow} did not answer in 0.5 s")
    assert time.monotonic() - t < 5
    assert _bounded_output([str(chatty)], 5, 1000) == ("", f"{chatty} wrote more than 1000 bytes")
    assert _bounded_output([str(failing)], 5, 1000) == ("", f"{failing} exited 3")
    assert _bounded_output(["/bin/echo", "42"], 5, 1000) == ("42\n", "")
