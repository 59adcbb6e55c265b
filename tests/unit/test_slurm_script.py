"""Slurm spawner pure logic: squeue parsing (gone vs transient) and the job script."""

from __future__ import annotations

import pytest

from hpchub.spawners.remote import source_line
from hpchub.spawners.slurm import TransientSchedulerError, parse_squeue, render_job_script, status_script


def test_running_job_with_address() -> None:
    st = parse_squeue(
        "12", "RUNNING|None|2026-11-25T10:00:00|mini01\nHPCHUB-RC 0\nHPCHUB-ADDR node7 41234 12\n"
    )
    assert (st.state, st.reason, st.nodes, st.address, st.active) == (
        "RUNNING",
        "",
        "mini01",
        ("node7", 41234),
        True,
    )


def test_address_file_of_another_job_is_ignored() -> None:
    st = parse_squeue("12", "RUNNING|None|N/A|mini01\nHPCHUB-RC 0\nHPCHUB-ADDR node7 41234 11\n")
    assert st.address is None


def test_pending_job_has_reason_and_expected_start() -> None:
    st = parse_squeue("12", "PENDING|Priority|2026-11-25T12:30:00|\nHPCHUB-RC 0\n")
    assert (st.state, st.reason, st.expected_start, st.active) == (
        "PENDING",
        "Priority",
        "2026-11-25T12:30:00",
        True,
    )


def test_invalid_job_id_means_gone() -> None:
    st = parse_squeue("12", "slurm_load_jobs error: Invalid job id specified\nHPCHUB-RC 1\n")
    assert st.state == "GONE" and st.gone


def test_empty_answer_means_gone() -> None:
    assert parse_squeue("12", "HPCHUB-RC 0\n").gone


@pytest.mark.parametrize(
    "out",
    [
        "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\nHPCHUB-RC 1\n",
        "squeue: error: Socket timed out on send/recv operation\nHPCHUB-RC 1\n",
        "",  # the status script did not even report squeue's exit status
    ],
)
def test_scheduler_errors_are_transient_not_gone(out: str) -> None:
    # batchspawner #315: these must never read as "job gone".
    with pytest.raises(TransientSchedulerError):
        parse_squeue("12", out)


def test_cancelled_and_completing_states() -> None:
    assert parse_squeue("1", "CANCELLED|None|N/A|mini01\nHPCHUB-RC 0\n").gone
    completing = parse_squeue("1", "COMPLETING|None|N/A|mini01\nHPCHUB-RC 0\n")
    assert not completing.active and not completing.gone


def test_status_script_quotes_the_job_id() -> None:
    script = status_script("1;id", "abc")
    assert "-j '1;id'" in script and ".hpchub/jobs/abc/address" in script


def test_job_script_renders_directives_and_quoted_command() -> None:
    script = render_job_script(
        None,
        {
            "job_name": "hpchub-pm-gpu",
            "output": ".hpchub/jobs/hpchub-%j.out",
            "directives": ["--partition=gpu", "--time=01:00:00"],
            "modules": "module load python",
            "startup_script": source_line("~/my start.sh"),
            "server_cmd": "jupyterhub-singleuser",
            "bind_ip": "0.0.0.0",
            "report_host": '"$(hostname)"',
            "run_dir": '"$HOME"/.hpchub/jobs/"$SLURM_JOB_ID"',
        },
    )
    assert "#SBATCH --partition=gpu\n#SBATCH --time=01:00:00\n" in script
    assert "#SBATCH --job-name=hpchub-pm-gpu" in script
    assert """. "$HOME"/'my start.sh' || {""" in script
    assert "--ServerApp.port=0 --ServerApp.ip=0.0.0.0" in script


def test_site_template_from_values() -> None:
    out = render_job_script(
        "#SBATCH {{ directives | join(' ') }}\n{{ bind_ip | shquote }}",
        {
            "directives": ["--nodes=1"],
            "bind_ip": "a b",
        },
    )
    assert out == "#SBATCH --nodes=1\n'a b'"


def test_module_lines_quote_and_fail_loudly() -> None:
    from types import SimpleNamespace

    from traitlets.config import Config

    from hpchub.options import CleanOptions
    from hpchub.spawners.dispatch import DispatchSpawner

    from .test_options import VALUES

    c = Config()
    c.DispatchSpawner.systems = VALUES["systems"]
    c.DispatchSpawner.service_levels = VALUES["serviceLevels"]
    s = DispatchSpawner(config=c, orm_spawner=SimpleNamespace(name="pm-exclusive", state=None, server=None))
    s.clean_options = CleanOptions(version="2026.05")
    assert s.module_lines() == (
        'module load py/3.11 || { echo "hpchub: module load failed:" py/3.11 >&2; exit 1; }'
    )
