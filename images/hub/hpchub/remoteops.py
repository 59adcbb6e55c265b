"""Running things on a supercomputer's login nodes as a user: what the spawners and the
reaper share, below both (the reaper stops runs whose spawner is gone).

- credentials: the user's key and certificate (auth_state, else signed by the hub CA once
  the trusted identity source says the uid may have one); the status account's;
- ``RemoteOps``: commands and stdin scripts as one user on one system, usable with expired
  credentials through a connection still open;
- the shell pieces every script is built from (quoting, the environment as ``export``
  lines, a script the shell runs only once it has read all of it) and the marks scripts
  answer with (``HPCHUB-KEY value``, parsed as claims);
- the tunnel relay's start and stop scripts; ``cancel_run``, one attempt to cancel a batch
  run through its scheduler's adapter; ``extend_job``, a job's time limit raised through
  the site's extend account (its forced command: config/login-node/hpchub-extend-command).

Why stdin: the API token must appear neither on a command line (``ps`` on a login node
shows every user's argv) nor in a file others can read. asyncssh's ``env`` would need
``AcceptEnv`` for arbitrary names on every site's sshd, which sites rarely allow. So the
remote command is a fixed ``sh -s`` and the environment travels inside the script on
stdin as ``export NAME='value'`` — shell builtins, which never reach an argv.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shlex
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import apirelay, claims
from .claims import ClaimRefused
from .identity import IdentityConfig, IdentityError, resolve
from .schedulers.base import Scheduler, TransientSchedulerError, parse_cancel
from .serverstate import JobShape
from .settings import ExtendSettings, StatusSettings
from .sshca import CertificateRefused, UserCredentials, certificate_authority, credentials_from_auth_state
from .sshpool import Result, SSHError, SSHTarget, pool

MARK = "HPCHUB-"
API_SOCKET = "api.sock"
# sun_path holds 108 bytes on Linux (104 elsewhere); stay under both.
MAX_SOCKET_PATH = 100

_ENV_NAME_OK = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


async def user_credentials(
    system: str,
    username: str,
    ssh_ca: Mapping[str, Any],
    auth_state: Mapping[str, Any] | None,
    identity: Mapping[str, Any] | None = None,
    systems: Mapping[str, Any] | None = None,
) -> UserCredentials:
    """The user's SSH key and certificate: from auth_state, else signed by the hub CA.

    Before the CA signs, the user's uid comes from the trusted identity source (values
    ``identity``), so no certificate is made for a uid below the floor. Raises
    CertificateRefused or IdentityError (messages for the user)."""
    creds = credentials_from_auth_state(dict(auth_state) if auth_state else None)
    if creds:
        return creds
    if ssh_ca.get("enabled"):
        ca = certificate_authority(ssh_ca)
        fresh = ca.cached(username)
        if fresh:
            return fresh
        ca.check_principal(username)  # a deny-listed name never costs a lookup
        config = IdentityConfig.from_values(identity)
        try:
            found = await resolve(config, username, auth_state, systems or {}, ssh_ca)
        except IdentityError as e:
            if e.status != 403:
                raise
            raise CertificateRefused(f"no SSH certificate is issued for {username}: {e.message}") from e
        return ca.credentials_for(username, found.uid if found else None)
    if auth_state and auth_state.get("ssh_private_key"):
        raise SSHError(f"{system}: the SSH certificate from your sign-in has expired; sign in again")
    raise SSHError(
        f"{system}: no SSH credentials for {username} "
        "(the login did not provide a key and the hub's SSH CA is disabled)"
    )


def status_credentials(system: str, status: StatusSettings, ssh_ca: Mapping[str, Any]) -> UserCredentials:
    """The status account's certificate, signed by the hub CA; with ``status.forceCommand``
    the certificate itself carries the command the login node will run instead."""
    if not ssh_ca.get("enabled"):
        raise SSHError(
            f"{system}: status.user needs the hub's SSH CA (sshCA.enabled) to sign its certificate"
        )
    # A service account: user certificates are never signed for its name (the loader puts
    # it on sshCA.denyPrincipals).
    assert status.user
    return certificate_authority(ssh_ca).service_credentials(status.user, force_command=status.force_command)


# The words of an extend request, as the forced command's own patterns (it checks them again).
_EXTEND_WORDS = {
    "user": re.compile(r"[a-z_][a-z0-9_-]{0,31}"),
    "job id": re.compile(r"[0-9]{1,10}"),
    "job name": re.compile(r"hpchub-[0-9a-f]{16}"),
    # A Slurm name as hpchub.options accepts one (sent as "-" where none was asked).
    "name": re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}"),
    "nodes": re.compile(r"[1-9][0-9]{0,5}"),
    "minutes": re.compile(r"[1-9][0-9]{0,6}"),
    "gpus": re.compile(r"0|[1-9][0-9]{0,3}|-"),  # per node; "-": not compared
    "exclusive": re.compile(r"exclusive|shared|-"),
    "requeue": re.compile(r"requeue|no-requeue"),
}
# How the forced command prefixes a refusal (exit 126): the rest is for the user.
EXTEND_REFUSED = "hpchub-extend-command: refused: "


def extend_request(user: str, job_id: str, minutes: int, name: str, shape: JobShape) -> list[str]:
    """What the extend account's forced command accepts, and nothing else:
    ``extend <user> <job id> <minutes> <job name> <partition> <qos> <account> <nodes> <gpus>
    <exclusive> <requeue>``, the new time limit and the job as the hub submitted it (``-``
    for what it left to Slurm, and for GPUs or exclusive nodes the level's extra directives
    ask for their own way). The forced command finds all of it in Slurm before it runs
    ``scontrol update JobId=<n> TimeLimit=<m>``. ValueError for a word it would refuse."""
    words = [
        ("user", user),
        ("job id", job_id),
        ("minutes", str(int(minutes))),
        ("job name", name),
        ("name", shape.partition),
        ("name", shape.qos),
        ("name", shape.account),
        ("nodes", str(shape.nodes)),
        ("gpus", "-" if shape.gpus is None else str(shape.gpus)),
        ("exclusive", {True: "exclusive", False: "shared", None: "-"}[shape.exclusive]),
        ("requeue", "requeue" if shape.requeue else "no-requeue"),
    ]
    for kind, word in words:
        if not (kind == "name" and word == "") and not _EXTEND_WORDS[kind].fullmatch(word):
            raise ValueError(f"{word!r} is not a {kind} the extend account accepts")
    return ["extend", *(word or "-" for _, word in words)]


# Longest a refusal of the forced command (or scontrol's error) the user is shown.
MAX_EXTEND_ERROR = 300


class ExtendJobRefused(RuntimeError):
    """The login node's forced command refused the extension (the job is not the one the
    server asked for, or its limit would not grow): its reason, for the user."""


async def extend_job(
    system: str,
    target: SSHTarget,
    extend: ExtendSettings,
    ssh_ca: Mapping[str, Any],
    user: str,
    job_id: str,
    minutes: int,
    name: str,
    shape: JobShape,
    timeout: float = 60,
) -> None:
    """Raise job ``job_id``'s time limit to ``minutes`` as the site's extend account (a
    certificate from the hub CA carrying its forced command), if Slurm has it named
    ``name`` and of ``shape``. Raises SSHError when the login node cannot be reached,
    ExtendJobRefused with the forced command's refusal, RuntimeError for anything else."""
    if not ssh_ca.get("enabled") or not extend.user:
        raise RuntimeError(f"{system}: slurm.extend needs its account (extend.user) and the hub's SSH CA")
    request = extend_request(user, job_id, minutes, name, shape)
    creds = certificate_authority(ssh_ca).service_credentials(extend.user, force_command=extend.force_command)
    r = await pool.run(target, extend.user, creds, request, timeout=timeout)
    if r.exit_status != 0:
        # One line of printable text (the answer may quote a job's name, which its user chose).
        said = claims.text(" ".join((r.stderr or r.stdout).split()), MAX_EXTEND_ERROR)
        _, refused, reason = said.partition(EXTEND_REFUSED.strip())
        if r.exit_status == 126 and refused and reason.strip():
            raise ExtendJobRefused(f"{system} refused to extend job {job_id}: {reason.strip()}")
        raise RuntimeError(f"{system} refused to extend job {job_id}: {said or f'exit {r.exit_status}'}")


