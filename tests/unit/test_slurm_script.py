"""Slurm spawner pure logic: the address file and the job script (squeue parsing: test_status_board)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from hpchub.remoteops import catches_usr1, source_line, startup_failure
from hpchub.schedulers import JobStatus
from hpchub.schedulers.slurm import SlurmScheduler
from hpchub.spawners.batch import (
    FORWARD_USR1,
    address_wait_script,
    job_script,
    parse_address,
    render_job_script,
)


def test_address_of_this_job_is_taken_and_another_jobs_ignored() -> None:
    assert parse_address("12", "motd\nHPCHUB-ADDR node7 41234 12\n") == ("node7", 41234)
    assert parse_address("12", "HPCHUB-ADDR node7 41234 11\n") is None
    assert parse_address("12", "") is None
    # A job's garbage in its address file is no address, not an exception in the hub.
    assert parse_address("12", "HPCHUB-ADDR node7 x41234 12\n") is None


def test_address_wait_quotes_the_run_id_and_waits_on_the_login_node() -> None:
    script = address_wait_script("ab;id", 5)
    assert "a=.hpchub/jobs/'ab;id'/address" in script and "sleep 0.05" in script
    # It waits `seconds` in all: that many tries of 0.05 s (one try at least).
    assert "[ $i -lt 100 ]" in script
    assert "[ $i -lt 1 ]" in address_wait_script("r", 0.01)


def test_address_wait_run_by_a_real_shell_reports_the_jobs_address(tmp_path: Path) -> None:
    """The script as the login node's shell runs it (from the user's home): the address the
    job wrote comes back in the form parse_address takes; no file yet, nothing (mutation
    testing found the script's text untested: a broken echo passed every unit test)."""
    run = tmp_path / ".hpchub/jobs/run 1"
    run.mkdir(parents=True)

    def wait() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", address_wait_script("run 1", 0.4)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
        )

    empty = wait()
    assert (empty.returncode, empty.stdout, parse_address("7", empty.stdout)) == (0, "", None)
    (run / "address").write_text("node7 41234 7\n")
    found = wait()
    assert found.returncode == 0
    assert parse_address("7", found.stdout) == ("node7", 41234)


