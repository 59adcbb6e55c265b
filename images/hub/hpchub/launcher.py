"""The scripts a login-node notebook's life runs on the login node (the SSH spawner's
launcher, the stop that the spawner and the reaper both use, the find of a run after a
hub restart, the lifetime watchdog). Pure text: every variable part is quoted here.

Race-free port: the server binds port 0 itself (the kernel picks a free port while it
binds), then jupyter_server writes its runtime file ``jpserver-<pid>.json`` (mode 0600)
with the real port; the launcher waits for that file and prints the port.

No orphans: every start has a run directory ``~/.hpchub/ssh/<run_id>/`` (0700) named
before the launch. The launcher writes its own PID to ``launcher``; the server's is in
``pid`` right after it started; a stop that does not know the PID creates ``cancel`` and
reads ``pid``: the launcher checks ``cancel`` after ``pid`` is written, so one of the two
always sees the other and the server never outlives the stop.

How it ended: the server runs under a small waiting shell, its parent, which writes
``exit <status>`` or ``signal <number>`` to ``exit`` when it ends; the lifetime watchdog
writes ``lifetime <seconds>`` to ``watchdog`` before it ends the server. The hub reads both
(``ended_script``) at the poll that sees the server gone: claims of the user's about their
own server (the files are in their own run directory), parsed bounded (``parse_ended``).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from .remoteops import MARK, catches_usr1, shell_path, whole_script
from .schedulers.base import end_section, end_sections

# How often the launcher looks for the server's runtime file: a start is ready this much
# later than the server at worst (a `sleep` a tick, for the seconds a server takes to start).
LAUNCH_POLL_SECONDS = 0.05


def run_dir_word(run_id: str) -> str:
    """The run directory as a shell word (relative to $HOME, which the shell expands)."""
    return f'"$HOME"/.hpchub/ssh/{shlex.quote(run_id)}'


def ours_test(var: str, run_id: str | None) -> str:
    """Shell test: process ``$var`` is alive and is this run's server. /proc/<pid>/environ
    is readable only for the user's own processes and holds the run directory of ours, so
    a PID reused (login node rebooted) by anything else fails. A PID read right after the
    launch may still be the launcher's fork, not yet the server: looked at again briefly."""
    if not run_id:  # state from before run ids: kill -0 only
        return f'kill -0 "${var}" 2>/dev/null'
    needle = shlex.quote(".hpchub/ssh/" + run_id)
    return (
        f'{{ i=0; r=1; while kill -0 "${var}" 2>/dev/null; do '
        f'if grep -aq {needle} /proc/"${var}"/environ 2>/dev/null; then r=0; break; fi; '
        f"[ $i -ge 10 ] && break; sleep 0.2; i=$((i+1)); done; [ $r = 0 ]; }}"
    )


def startup_lines(path: str | None) -> str:
    """Source the user's start-up script (a validated path) so what it sets reaches the
    server, and report its failure as ``STARTUP <exit code>`` with the last lines of its
    output. Its stdin is /dev/null (the launcher itself arrives on the shell's stdin, which
    bash reads line by line), its output goes to ``$d/startup.log`` (so nothing it prints
    can pass for one of the launcher's marks), and an ``exit`` inside it, which ends the
    launcher's shell, is caught by the EXIT trap. fd 3 keeps the launcher's stdout for the
    trap: bash runs it with the script's redirections still in place."""
    if not path:
        return ""
    report = f'echo "{MARK}STARTUP $rc"; tail -n 20 "$d/startup.log"'
    return f"""exec 3>&1
trap 'rc=$?; exec >&3; {report}' EXIT
. {shell_path(path)} </dev/null >"$d/startup.log" 2>&1
rc=$?
trap - EXIT
exec 3>&-
if [ $rc -ne 0 ]; then {report}; exit 1; fi"""