def shell_path(path: str) -> str:
    """A validated user path as a shell word: ``~/x`` becomes ``"$HOME"/'x'`` (a quoted
    tilde would not expand), anything else is quoted whole."""
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


# What a job prints when the user's start-up script failed (read back by startup_failure).
STARTUP_FAILED = "hpchub: the start-up script failed with exit code "


def source_line(path: str | None) -> str:
    """Source the user's start-up script (so what it sets reaches the server); when it
    fails — a non-zero status, or an ``exit`` inside it, which ends the job's shell —
    print STARTUP_FAILED and its exit code to the job's output and end the job. The EXIT
    trap that catches ``exit`` then runs the job template's own EXIT trap (the default
    template's tells the tunnel relay that the job is over); a clean return restores it."""
    if not path:
        return ""
    report = f'echo "{STARTUP_FAILED}$hpchub_rc" >&2'
    return "\n".join(
        [
            "hpchub_trap=$(trap -p EXIT)",
            'hpchub_ran() { eval "$3"; }  # the command of a `trap -- CMD EXIT` line',
            f"trap 'hpchub_rc=$?; {report}; eval \"hpchub_ran $hpchub_trap\"' EXIT",
            f". {shell_path(path)} </dev/null",
            "hpchub_rc=$?",
            'trap - EXIT; eval "$hpchub_trap"',
            f"if [ $hpchub_rc -ne 0 ]; then {report}; exit $hpchub_rc; fi",
        ]
    )