def test_address_wait_stops_at_the_jobs_end_only_when_asked_and_after_an_address(tmp_path: Path) -> None:
    """``watch_end``: the job script's exit trap wrote ``ended`` (its job is over): the wait
    ends at once instead of running its full time; an address already there still wins."""
    run = tmp_path / ".hpchub/jobs/r1"
    run.mkdir(parents=True)
    (run / "ended").touch()

    def wait(watch_end: bool, seconds: float = 3) -> tuple[str, float]:
        t = time.monotonic()
        r = subprocess.run(
            ["sh", "-c", address_wait_script("r1", seconds, watch_end)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode == 0, r.stderr
        return r.stdout, time.monotonic() - t

    out, took = wait(True)
    assert out == "HPCHUB-ENDED\n" and took < 2
    out, took = wait(False, seconds=0.3)
    assert out == "" and took >= 0.25
    (run / "address").write_text("node7 41234 7\n")
    out, _ = wait(True)
    assert parse_address("7", out) == ("node7", 41234) and "ENDED" not in out


def test_cancelled_and_completing_states() -> None:
    slurm = SlurmScheduler()
    assert JobStatus("1", "CANCELLED", kind=slurm.kind("CANCELLED")).gone
    completing = JobStatus("1", "COMPLETING", kind=slurm.kind("COMPLETING"))
    assert not completing.active and not completing.gone
    assert not JobStatus("1", "UNKNOWN", kind=slurm.kind("UNKNOWN")).gone  # not believed: never gone


def test_job_script_renders_directives_and_quoted_command() -> None:
    script = render_job_script(
        SlurmScheduler(),
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
            "environment": '. "$d/env" || exit 1',
            "forward_usr1": FORWARD_USR1,
        },
    )
    assert "#SBATCH --partition=gpu\n#SBATCH --time=01:00:00\n" in script
    assert "#SBATCH --job-name=hpchub-pm-gpu" in script
    assert """. "$HOME"/'my start.sh' </dev/null\n""" in script
    assert "--ServerApp.port=0 --ServerApp.ip=0.0.0.0" in script


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("echo loading\necho 'module x not found' >&2\nexit 7\n", 7),  # `exit` ends the job's shell
        ("echo loading\necho 'module x not found' >&2\nsh -c 'exit 4'\n", 4),  # a failing last command
        ("echo loading\nexport FROM_SCRIPT=yes\n", None),
    ],
)
def test_startup_script_failure_is_reported_with_its_exit_code_and_the_jobs_exit_trap_runs(
    tmp_path: Path, body: str, code: int | None
) -> None:
    """source_line as the job's bash runs it, after the default template's EXIT trap: the
    exit code reaches the output (startup_failure reads it back), the template's trap still
    runs, and on success what the script exports reaches the rest of the job."""
    (tmp_path / "start.sh").write_text(body)
    job = "\n".join(
        [
            "d=$HOME/run",
            "trap 'touch \"$d/ended\"' EXIT",
            source_line("~/start.sh"),
            'echo "server starts with FROM_SCRIPT=$FROM_SCRIPT"',
        ]
    )
    (tmp_path / "run").mkdir()
    r = subprocess.run(
        ["bash", "-c", job],
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    output = r.stdout + r.stderr
    assert (tmp_path / "run/ended").exists(), output  # the template's trap ran either way
    if code is None:
        assert r.returncode == 0 and "server starts with FROM_SCRIPT=yes" in output, output
        assert startup_failure(output) is None
        return
    assert r.returncode == code and "server starts" not in output, output
    # The job writes stdout and stderr to one file: the report comes last.
    assert startup_failure(r.stdout + r.stderr) == (code, "loading\nmodule x not found"), output
    assert startup_failure("hpchub: the start-up script failed with exit code x\n") is None


def test_site_template_from_values() -> None:
    out = render_job_script(
        SlurmScheduler(),
        "#SBATCH {{ directives | join(' ') }}\n{{ bind_ip | shquote }}",
        {
            "directives": ["--nodes=1"],
            "bind_ip": "a b",
        },
    )
    assert out == "#SBATCH --nodes=1\n'a b'"


def test_module_lines_quote_and_fail_loudly() -> None:
    from hpchub.options import CleanOptions
    from tests.harness.values import dispatcher

    from .test_options import VALUES

    s = dispatcher(VALUES, "pm-exclusive")
    s.clean_options = CleanOptions(version="2026.05")
    assert s.module_lines() == (
        'module load py/3.11 || { echo "hpchub: module load failed:" py/3.11 >&2; exit 1; }'
    )


def slurm_spawner(job_template: str | None = None):  # noqa: ANN201
    from hpchub.options import CleanOptions
    from tests.harness.values import dispatcher

    from .test_options import VALUES

    systems = dict(VALUES["systems"])
    if job_template is not None:
        pm = dict(systems["pm"])
        pm["slurm"] = dict(pm["slurm"], jobTemplate=job_template)
        systems["pm"] = pm
    s = dispatcher({**VALUES, "systems": systems}, "pm-exclusive")
    s.clean_options = CleanOptions(partition="regular", nodes=1, time="00:30:00")
    s.run_id = "0123456789abcdef"
    return s


def test_the_token_reaches_the_job_through_a_private_file_not_its_environment() -> None:
    s = slurm_spawner()
    script = s.submit_script({"JUPYTERHUB_API_TOKEN": "tok-secret", "JUPYTERHUB_API_URL": "http://h/hub/api"})
    head, _, job = script.partition("sbatch ")
    # Written to a file in the 0700 run directory under umask 077, then read by the job;
    # all of it in one brace group (the shell runs nothing of a script cut short).
    assert head.startswith('umask 077\n{\nd="$HOME"/.hpchub/jobs/0123456789abcdef\n')
    assert script.endswith("\n}\n")
    assert "export JUPYTERHUB_API_TOKEN=tok-secret" in head and 'cat > "$d/env"' in head
    assert "tok-secret" not in job
    assert '. "$d/env" || {' in job
    # Nothing in the submitting shell's environment: export lines only inside the here-doc.
    env_block = head.split("<<'", 1)[1]
    assert not [line for line in head.split("<<'", 1)[0].splitlines() if line.startswith("export ")]
    assert "export JUPYTERHUB_API_TOKEN" in env_block


def test_a_site_template_without_the_environment_line_is_refused() -> None:
    import pytest

    s = slurm_spawner("#!/bin/bash\n{% for d in directives %}#SBATCH {{ d }}\n{% endfor %}{{ server_cmd }}\n")
    with pytest.raises(RuntimeError, match=r"does not use \{\{ environment \}\}"):
        s.submit_script({"JUPYTERHUB_API_TOKEN": "tok-secret"})


def job_context(**kw: object) -> dict[str, object]:
    context: dict[str, object] = {
        "job_name": "hpchub-0123456789abcdef",
        "output": ".hpchub/jobs/x.out",
        "directives": ["--time=00:04:00"],
        "modules": "",
        "startup_script": "",
        "server_cmd": "jupyterhub-singleuser",
        "bind_ip": "127.0.0.1",
        "report_host": "node1",
        "run_dir": '"$HOME"/run',
        "environment": ": environment",
        "forward_usr1": FORWARD_USR1,
    }
    context.update(kw)
    return context


def test_the_save_signal_is_asked_for_only_by_a_script_that_passes_it_on() -> None:
    """The default template forwards USR1, so its job asks Slurm for it saveBeforeSeconds
    before the limit; a site template without the line would be ended by the signal, so
    its job does not ask for it."""
    slurm = SlurmScheduler()
    job = job_script(slurm, None, job_context(), 120)
    assert "#SBATCH --time=00:04:00\n#SBATCH --signal=B:USR1@120\n" in job
    assert FORWARD_USR1 in job
    site = "#!/bin/bash\n{% for d in directives %}#SBATCH {{ d }}\n{% endfor %}{{ environment }}\nexec {{ server_cmd }}\n"
    assert "--signal" not in job_script(slurm, site, job_context(), 120)


FAKE_SERVER = r"""import json, os, signal, sys, time
got = []
signal.signal(signal.SIGUSR1, lambda *a: got.append(time.time()))
d = os.environ["JUPYTER_RUNTIME_DIR"]
with open(os.path.join(d, "jpserver-%d.json" % os.getpid()), "w") as f:
    json.dump({"port": 4242}, f)
while not got:
    time.sleep(0.05)
with open(os.path.join(os.environ["HOME"], "signals"), "a") as f:
    f.write("USR1 %d\n" % os.getpid())
time.sleep(1)
sys.exit(3)
"""


def job_signalled(tmp_path: Path, server: str) -> tuple[int, str]:
    """The default job script run by a real bash with ``server`` as its notebook server,
    SIGUSR1 sent to the batch shell once the address is written, as Slurm's
    --signal=B:USR1 does: the script's exit status and output."""
    (tmp_path / "server.py").write_text(server)
    script = job_script(SlurmScheduler(), None, job_context(server_cmd=f"python3 {tmp_path}/server.py"), 120)
    proc = subprocess.Popen(
        ["bash", "-c", script],
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "SLURM_JOB_ID": "7"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    address = tmp_path / "run" / "address"
    for _ in range(200):
        if address.exists():
            break
        subprocess.run(["sleep", "0.05"])
    assert address.read_text() == "node1 4242 7\n"
    proc.send_signal(__import__("signal").SIGUSR1)
    out, _ = proc.communicate(timeout=30)
    return proc.returncode, out


def test_the_job_script_passes_usr1_to_the_server_and_waits_for_it(tmp_path: Path) -> None:
    """The server (a stand-in that records the signal) gets it, the script keeps waiting
    for the server (wait returns early on a trapped signal), and exits with the server's
    own status, not 138 (killed by USR1) nor 128+10."""
    code, out = job_signalled(tmp_path, FAKE_SERVER)
    assert (tmp_path / "signals").read_text().startswith("USR1 "), out
    assert code == 3, out
    assert "hpchub: server exited with status 3" in out


STARTING_SERVER = r"""import json, os, sys, time
d = os.environ["JUPYTER_RUNTIME_DIR"]
with open(os.path.join(d, "jpserver-%d.json" % os.getpid()), "w") as f:
    json.dump({"port": 4242}, f)
time.sleep(1.5)
sys.exit(3)
"""


def test_usr1_is_not_passed_to_a_server_that_does_not_catch_it_yet(tmp_path: Path) -> None:
    """A server still starting (no SIGUSR1 handler yet, as jupyter_server in its first
    seconds) when Slurm's USR1 comes, in a short job: the script does not pass it on, so the
    server is not ended by it (without the check: 138, killed by USR1)."""
    code, out = job_signalled(tmp_path, STARTING_SERVER)
    assert code == 3, out


@pytest.mark.parametrize(("handler", "caught"), [(False, "no"), (True, "yes")])
def test_catches_usr1_reads_the_processes_signal_mask_in_posix_sh(handler: bool, caught: str) -> None:
    """The login node's watchdog runs the test in /bin/sh (dash on Debian)."""
    code = "import signal, time\n"
    code += "signal.signal(signal.SIGUSR1, lambda *a: None)\n" if handler else ""
    code += "print('ready', flush=True)\ntime.sleep(30)\n"
    server = subprocess.Popen(["python3", "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout and server.stdout.readline() == "ready\n"
        r = subprocess.run(
            ["/bin/sh", "-c", f"p={server.pid}; if {catches_usr1('p')}; then echo yes; else echo no; fi"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert r.stdout.strip() == caught, r.stderr
    finally:
        server.kill()
        server.wait()