def launcher_script(
    *,
    env_exports: str,
    run_dir: str,
    modules: str,
    startup_script: str | None,
    cmd: list[str],
    bind_ip: str,
    wait_seconds: float,
    lifetime_seconds: int | None = None,
    save_before_seconds: int = 0,
) -> str:
    """The script sent on stdin to the login node's shell. Everything variable is quoted."""
    q = shlex.quote
    server = " ".join(q(a) for a in cmd + ["--ServerApp.port=0", f"--ServerApp.ip={bind_ip}"])
    watchdog = lifetime_watchdog(int(lifetime_seconds), save_before_seconds) if lifetime_seconds else ""
    tries = max(int(wait_seconds / LAUNCH_POLL_SECONDS), 1)
    return "umask 077\n" + whole_script(f"""{env_exports}
d={run_dir}
mkdir -p "$d" || {{ echo "{MARK}FAILED cannot create $d"; exit 1; }}
echo $$ > "$d/launcher"
[ -e "$d/cancel" ] && {{ echo "{MARK}CANCELLED"; exit 1; }}
# An earlier server's runtime files (its port is not this one's) and how it ended; a fork
# only if any.
for f in "$d"/jpserver-* "$d/pid" "$d/exit" "$d/watchdog"; do [ ! -e "$f" ] || rm -f "$f"; done
export JUPYTER_RUNTIME_DIR="$d"
cd "$HOME"
{modules}
{startup_lines(startup_script)}
# The server under its waiting parent (SERVER_PARENT), which writes its PID to pid and,
# once it ends, how it ended to exit.
HPCHUB_SERVER={q(server)} setsid /bin/sh -c {q(SERVER_PARENT)} hpchub-server "$d" </dev/null >/dev/null 2>&1 &
# Written a few milliseconds after the fork: looked for often, not to delay the start.
i=0
while [ ! -s "$d/pid" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
pid=$(cat "$d/pid" 2>/dev/null)
[ -n "$pid" ] || {{ echo "{MARK}FAILED the server's parent did not start it"; exit 1; }}
# A stop that came while the server was being started: it may not have seen the pid.
if [ -e "$d/cancel" ]; then kill -TERM -$pid 2>/dev/null || kill -TERM $pid; echo "{MARK}CANCELLED"; exit 1; fi
{watchdog}
echo "{MARK}PID $pid"
# Its start time tells this server from a later process with the same PID (reboot).
echo "{MARK}PSTART $(LC_ALL=C ps -o lstart= -p $pid 2>/dev/null)"
i=0
while [ $i -lt {tries} ]; do
  for f in "$d"/jpserver-*.json; do
    if [ -s "$f" ]; then
      port=$(sed -n 's/.*"port": *\\([0-9][0-9]*\\).*/\\1/p' "$f")
      if [ -n "$port" ]; then echo "{MARK}PORT $port"; exit 0; fi
    fi
  done
  if ! kill -0 $pid 2>/dev/null; then
    echo "{MARK}DIED"
    tail -n 20 "$d/server.log"
    exit 1
  fi
  sleep {LAUNCH_POLL_SECONDS}
  i=$((i+1))
done
echo "{MARK}TIMEOUT"
tail -n 20 "$d/server.log"
exit 1
""")


# The server's parent: its own session (setsid), with the server in another (setsid
# again: the server leads its process group, so a stop signals its kernels too, as before).
# It waits for the server and writes how it ended; nothing of it holds the SSH session.
# The server's command comes in $HPCHUB_SERVER (words the hub quoted), not as arguments:
# `ps` shows one jupyterhub-singleuser per server, not its parent as a second.
SERVER_PARENT = """d=$1
eval "set -- $HPCHUB_SERVER"
unset HPCHUB_SERVER
setsid "$@" </dev/null >"$d/server.log" 2>&1 &
p=$!
echo "$p" >"$d/pid.tmp" && mv -f "$d/pid.tmp" "$d/pid"
wait "$p"
rc=$?
if [ "$rc" -gt 128 ]; then echo "signal $((rc - 128))"; else echo "exit $rc"; fi >"$d/exit.tmp"
mv -f "$d/exit.tmp" "$d/exit"
"""


def lifetime_watchdog(seconds: int, save_before: int = 0) -> str:
    """The maximum lifetime, kept by the login node itself (the hub may be down): a small
    shell loop in its own session and with none of the server's environment (no token),
    which sends SIGUSR1 to the server alone ``save_before`` seconds before the end, or as
    soon after as the server catches it (its hpchub-notebook saves open documents; the
    kernels in its process group would die of it, and so would a server still starting), TERMs the server's process group when the time is up (KILL 30s later) and ends as
    soon as the server does. It re-checks that the PID is still this run's server, and
    says in the run directory (``watchdog``; its working directory is $HOME) that it ended it."""
    loop = (
        'p=$1; end=$(( $(date +%s) + $2 )); save=$(( end - $4 )); n=$3; warned=""; '
        'while sleep 10 && kill -0 "$p" 2>/dev/null && grep -aq "$n" /proc/"$p"/environ 2>/dev/null; do '
        f'now=$(date +%s); if [ -z "$warned" ] && [ "$now" -ge "$save" ] && {catches_usr1("p")}; then '
        'kill -USR1 "$p" 2>/dev/null; warned=1; fi; '
        'if [ "$now" -ge "$end" ]; then echo "lifetime $2" >"$n/watchdog"; kill -TERM -"$p" 2>/dev/null; sleep 30; '
        'kill -KILL -"$p" 2>/dev/null; exit 0; fi; done'
    )
    return (
        f"env -i PATH=/usr/bin:/bin setsid /bin/sh -c {shlex.quote(loop)} hpchub-lifetime "
        f'"$pid" {int(seconds)} "${{d#$HOME/}}" {max(0, int(save_before))} </dev/null >/dev/null 2>&1 &'
    )