def startup_failure(output: str) -> tuple[int, str] | None:
    """(exit code, the lines printed before the report) when a job's output reports a
    failed start-up script (source_line), else None."""
    lines = output.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        code = lines[i].removeprefix(STARTUP_FAILED)
        if code != lines[i] and code.strip().isdigit():
            return int(code), "\n".join(lines[:i]).strip()
    return None


def export_lines(env: Mapping[str, str]) -> str:
    """``export`` lines for a POSIX shell; names checked, values quoted."""
    lines = []
    for name, value in sorted(env.items()):
        if not name or name[0].isdigit() or not set(name) <= _ENV_NAME_OK:
            raise ValueError(f"environment variable name {name!r} is not valid")
        lines.append(f"export {name}={shlex.quote(str(value))}")
    return "\n".join(lines)


def run_directory(system: str, text: str) -> str:
    """The run directory's absolute path as the user's shell printed it (``pwd -P``): the
    hub forwards its API to a socket there, so it must be a plain absolute path."""
    if (
        not text.startswith("/")
        or len(text) > 4096  # PATH_MAX; a socket path must be shorter still (checked later)
        or not text.isascii()
        or any(not ch.isprintable() or ch.isspace() for ch in text)
    ):
        raise ClaimRefused(system, "run directory", text)
    return text


# Every mark the launchers print (HPCHUB-<KEY> [value]).
MARK_KEYS = (
    "PID", "PSTART", "PORT", "DIED", "TIMEOUT", "FAILED", "CANCELLED", "STARTUP", "LAUNCHER",
    "DIR", "RELAYPID", "RELAYSTART", "RELAYPORT",
)  # fmt: skip
# The last line of a key: (?s:.*) runs to the end and backs off (C speed, linear); a value
# is at most 4 KiB.
_LAST_MARK = {key: re.compile(rf"(?s:.*)^{MARK}{key}(?:[ \t]([^\n]{{0,4096}}))?$", re.M) for key in MARK_KEYS}


def parse_marks(stdout: str) -> dict[str, str]:
    """``HPCHUB-KEY value`` lines of a script's output (the last one of a key wins: what
    a user's start-up files print comes before the launcher's own marks)."""
    marks: dict[str, str] = {}
    for key, pattern in _LAST_MARK.items():
        if f"{MARK}{key}" in stdout:
            m = pattern.match(stdout)
            if m:
                marks[key] = (m.group(1) or "").strip()
    return marks


def relay_start_script(run_dir: str, python: str, listen: str, lifetime: Sequence[str]) -> str:
    """Create the run directory (0700), write the relay there and start it detached;
    print the directory's absolute path, the relay's PID and its port."""
    q = shlex.quote
    source = Path(apirelay.__file__).read_text()
    eof = f"HPCHUB_RELAY_{secrets.token_hex(8)}"  # quoted here-doc: no expansion inside
    opts = " ".join(q(o) for o in lifetime)
    return f"""umask 077
d={run_dir}
mkdir -p "$d" && cd "$d" || {{ echo "{MARK}FAILED cannot create $d"; exit 1; }}
dir=$(pwd -P)
echo "{MARK}DIR $dir"
cat > relay.py <<'{eof}'
{source}
{eof}
rm -f {API_SOCKET} relay.port
setsid {q(python)} relay.py --listen {q(listen)} --socket "$dir/{API_SOCKET}" --port-file relay.port {opts} </dev/null >relay.log 2>&1 &
pid=$!
echo "{MARK}RELAYPID $pid"
# Its start time tells this relay from a later process with the same PID (status board).
echo "{MARK}RELAYSTART $(LC_ALL=C ps -o lstart= -p $pid)"
i=0
while [ $i -lt 150 ]; do
  if [ -s relay.port ]; then echo "{MARK}RELAYPORT $(cat relay.port)"; exit 0; fi
  kill -0 $pid 2>/dev/null || break
  sleep 0.1
  i=$((i+1))
done
echo "{MARK}FAILED"
tail -n 5 relay.log
exit 1
"""


def _relay_is_ours(pid: int, socket_path: str) -> str:
    # The PID must still be this relay (its argv names the socket), not a reused number.
    return (
        f"kill -0 {int(pid)} 2>/dev/null && grep -aqF -- {shlex.quote(socket_path)} /proc/{int(pid)}/cmdline"
    )


def relay_stop_script(pid: int, socket_path: str) -> str:
    return f"""if {_relay_is_ours(pid, socket_path)}; then kill -TERM {int(pid)}; fi
rm -f {shlex.quote(socket_path)}
exit 0
"""


def catches_usr1(pid_var: str) -> str:
    """A POSIX shell test, true once process ``$<pid_var>`` catches SIGUSR1 (bit 10 of
    ``SigCgt`` in /proc/<pid>/status; the last three hex digits hold it). A notebook server
    installs its handler only seconds into its start (jupyter_server's, which
    hpchub-notebook keeps); before that USR1's default action would end it."""
    return (
        f'hpchub_cgt=$(sed -n "s/^SigCgt:[[:space:]]*//p" /proc/"${pid_var}"/status 2>/dev/null) && [ -n "$hpchub_cgt" ] '
        '&& [ $(( 0x${hpchub_cgt#"${hpchub_cgt%???}"} & 512 )) -ne 0 ]'
    )


def whole_script(body: str) -> str:
    """A script the shell runs only once it has read all of it.

    ``sh -s`` executes stdin line by line; if the hub dies while sending a script, the
    shell would run the part that arrived (a job script cut short inside its here-doc is
    still submitted). A brace group is parsed whole before it runs: cut short, it is a
    syntax error and nothing runs.
    """
    return "{\n" + body.rstrip("\n") + "\n}\n"


@dataclass(frozen=True)
class RemoteOps:
    """Runs commands on one system as one user: what a spawner and the reaper share.

    ``creds`` answers None when the user's credentials expired; the pool then uses a
    connection of theirs that is still open (poll and stop keep working) or fails with a
    message asking the user to sign in again.
    """

    target: SSHTarget
    username: str
    creds: Callable[[], Awaitable[UserCredentials | None]]
    timeout: float = 60.0

    @property
    def shell_argv(self) -> list[str]:
        # A login shell sources the site's profile (module command, PATH) like an
        # interactive login would; sites without modules skip its cost.
        return ["bash", "--login", "-s"] if self.target.login_shell else ["/bin/sh", "-s"]

    async def run(
        self,
        argv: Sequence[str],
        stdin: str | None = None,
        timeout: float | None = None,
        host: str | None = None,
        prefer: str | None = None,
    ) -> Result:
        return await pool.run(
            self.target,
            self.username,
            await self.creds(),
            argv,
            stdin=stdin,
            timeout=timeout or self.timeout,
            host=host,
            prefer=prefer,
        )

    async def script(self, text: str, timeout: float | None = None, host: str | None = None) -> Result:
        """Run a shell script sent on stdin (the only way anything reaches a shell)."""
        return await self.run(self.shell_argv, stdin=text, timeout=timeout, host=host)


def job_name(run_id: str) -> str:
    """A batch job's name: how a submission whose answer was lost is found again."""
    return f"hpchub-{run_id}"


async def cancel_run(
    ops: RemoteOps,
    scheduler: Scheduler,
    run_id: str | None,
    job_id: str | None,
    host: str | None = None,
    prefer: str | None = None,
) -> bool:
    """One attempt to cancel a run's job; True when none of it is active any more.
    (The batch spawner's stop and the reaper both call this.) Any login host can cancel a
    job: ``host`` pins one only where it matters (tunnel mode), ``prefer`` tries one first."""
    script = scheduler.cancel_script(job_name(run_id) if run_id else None, job_id)
    for _ in range(6):
        try:
            r = await ops.run(ops.shell_argv, stdin=script, timeout=45, host=host, prefer=prefer)
        except SSHError as e:
            raise TransientSchedulerError(str(e)) from e
        if not parse_cancel(scheduler, r.stdout, job_id):
            return True
        await asyncio.sleep(2)  # ending (COMPLETING) takes a moment; cancelling again is harmless
    return False