def find_script(run_id: str, pid: int | None) -> str:
    """What is left of a run on its login node: the server's PID if it is alive and ours,
    its port once it listens, and whether the launcher still runs."""
    known = str(int(pid)) if pid else ""
    return whole_script(f"""d={run_dir_word(run_id)}
pid={known}
[ -n "$pid" ] || pid=$(cat "$d/pid" 2>/dev/null)
l=$(cat "$d/launcher" 2>/dev/null)
if [ -n "$l" ] && kill -0 "$l" 2>/dev/null; then echo "{MARK}LAUNCHER $l"; fi
if [ -n "$pid" ] && {ours_test("pid", run_id)}; then
  echo "{MARK}PID $pid"
  for f in "$d"/jpserver-*.json; do
    [ -s "$f" ] || continue
    port=$(sed -n 's/.*"port": *\\([0-9][0-9]*\\).*/\\1/p' "$f")
    [ -n "$port" ] && echo "{MARK}PORT $port"
  done
fi
exit 0
""")


def stop_script(pid: int | None, grace: float, run_id: str | None = None) -> str:
    """Stop a run: TERM to the server's process group, KILL after ``grace``; exit 0 once
    nothing of it is left. Without a PID (lost mid-launch) the run directory names it."""
    tries = max(int(grace * 5), 1)
    known = str(int(pid)) if pid else ""
    find = ""
    if run_id:
        find = f"""d={run_dir_word(run_id)}
mkdir -p "$d" && touch "$d/cancel"
l=$(cat "$d/launcher" 2>/dev/null)
i=0
# A launcher still running may be about to write the pid file: give it time to.
while [ -z "$pid" ] && [ -n "$l" ] && kill -0 "$l" 2>/dev/null && [ $i -lt 50 ]; do
  [ -s "$d/pid" ] && pid=$(cat "$d/pid")
  sleep 0.2
  i=$((i+1))
done
[ -n "$pid" ] || pid=$(cat "$d/pid" 2>/dev/null)
"""
    return whole_script(f"""pid={known}
{find}[ -n "$pid" ] || exit 0
{ours_test("pid", run_id)} || exit 0
# The whole process group (the server leads it): kernels that ignore TERM go too.
# (dash's kill takes no "--": a negative PID right after the signal works in every sh.)
alive() {{ kill -0 -$pid 2>/dev/null || kill -0 $pid 2>/dev/null; }}
kill -TERM -$pid 2>/dev/null || kill -TERM $pid 2>/dev/null
i=0
while [ $i -lt {tries} ]; do
  alive || exit 0
  sleep 0.2
  i=$((i+1))
done
kill -KILL -$pid 2>/dev/null || kill -KILL $pid 2>/dev/null
i=0
while alive && [ $i -lt 25 ]; do sleep 0.2; i=$((i+1)); done
alive && exit 1
exit 0
""")


def ended_script(run_id: str) -> str:
    """How a run's server ended, read at the poll that sees it gone: its parent's ``exit``
    (waited for a moment: the parent writes it as the server ends), the watchdog's word,
    the last lines of its log. Regular files only (a FIFO would hang the read), a few
    bytes of each (the log: from its last 64 KiB)."""
    return (
        f"d={run_dir_word(run_id)}\n"
        'i=0; while [ ! -e "$d/exit" ] && [ $i -lt 10 ]; do sleep 0.1; i=$((i+1)); done\n'
        + end_section("exit", '[ -f "$d/exit" ] && head -c 64 "$d/exit"')
        + end_section("watchdog", '[ -f "$d/watchdog" ] && head -c 64 "$d/watchdog"')
        + end_section("output", '[ -f "$d/server.log" ] && tail -c 65536 "$d/server.log" | tail -n 20')
    )


_EXIT = re.compile(r"(exit|signal) ([0-9]{1,3})")
_WATCHDOG = re.compile(r"lifetime [0-9]{1,9}")


@dataclass(frozen=True)
class ProcessEnd:
    """How a login-node server ended, as its run directory says (claims, bounded)."""

    exit_code: str = ""  # "1" (its exit status)
    signal: str = ""  # "9" (the signal that ended it)
    watchdog: bool = False  # the lifetime watchdog ended it
    output: str = ""  # the last lines of its log
    known: bool = False  # its parent wrote how it ended


def parse_ended(stdout: str) -> ProcessEnd:
    """The answer of ended_script; whatever it holds, a ProcessEnd (never an error)."""
    sections = end_sections(stdout)
    found = _EXIT.fullmatch(sections.get("exit", ("", 1))[0].strip())
    word = sections.get("watchdog", ("", 1))[0].strip()
    output = sections.get("output", ("", 1))[0].strip("\n")
    return ProcessEnd(
        exit_code=found.group(2) if found and found.group(1) == "exit" else "",
        signal=found.group(2) if found and found.group(1) == "signal" else "",
        watchdog=bool(_WATCHDOG.fullmatch(word)),
        output=output,
        known=found is not None,
    )
