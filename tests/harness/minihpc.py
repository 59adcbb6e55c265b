"""The mini HPC center for tests, started for real on this machine (loopback only):

- test users (``useradd``, idempotent) whose notebooks run over SSH;
- an sshd on a free loopback port trusting a test SSH user CA (the hub's CA);
- a one-host Slurm: munged with its own key and socket, slurmctld and slurmds from a
  slurm.conf in a temp dir (nothing under /etc is touched; sshd's SetEnv points the
  users' sbatch/squeue at that slurm.conf): node mini01 (partitions debug, long) and
  the GPU nodes gpu01, gpu02 (partition gpu, two GPU GRES each);
- configurable-http-proxy and the real JupyterHub process, configured by
  ``hpchub.config`` from a test values file.

Each component is a small class with start()/stop(); the pytest fixtures in
tests/integration/conftest.py compose them.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
MINI = REPO / "config" / "mini-hpc"

# The notebooks run as the test users, who cannot read /root (pyenv lives there), so
# the HPC side gets its own world-readable venv with the same JupyterHub version.
VENV = Path(os.environ.get("HPCHUB_TEST_VENV", "/opt/hpchub-test-venv"))
# The dev authenticator's shared password on every test hub (config/mini-hpc/values-test.yaml;
# the harness passes it as the chart does), and the one for hub.adminUsers (JupyterHub wants
# 32+ characters).
PASSWORD = "test-password"
ADMIN_PASSWORD = "hpchub-test-admin-password-0123456789"
USERS = ("hpcalice", "hpcbob", "hpccarol")
# The site's status service account (systems.<s>.status.user), set up as the operator guide
# says (a system account, its grant file, the forced command root-owned), and a user whose
# shell start-up files the hostile tests rewrite (never one of USERS: other sessions share those).
STATUS_USER = "hpcstatus"
STATUS_HOME = Path("/var/lib/hpchub-status-test")
STATUS_SCRIPT = REPO / "config" / "login-node" / "hpchub-status-command"
HOSTILE_USER = "hpcmallory"
# The site's extend account (systems.<s>.slurm.extend.user): its forced command, root-owned
# like the status account's, runs itself again as root through one sudo rule (a file in
# /etc/sudoers.d per sshd, removed with it) to raise a job's time limit.
EXTEND_USER = "hpcextend"
EXTEND_HOME = Path("/var/lib/hpchub-extend-test")
EXTEND_SCRIPT = REPO / "config" / "login-node" / "hpchub-extend-command"
# A user's start-up scripts that fail, with their exit codes: one that calls `exit` (which
# ends the shell sourcing it) and one whose last command fails. Both print on stdout and stderr.
FAILING_STARTUP_SCRIPTS = [
    ("echo 'loading my environment'\necho 'conda: environment myenv not found' >&2\nexit 7\n", 7),
    ("echo 'loading my environment'\necho 'conda: environment myenv not found' >&2\nsh -c 'exit 4'\n", 4),
]


@contextmanager
def script_in_home(user: str, body: str, prefix: str = "start") -> Iterator[str]:
    """A script the user wrote in their home, as ``~/<name>`` (a fresh name: other
    sessions share the test users); removed afterwards."""
    name = f"{prefix}-{secrets.token_hex(4)}.sh"
    path = Path(f"/home/{user}/{name}")
    path.write_text(body)
    try:
        yield f"~/{name}"
    finally:
        path.unlink()


GPU_NODES = ("gpu01", "gpu02")  # the mini Slurm's GPU nodes (partition gpu, 2 GPUs each)
# A system account with a login shell (uid below 1000), like a site's slurm or backup
# account: no certificate may log in as it.
SYSTEM_USER = "hpcsys"
# The hub's service identity on the login node (identity.lookup.user): a system account
# whose shell and home are the site's, allowed one forced command (getent passwd).
SERVICE_USER = "hpchub"
SERVICE_HOME = Path("/var/lib/hpchub-service")
# The login node's AuthorizedPrincipalsCommand, as a site installs it (and the mini HPC image).
PRINCIPALS_SCRIPT = REPO / "config" / "login-node" / "hpchub-principals"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ProcessExited(AssertionError):
    """A component exited while we waited for it: a definite failure, not "not yet"."""


def wait_for(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    interval: float = 0.1,
    final: type[BaseException] | tuple[type[BaseException], ...] = AssertionError,
) -> Any:
    """Polls ``predicate`` until it returns something truthy (returned); TimeoutError naming
    ``what`` after ``timeout`` seconds. An exception of the ``final`` kinds is a definite
    failure, raised at once; any other means "not yet" (the last one is in the message)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except final:
            raise  # a definite failure, not "not yet"
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def sign_in(
    public: str,
    user: str,
    password: str = PASSWORD,
    *,
    otp: str | None = None,
    session: requests.Session | None = None,
) -> requests.Response:
    """Sign in at the hub behind ``public`` (its proxy's URL) as a browser does: the login
    page for the _xsrf cookie, then the form (with the OTP field of the sshproxy login). The
    answer is the page it lands on (the console, /hub/home, when it worked); ``session``
    keeps the login cookie."""
    s = session or requests.Session()
    s.get(f"{public}/hub/login", timeout=30)
    form = {"username": user, "password": password, "_xsrf": s.cookies.get("_xsrf", "")}
    if otp is not None:
        form["otp"] = otp
    return s.post(f"{public}/hub/login", data=form, timeout=60)


def session_of(
    public: str,
    user: str,
    password: str = PASSWORD,
    *,
    otp: str | None = None,
    session: requests.Session | None = None,
) -> requests.Session:
    """A browser-like session signed in as ``user``; fails naming the user unless the sign-in
    landed on the console."""
    s = session or requests.Session()
    r = sign_in(public, user, password, otp=otp, session=s)
    assert r.ok and r.url.endswith("/hub/home"), f"sign-in of {user} failed: {r.status_code} {r.url}"
    return s


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def run(*argv: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=check, capture_output=True, text=True, **kw)


def user_processes(user: str, hub: Hub | None = None, pattern: str = "jupyterhub-singleuser") -> list[str]:
    """PIDs of the user's notebook processes (what must be gone after a stop).

    With ``hub``, only the notebooks of that hub (by their JUPYTERHUB_API_URL): other
    test sessions on the machine may run notebooks as the same test users.
    """
    if hub is None:
        return run("pgrep", "-u", user, "-f", pattern, check=False).stdout.split()
    return processes_with_env((user,), f"JUPYTERHUB_API_URL=http://127.0.0.1:{hub.hub_port}/", pattern)


def notebook_process(hub: Hub, user: str, server: str) -> str | None:
    """PID of ``user``'s notebook ``server`` of this hub, if it runs."""
    for pid in user_processes(user, hub):
        try:
            if environ(pid).get("JUPYTERHUB_SERVER_NAME") == server:
                return pid
        except OSError:
            continue
    return None


def processes_with_env(users: tuple[str, ...], needle: str, pattern: str | None = None) -> list[str]:
    """PIDs of the users' processes (matching ``pattern``, if given) whose environment holds
    ``needle``: how a test finds its own processes among other sessions' of the same users."""
    found = []
    for user in users:
        argv = ["pgrep", "-u", user] + (["-f", pattern] if pattern else [])
        for pid in run(*argv, check=False).stdout.split():
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            if needle.encode() in environ:
                found.append(pid)
    return found


def environ(pid: str) -> dict[str, str]:
    """A process's environment (read as root)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(v.decode(errors="replace").split("=", 1) for v in raw if b"=" in v)


def session_notebooks(user: str, sshd: SSHD, server: str) -> list[str]:
    """PIDs of ``user``'s notebook ``server`` started through this session's sshd (SSH
    launches and Slurm jobs both inherit sshd's HPCHUB_TEST_SESSION)."""
    pids = []
    for pid in user_processes(user):
        try:
            env = environ(pid)
        except OSError:
            continue
        if env.get("HPCHUB_TEST_SESSION") == sshd.session and env.get("JUPYTERHUB_SERVER_NAME") == server:
            pids.append(pid)
    return pids


def listening_ports(pid: str) -> set[int]:
    """TCP ports process ``pid`` listens on (from /proc: no iproute2 needed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = fd.readlink().as_posix()
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # 0A = LISTEN
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


def token_on_any_command_line(pid: str) -> str | None:
    """The notebook's API token (read from its environment as root) if it appears in any
    process's argv on the machine; None when it is on no command line."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    token = next(v.split(b"=", 1)[1] for v in environ if v.startswith(b"JUPYTERHUB_API_TOKEN="))
    assert len(token) >= 16
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if token in (proc / "cmdline").read_bytes():
                    return f"pid {proc.name}"
            except OSError:
                continue
    return None


def ensure_users(names: tuple[str, ...] = (*USERS, HOSTILE_USER)) -> None:
    for name in names:
        if run("id", name, check=False).returncode != 0:
            r = run("useradd", "--create-home", "--shell", "/bin/bash", name, check=False)
            # Another test session on this machine may have created it meanwhile.
            if r.returncode != 0 and run("id", name, check=False).returncode != 0:
                raise RuntimeError(f"useradd {name} failed: {r.stderr.strip()}")
        # useradd leaves the account locked ("!"), and sshd without PAM refuses locked
        # accounts even for certificates; "*" means "no password" without the lock.
        run("usermod", "-p", "*", name)


# The HPC side's notebook environment in tests: besides the server, a Python kernel with
# the slurm-magic magics (the user guide's "Slurm from a notebook") and nbgitpuller
# (links into a user's notebook), JupyterLab (tests drive Lab), and hpchub-notebook (built
# from images/singleuser/hpchub-notebook, see notebook_wheel). images/mini-hpc ships the same.
NOTEBOOK_PACKAGES = (
    "jupyter_server>=2",
    "jupyterlab>=4.6,<5",
    "ipykernel",
    "slurm-magic==0.1.0",
    "nbgitpuller==1.3.0",
)
NOTEBOOK_PACKAGE_SRC = REPO / "images" / "singleuser" / "hpchub-notebook"
# Built wheels of hpchub-notebook, one folder per hash of its sources (kept across runs).
WHEEL_CACHE = Path(os.environ.get("HPCHUB_WHEEL_CACHE", "/var/cache/hpchub-notebook"))
# What a build leaves in the source folder; never part of the hash or of the build's copy.
_BUILD_OUTPUTS = {
    "node_modules",
    "lib",
    "labextension",
    "tsconfig.tsbuildinfo",
    ".yarn",
    "dist",
    "__pycache__",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
}


def _package_sources(src: Path = NOTEBOOK_PACKAGE_SRC) -> list[Path]:
    return sorted(
        p
        for p in src.rglob("*")
        if p.is_file()
        and not _BUILD_OUTPUTS.intersection(p.relative_to(src).parts)
        and not p.name.endswith(".egg-info")
    )


def notebook_wheel(python: Path) -> Path:
    """The hpchub-notebook wheel, built once per version of its sources (``python -m pip
    wheel``: hatchling + hatch-jupyter-builder from PyPI, jlpm + @jupyterlab/builder from
    the npm registry; needs Node.js) and cached under WHEEL_CACHE/<hash>/."""
    import fcntl
    import hashlib

    h = hashlib.sha256()
    for p in _package_sources():
        h.update(p.relative_to(NOTEBOOK_PACKAGE_SRC).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    folder = WHEEL_CACHE / h.hexdigest()[:16]
    found = sorted(folder.glob("hpchub_notebook-*.whl"))
    if found:
        return found[0]
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    with open(WHEEL_CACHE / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = sorted(folder.glob("hpchub_notebook-*.whl"))
        if found:
            return found[0]
        with tempfile.TemporaryDirectory() as tmp:
            # A clean copy: a labextension left in the checkout would be shipped unbuilt.
            copy = Path(tmp) / "src"
            for p in _package_sources():
                dest = copy / p.relative_to(NOTEBOOK_PACKAGE_SRC)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(p, dest)
            out = Path(tmp) / "wheel"
            r = run(
                str(python), "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(copy), check=False
            )
            if r.returncode != 0:
                raise RuntimeError(
                    f"building hpchub-notebook failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
                )
            folder.mkdir(parents=True, exist_ok=True)
            for whl in out.glob("hpchub_notebook-*.whl"):
                shutil.copy2(whl, folder / whl.name)
    return sorted(folder.glob("hpchub_notebook-*.whl"))[0]


def ensure_system_accounts() -> None:
    """The system account and the hub's service accounts, as a site has them."""
    accounts = ((SYSTEM_USER, "/bin/bash", None), (SERVICE_USER, "/bin/sh", SERVICE_HOME))
    accounts += ((STATUS_USER, "/bin/sh", STATUS_HOME), (EXTEND_USER, "/bin/sh", EXTEND_HOME))
    for name, shell, home in accounts:
        if run("id", name, check=False).returncode != 0:
            argv = ["useradd", "--system", "--shell", shell]
            argv += ["--home-dir", str(home), "--no-create-home"] if home else ["--create-home"]
            r = run(*argv, name, check=False)
            if r.returncode != 0 and run("id", name, check=False).returncode != 0:
                raise RuntimeError(f"useradd {name} failed: {r.stderr.strip()}")
        run("usermod", "-p", "*", name)
    # The service accounts' homes belong to root: no user can put start-up files there.
    for home in (SERVICE_HOME, STATUS_HOME, EXTEND_HOME):
        home.mkdir(mode=0o755, exist_ok=True)
        os.chown(home, 0, 0)


def ensure_venv() -> Path:
    """The world-readable venv the test users run jupyterhub-singleuser from."""
    import fcntl

    import jupyterhub

    exe = VENV / "bin" / "jupyterhub-singleuser"
    # What the venv was made with: a venv from before a package was added gets it.
    stamp = VENV / "hpchub-packages.txt"
    wanted = "\n".join((f"jupyterhub=={jupyterhub.__version__}", *NOTEBOOK_PACKAGES)) + "\n"

    # The wheel is keyed by its sources: a changed package is a new wheel, reinstalled.
    wheel = notebook_wheel(Path(sys.executable))
    installed = VENV / "hpchub-notebook-wheel.txt"

    def ready() -> bool:
        return (
            exe.exists()
            and stamp.exists()
            and stamp.read_text() == wanted
            and installed.exists()
            and installed.read_text() == str(wheel)
        )

    if ready():
        return exe
    # Test sessions running side by side must not build the venv twice at once.
    with open(f"{VENV}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ready():
            if not exe.exists():
                run("/usr/bin/python3", "-m", "venv", str(VENV))
            if not stamp.exists() or stamp.read_text() != wanted:
                run(str(VENV / "bin" / "pip"), "install", "-q", *wanted.split())
                stamp.write_text(wanted)
            # --force-reinstall: a rebuilt wheel keeps its version number.
            run(str(VENV / "bin" / "pip"), "install", "-q", "--no-deps", "--force-reinstall", str(wheel))
            installed.write_text(str(wheel))
    return exe


def find_chp() -> str:
    for cand in (
        os.environ.get("HPCHUB_CHP"),
        shutil.which("configurable-http-proxy"),
        str(HERE / "node_modules" / ".bin" / "configurable-http-proxy"),
    ):
        if cand and Path(cand).exists():
            return cand
    raise RuntimeError(
        "configurable-http-proxy not found: run `npm ci --prefix tests/harness` "
        "(or npm install -g configurable-http-proxy@4)"
    )


def _proc_stat(pid: int) -> list[str]:
    """[state, ppid, start time] from /proc/<pid>/stat ([] when the process is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return []
    return [fields[0], fields[1], fields[19]] if len(fields) > 19 else []


def live(pid: int, started: str) -> bool:
    """Whether the process ``pid`` that started at ``started`` (Proc.descendants) still runs:
    not gone, not a zombie, not another process under a reused PID."""
    stat = _proc_stat(pid)
    return bool(stat) and stat[0] not in ("Z", "X") and stat[2] == started


class Proc:
    """A child process with its log in the work dir."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        workdir: Path,
        env: dict[str, str] | None = None,
        pod: bool = False,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log = workdir / f"{name}.log"
        self.env = env
        # pod: the process stands for a container; its descendants (the hub's managed culler
        # service, in a session of its own) end with it, as they do when a pod's container stops.
        self.pod = pod
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        f = self.log.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            stdout=f,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        f.close()

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        if not self.running():
            return
        assert self.popen is not None
        # Known before the signal: once the leader is gone its children are init's.
        family = self.descendants() if self.pod else []
        self.popen.send_signal(sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)
        for pid, started in family:
            if live(pid, started):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def descendants(self) -> list[tuple[int, str]]:
        """(PID, start time) of every live process below this one."""
        if not self.running():
            return []
        assert self.popen is not None
        children: dict[int, list[int]] = {}
        started: dict[int, str] = {}
        for path in Path("/proc").glob("[0-9]*/stat"):
            pid = int(path.parent.name)
            fields = _proc_stat(pid)
            if len(fields) > 2 and fields[0] not in ("Z", "X"):
                children.setdefault(int(fields[1]), []).append(pid)
                started[pid] = fields[2]
        found, todo = [], list(children.get(self.popen.pid, []))
        while todo:
            pid = todo.pop()
            found.append((pid, started[pid]))
            todo.extend(children.get(pid, []))
        return found

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass
class SSHD:
    """sshd on a loopback port, trusting the CA whose private key the hub gets."""

    workdir: Path
    port: int = field(default_factory=free_port)
    users: tuple[str, ...] = (*USERS, STATUS_USER, HOSTILE_USER, SYSTEM_USER, SERVICE_USER, EXTEND_USER)

    def __post_init__(self) -> None:
        self.dir = self.workdir / "sshd"
        self.ca_key = self.dir / "ca"
        self.host_key = self.dir / "ssh_host_ed25519_key"
        self.proc: Proc | None = None
        # sshd runs AuthorizedPrincipalsCommand only from a root-owned path no one else can
        # write, all the way up: not under /tmp, so the script is copied under /run.
        self.root_dir = Path("/run/hpchub-minihpc") / f"{self.workdir.name}-{self.port}"
        # systems.<s>.status.forceCommand of a hub on this sshd.
        self.status_command = self.root_dir / "hpchub-status-command"
        # systems.<s>.slurm.extend.forceCommand, and the sudo rule that lets it run as root.
        self.extend_command = self.root_dir / "hpchub-extend-command"
        self.sudoers = Path("/etc/sudoers.d") / f"hpchub-test-{self.workdir.name}-{self.port}"

    @property
    def session(self) -> str:
        """Names this test session to the users' shells (sshd's SetEnv): start-up files a
        test plants act only on commands that come through this session's sshd."""
        return self.workdir.name

    @contextmanager
    def shell_startup(self, user: str, text: str) -> Iterator[None]:
        """Run ``text`` at the start of every SSH command ``user`` gets from this sshd:
        what a user's own shell start-up file can do. Bash sources ~/.bashrc for commands
        sshd runs; a hook at its top sources ~/.hpchub-test-rc/<session>. Other test
        sessions on the machine (other sshds) are unaffected."""
        pw = pwd.getpwnam(user)
        home = Path(pw.pw_dir)
        rcdir = home / ".hpchub-test-rc"
        rcdir.mkdir(mode=0o700, exist_ok=True)
        os.chown(rcdir, pw.pw_uid, pw.pw_gid)
        hook = (
            '[ -n "$HPCHUB_TEST_SESSION" ] && [ -r ~/.hpchub-test-rc/"$HPCHUB_TEST_SESSION" ] '
            '&& . ~/.hpchub-test-rc/"$HPCHUB_TEST_SESSION"  # hpchub tests\n'
        )
        bashrc = home / ".bashrc"
        current = bashrc.read_text() if bashrc.exists() else ""
        if hook not in current:
            # At the top: Debian's .bashrc returns early for non-interactive shells.
            bashrc.write_text(hook + current)
            os.chown(bashrc, pw.pw_uid, pw.pw_gid)
        rc = rcdir / self.session
        rc.write_text(text)
        os.chown(rc, pw.pw_uid, pw.pw_gid)
        try:
            yield
        finally:
            rc.unlink(missing_ok=True)
            self.kill_sessions(user)

    def kill_sessions(self, user: str) -> None:
        """End ``user``'s processes started through this sshd (their environment names
        this session), e.g. what a planted start-up file left running."""
        for pid in run("pgrep", "-u", user, check=False).stdout.split():
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            if f"HPCHUB_TEST_SESSION={self.session}".encode() in environ.split(b"\0"):
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def prepare(self, slurm_conf: Path | None) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.host_key.exists():
            run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key))
            run(
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "hpchub-test-ca",
                "-f",
                str(self.ca_key),
            )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        ensure_system_accounts()
        grants = self.root_dir / "principals"
        grants.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.chmod(self.root_dir.parent, 0o755)
        os.chmod(self.root_dir, 0o755)
        principals_cmd = self.root_dir / "hpchub-principals"
        shutil.copyfile(PRINCIPALS_SCRIPT, principals_cmd)
        os.chmod(principals_cmd, 0o755)
        # The service accounts may log in with a certificate for their own name (a grant
        # file, as the operator guide describes); ordinary accounts need none.
        for account in (SERVICE_USER, STATUS_USER, EXTEND_USER):
            (grants / account).write_text(f"{account}\n")
        # The status account's forced command, root-owned (operator guide, step 3).
        shutil.copyfile(STATUS_SCRIPT, self.status_command)
        os.chmod(self.status_command, 0o755)
        # The extend account's, and its sudo rule with the same options (operator guide,
        # "Extending a running job"): this cluster's slurm.conf is not Slurm's default one.
        shutil.copyfile(EXTEND_SCRIPT, self.extend_command)
        os.chmod(self.extend_command, 0o755)
        extend_command = f"{self.extend_command} --slurm-conf {slurm_conf or '/etc/slurm/slurm.conf'}"
        rule = f"{EXTEND_USER} ALL=(root) NOPASSWD: {extend_command} --root *\n"
        staged = self.dir / "sudoers"
        staged.write_text(rule)
        run("visudo", "-c", "-q", "-f", str(staged))
        self.sudoers.write_text(rule)
        os.chmod(self.sudoers, 0o440)
        template = (MINI / "sshd_config").read_text()
        conf = template.format(
            port=self.port,
            host_key=self.host_key,
            ca_pub=f"{self.ca_key}.pub",
            pid_file=self.dir / "sshd.pid",
            users=" ".join(self.users),
            slurm_conf=slurm_conf or "/etc/slurm/slurm.conf",
            session=self.session,
            principals_cmd=principals_cmd,
            grants_dir=grants,
            service_user=SERVICE_USER,
            status_user=STATUS_USER,
            status_command=self.status_command,
            extend_user=EXTEND_USER,
            extend_command=extend_command,
        )
        (self.dir / "sshd_config").write_text(conf)

    def known_hosts(self, hosts: list[tuple[str, int]]) -> str:
        key = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return "".join(f"[{h}]:{p} {key[0]} {key[1]}\n" for h, p in hosts)

    def user_key(self, key: Path, user: str, key_id: str = "bench") -> Path:
        """An OpenSSH key file and its certificate (``<key>-cert.pub``) from the test CA,
        for clients that read files (the OpenSSH client, sshspawner)."""
        if not key.exists():
            run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
            run(
                "ssh-keygen",
                "-q",
                "-s",
                str(self.ca_key),
                "-I",
                key_id,
                "-n",
                user,
                "-V",
                "+12h",
                f"{key}.pub",
            )
        return key

    def start(self) -> None:
        self.proc = Proc(
            "sshd",
            ["/usr/sbin/sshd", "-D", "-e", "-f", str(self.dir / "sshd_config")],
            self.workdir,
        )
        self.proc.start()
        wait_for(lambda: port_open(self.port), 15, "sshd")

    def sessions(self, user: str) -> int:
        """SSH sessions (commands) sshd has run for ``user`` so far (LogLevel VERBOSE)."""
        if not self.proc:
            return 0
        text = self.proc.log.read_text(errors="replace")
        # "command for <user> from ..." or, with a certificate's force-command,
        # "forced-command (key-option) '<cmd>' for <user> from ...".
        return sum(
            1 for line in text.splitlines() if "Starting session: " in line and f" for {user} from " in line
        )

    def log_lines_about(self, user: str) -> list[str]:
        """sshd's log lines that name ``user`` as the account of a login attempt."""
        if not self.proc:
            return []
        pattern = re.compile(rf"\b(user|for) {re.escape(user)}\b")
        return [ln for ln in self.proc.log.read_text(errors="replace").splitlines() if pattern.search(ln)]

    def serials(self, user: str) -> list[int]:
        """Serial numbers of the certificates sshd accepted for ``user`` (LogLevel VERBOSE:
        "Accepted publickey for <user> from ... ID <key id> (serial <n>) CA ...")."""
        if not self.proc:
            return []
        text = self.proc.log.read_text(errors="replace")
        pattern = rf"Accepted publickey for {re.escape(user)} from .* \(serial (\d+)\)"
        return [int(n) for n in re.findall(pattern, text)]

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()
        shutil.rmtree(self.root_dir, ignore_errors=True)
        self.sudoers.unlink(missing_ok=True)


@dataclass
class Slurm:
    """A one-host Slurm cluster: munged, slurmctld, one slurmd per node ('mini01', and
    'gpu01'/'gpu02' with two GPUs each)."""

    workdir: Path
    # CPUs the node declares (more than the VM has: config_overrides); the scale benchmark
    # declares one per notebook job.
    cpus: int = 16

    def __post_init__(self) -> None:
        self.dir = self.workdir / "slurm"
        self.conf = self.dir / "slurm.conf"
        self.ctld_port = free_port()
        self.slurmd_port = free_port()
        self.gpu_ports = {node: free_port() for node in GPU_NODES}
        self.munge_socket = self.dir / "munge" / "munge.socket"
        self.munged: Proc | None = None
        self.ctld: Proc | None = None
        self.slurmds: list[Proc] = []

    def prepare(self) -> None:
        for sub in ("state", "munge", "dev"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        for i in range(2):
            # The GPU "devices" gres.conf names: character devices (slurmd binds only
            # those), with /dev/null's numbers so nothing can be done with them.
            dev = self.dir / "dev" / f"gpu{i}"
            if not dev.exists():
                os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.chmod(self.dir / "munge", 0o755)  # users' sbatch talks to the socket
        key = self.dir / "munge.key"
        if not key.exists():
            key.write_bytes(secrets.token_bytes(1024))
            os.chmod(key, 0o600)
        conf = (
            (MINI / "slurm.conf")
            .read_text()
            .format(
                ctld_host=socket.gethostname().split(".")[0],
                ctld_port=self.ctld_port,
                slurmd_port=self.slurmd_port,
                gpu01_port=self.gpu_ports["gpu01"],
                gpu02_port=self.gpu_ports["gpu02"],
                dir=self.dir,
                munge_socket=self.munge_socket,
                cpus=self.cpus,
                # DefMemPerCPU (1000 MB) for each declared CPU: memory never limits how many
                # jobs fit before the CPUs do.
                memory=self.cpus * 1000,
            )
        )
        self.conf.write_text(conf)
        os.chmod(self.conf, 0o644)
        gres = self.dir / "gres.conf"  # slurmd reads it next to slurm.conf
        gres.write_text((MINI / "gres.conf").read_text().format(dir=self.dir))
        os.chmod(gres, 0o644)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self) -> None:
        self.munged = Proc(
            "munged",
            [
                "munged",
                "--foreground",
                "--force",
                f"--key-file={self.dir / 'munge.key'}",
                f"--socket={self.munge_socket}",
                f"--pid-file={self.dir / 'munged.pid'}",
                f"--seed-file={self.dir / 'munged.seed'}",
                f"--log-file={self.dir / 'munged.log'}",
            ],
            self.workdir,
        )
        self.munged.start()
        wait_for(lambda: self.munge_socket.exists(), 15, "munged socket")
        self.start_ctld()
        for node in ("mini01", *GPU_NODES):
            slurmd = Proc(
                "slurmd" if node == "mini01" else f"slurmd-{node}",
                ["slurmd", "-D", "-f", str(self.conf), "-N", node],
                self.workdir,
                env=self.env,
            )
            slurmd.start()
            self.slurmds.append(slurmd)
        wait_for(self._nodes_idle, 60, "slurm nodes mini01, gpu01, gpu02 idle", interval=0.5)

    def start_ctld(self) -> None:
        # -i: ignore state from an earlier run; state in this temp dir only anyway.
        self.ctld = Proc(
            "slurmctld",
            ["slurmctld", "-D", "-f", str(self.conf)],
            self.workdir,
            env=self.env,
        )
        self.ctld.start()
        wait_for(lambda: port_open(self.ctld_port), 30, "slurmctld")

    def stop_ctld(self) -> None:
        if self.ctld:
            self.ctld.stop()

    def _nodes_idle(self) -> bool:
        out = run("sinfo", "-h", "-N", "-o", "%N %t", check=False, env=self.env).stdout
        states = dict(line.split() for line in set(out.splitlines()) if len(line.split()) == 2)
        return all(states.get(node) in ("idle", "mix") for node in ("mini01", *GPU_NODES))

    def squeue(self, user: str | None = None) -> list[dict[str, str]]:
        argv = ["squeue", "-h", "-o", "%i|%u|%T|%j"]
        if user:
            argv += ["-u", user]
        out = run(*argv, env=self.env).stdout
        jobs = []
        for line in out.splitlines():
            jid, u, state, name = line.split("|", 3)
            jobs.append({"id": jid, "user": u, "state": state, "name": name})
        return jobs

    def rpc_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """slurmctld's RPC counters (``sdiag``): by message type and by user name."""
        out = run("sdiag", env=self.env).stdout
        by_type: dict[str, int] = {}
        by_user: dict[str, int] = {}
        section = None
        for line in out.splitlines():
            if line.startswith("Remote Procedure Call statistics by message type"):
                section = by_type
            elif line.startswith("Remote Procedure Call statistics by user"):
                section = by_user
            elif not line.strip():
                section = None
            elif section is not None and "count:" in line:
                name = line.split("(")[0].strip()
                section[name] = int(line.split("count:")[1].split()[0])
        return by_type, by_user

    def scancel(self, job_id: str) -> None:
        run("scancel", job_id, env=self.env)

    def as_user(self, user: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A Slurm command run as ``user`` (what they can type on the login node)."""
        return run("runuser", "-u", user, "--", "env", f"SLURM_CONF={self.conf}", *argv, check=check, cwd="/")

    @contextmanager
    def fill_node(self) -> Iterator[str]:
        """Hold the only node with an exclusive job (root's), so notebook jobs queue for
        Resources; yields its id and cancels it on exit."""
        blocker = run(
            "sbatch",
            "--parsable",
            "--exclusive",
            "-p",
            "debug",
            "-t",
            "10",
            "-J",
            "blocker",
            "-o",
            "/dev/null",
            "--wrap",
            "sleep 600",
            env=self.env,
        ).stdout.strip()
        try:
            wait_for(
                lambda: any(j["id"] == blocker and j["state"] == "RUNNING" for j in self.squeue()),
                30,
                "the blocker job to hold the node",
            )
            yield blocker
        finally:
            # The test may have freed the node itself already.
            run("scancel", blocker, check=False, env=self.env)

    def stop(self) -> None:
        # scancel -u takes one user; the daemons stop only once the jobs are gone (a job
        # whose slurmd stops first would leave its processes running on this machine).
        for user in (*USERS, HOSTILE_USER):
            run("scancel", "--full", "-u", user, check=False, env=self.env)
        try:
            wait_for(
                lambda: not run("squeue", "-h", "-o", "%i", check=False, env=self.env).stdout.strip(),
                30,
                "the test jobs to end",
                interval=0.5,
            )
        except TimeoutError as e:
            print(f"slurm teardown: {e}")
        for p in (*self.slurmds, self.ctld, self.munged):
            if p:
                p.stop()


def postgres_bin() -> Path:
    """Debian's PostgreSQL server binaries (package postgresql), newest version."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL server not found: apt-get install postgresql (hack/install-deps.sh)")
    return found[-1].parent


@dataclass
class Postgres:
    """A PostgreSQL server on a loopback port with its data and socket in the work dir:
    the hub's external database (hub.db.type=postgres). initdb and the server run as the
    ``postgres`` system user (the server refuses to run as root); password auth only."""

    workdir: Path
    port: int = field(default_factory=free_port)
    user: str = "hpchub"
    database: str = "jupyterhub"

    def __post_init__(self) -> None:
        self.dir = self.workdir / "postgres"
        self.data = self.dir / "data"
        # URL-special characters on purpose: the URL must carry them encoded.
        self.password = secrets.token_hex(12) + "/@:%"
        self.bin = postgres_bin()

    def _as_postgres(self, *argv: str) -> subprocess.CompletedProcess[str]:
        r = run("runuser", "-u", "postgres", "--", *argv, check=False, cwd=str(self.dir))
        if r.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {r.stdout}{r.stderr}")
        return r

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        os.chmod(pwfile, 0o600)
        shutil.chown(self.dir, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
        self._as_postgres(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
        )
        pwfile.unlink()
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._as_postgres(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "server.log"),
            "-o",
            opts,
            "-w",
            "start",
        )
        self.create_database(self.database)

    def create_database(self, name: str) -> None:
        with self.connect("postgres") as conn:
            conn.autocommit = True
            conn.execute(f'CREATE DATABASE "{name}"')

    def url(self, scheme: str = "postgresql", database: str | None = None) -> str:
        from urllib.parse import quote

        password = quote(self.password, safe="")
        return f"{scheme}://{self.user}:{password}@127.0.0.1:{self.port}/{database or self.database}"

    def connect(self, database: str | None = None) -> Any:
        import psycopg

        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database or self.database,
        )

    def query(self, sql: str, *params: Any, database: str | None = None) -> list[tuple[Any, ...]]:
        with self.connect(database) as conn:
            return list(conn.execute(sql, params).fetchall())

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")


@dataclass
class Hub:
    """configurable-http-proxy + JupyterHub, configured by hpchub.config from values: the one
    test hub of the integration, fault and browser tests and the benches. Its config file is
    tests/harness/jupyterhub_config.py, told the harness's ports, database, token and traits
    through one JSON file ($HPCHUB_TEST_OVERRIDES).

    ``ssh_ca_key``: the hub's SSH CA private key, mounted as the chart does (None: no CA file,
    for values with sshCA off). ``db_url``: run on that external database the way the chart
    does (hub.db.type postgres, the URL in $HPCHUB_DB_URL) instead of a sqlite file in the work
    dir. ``extra_env``: further variables the chart would set (mounted files' paths, tokens).
    ``traits``: {"Class": {"trait": value}}, set after the loader. ``poll_interval``: None for
    JupyterHub's own. ``loader``: False for a plain JupyterHub configured only by text a
    subclass appends to the config file (the scale bench's peers)."""

    workdir: Path
    values: dict[str, Any]
    ssh_ca_key: Path | None = None
    poll_interval: int | None = 2
    db_url: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    # {"SlurmSpawner": {"stop_confirm_seconds": 10}}: traits set after the loader.
    traits: dict[str, dict[str, Any]] = field(default_factory=dict)
    name: str = "hub"
    password: str = PASSWORD  # the dev authenticator's, as the chart passes it
    loader: bool = True
    api_timeout: float = 60  # seconds a REST call of the tests may take

    def __post_init__(self) -> None:
        self.dir = self.workdir / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.hub_port = free_port()
        self.proxy_port = free_port()
        self.proxy_api_port = free_port()
        self.proxy_token = secrets.token_hex(32)
        self.api_token = secrets.token_hex(32)
        self.crypt_key = secrets.token_hex(32)
        self.metrics_token = secrets.token_hex(32)  # what the chart's Secret gives Prometheus
        # The uninstall hook's token: the loader gives it the chart's "uninstall" role.
        self.uninstall_token = secrets.token_hex(32)
        self.proxy: Proc | None = None
        self.hub: Proc | None = None
        self.values_file = self.dir / "values.yaml"
        self.config_file = self.dir / "jupyterhub_config.py"
        self.starts = 0

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.hub_port}/hub/api"

    @property
    def public(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def prepare(self) -> None:
        if self.db_url:
            db = self.values.setdefault("hub", {}).setdefault("db", {})
            db["type"] = "postgres"
            db.setdefault("postgres", {}).setdefault("existingSecret", "hub-db")
        self.values_file.write_text(yaml.safe_dump(self.values))
        (self.dir / "test_overrides.json").write_text(
            json.dumps(
                {
                    "db": None if self.db_url else f"sqlite:///{self.dir / 'jupyterhub.sqlite'}",
                    "cookie_secret_file": str(self.dir / "cookie_secret"),
                    "hub": f"http://127.0.0.1:{self.hub_port}",
                    "proxy_api": f"http://127.0.0.1:{self.proxy_api_port}",
                    "public": self.public,
                    "api_token": self.api_token,
                    "poll_interval": self.poll_interval,
                    "traits": self.traits,
                    "loader": self.loader,
                }
            )
        )
        shutil.copy(HERE / "jupyterhub_config.py", self.config_file)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            # The venv's scripts first, as the hub image's PATH has them (/opt/hpchub/bin):
            # JupyterHub runs `alembic` by name to upgrade a database.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            "HPCHUB_VALUES": str(self.values_file),
            "HPCHUB_TEST_OVERRIDES": str(self.dir / "test_overrides.json"),
            **({"HPCHUB_SSH_CA_KEY_FILE": str(self.ssh_ca_key)} if self.ssh_ca_key else {}),
            "JUPYTERHUB_CRYPT_KEY": self.crypt_key,
            "CONFIGPROXY_AUTH_TOKEN": self.proxy_token,
            "HPCHUB_DUMMY_PASSWORD": self.password,
            "HPCHUB_DUMMY_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "HPCHUB_METRICS_TOKEN": self.metrics_token,
            "HPCHUB_UNINSTALL_TOKEN": self.uninstall_token,
            **({"HPCHUB_DB_URL": self.db_url} if self.db_url else {}),
            **self.extra_env,
        }

    def start_proxy(self) -> None:
        chp = find_chp()
        self.proxy = Proc(
            "proxy",
            [
                chp,
                "--ip=127.0.0.1",
                f"--port={self.proxy_port}",
                "--api-ip=127.0.0.1",
                f"--api-port={self.proxy_api_port}",
                f"--default-target=http://127.0.0.1:{self.hub_port}",
                f"--error-target=http://127.0.0.1:{self.hub_port}/hub/error",
            ],
            self.dir,
            env=self.env(),
        )
        self.proxy.start()
        wait_for(lambda: port_open(self.proxy_api_port), 20, "configurable-http-proxy")

    def hub_env(self) -> dict[str, str]:
        """The hub's environment (the proxy's is env()); a test hub may take secrets elsewhere."""
        return self.env()

    def start_hub(self) -> None:
        self.hub = Proc(
            "jupyterhub",
            [sys.executable, "-m", "jupyterhub", "-f", str(self.config_file)],
            self.dir,
            env=self.hub_env(),
            pod=True,
        )
        self.starts += 1
        self.hub.start()
        try:
            wait_for(self._hub_up, 60, "JupyterHub API", interval=0.2)
        except TimeoutError as e:
            raise RuntimeError(f"hub did not start:\n{self.hub.tail()}") from e

    def _hub_up(self) -> bool:
        if self.hub is None or not self.hub.running():
            raise ProcessExited(f"hub exited:\n{self.hub.tail() if self.hub else ''}")
        return requests.get(f"{self.api}/", timeout=2).status_code == 200

    def stop_hub(self) -> None:
        if self.hub:
            self.hub.stop()

    def kill_hub(self) -> None:
        """SIGKILL: the hub gets no chance to finish anything (a node or pod lost)."""
        if self.hub:
            self.hub.stop(signal.SIGKILL)

    def routes(self) -> dict[str, Any]:
        """configurable-http-proxy's routing table."""
        r = requests.get(
            f"http://127.0.0.1:{self.proxy_api_port}/api/routes",
            headers={"Authorization": f"token {self.proxy_token}"},
            timeout=5,
        )
        r.raise_for_status()
        return r.json()

    def log_text(self) -> str:
        return self.hub.log.read_text(errors="replace") if self.hub else ""

    def db_engine(self) -> Any:
        """The hub's own database (what hpchub.endings and the console read)."""
        import sqlalchemy

        return sqlalchemy.create_engine(self.db_url or f"sqlite:///{self.dir / 'jupyterhub.sqlite'}")

    def start(self) -> Hub:
        """Proxy and hub; a start that fails leaves neither running."""
        try:
            self.prepare()
            self.start_proxy()
            self.start_hub()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.stop_hub()
        if self.proxy:
            self.proxy.stop()

    # --- REST helpers -------------------------------------------------------------
    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any
    ) -> requests.Response:
        """A REST call with the tests' service token (``path`` below /hub/api)."""
        kw.setdefault("timeout", self.api_timeout)
        headers = {"Authorization": f"token {self.api_token}", **(headers or {})}
        return requests.request(method, f"{self.api}{path}", headers=headers, **kw)

    def rest(self, method: str, path: str, body: Any = None) -> Any:
        """A REST call that must succeed: its JSON answer (None when empty)."""
        r = self.request(method, path, json=body)
        r.raise_for_status()
        return r.json() if r.content else None

    def metrics(self, token: str | None = None) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Scrape /hub/metrics through the proxy as Prometheus would (with the metrics
        token): {(sample name, labels): value}."""
        from prometheus_client.parser import text_string_to_metric_families

        r = requests.get(
            f"{self.public}/hub/metrics",
            headers={"Authorization": f"token {token or self.metrics_token}"},
            timeout=30,
        )
        r.raise_for_status()
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(r.text)
            for s in fam.samples
        }

    def sign_in(
        self, user: str, password: str = PASSWORD, session: requests.Session | None = None
    ) -> requests.Response:
        """Sign in through the proxy as a browser does (:func:`sign_in`)."""
        return sign_in(self.public, user, password, session=session)

    def session_of(self, user: str, password: str = PASSWORD, otp: str | None = None) -> requests.Session:
        """A browser-like session signed in as ``user`` through the proxy (:func:`session_of`)."""
        return session_of(self.public, user, password, otp=otp)

    def stop_all_servers(self, users: Iterable[str]) -> None:
        """Stop every server of ``users`` (a fixture's teardown: no notebook or job may
        outlive it); one that will not stop is reported, and the others still stopped."""
        for user in users:
            r = self.request("GET", f"/users/{user}")
            for name in (r.json().get("servers") or {}) if r.ok else {}:
                try:
                    self.stop_server(user, name)
                except Exception as e:  # noqa: BLE001 - teardown goes on
                    print(f"teardown: could not stop {user}/{name}: {e}")

    def ensure_user(self, name: str) -> None:
        r = self.request("POST", f"/users/{name}")
        assert r.status_code in (201, 409), r.text

    def start_server(
        self, user: str, server: str, options: dict[str, Any] | None = None
    ) -> requests.Response:
        return self.request(
            "POST",
            f"/users/{user}/servers/{server}",
            json={"user_options": options or {}},
        )

    def start_servers(
        self, user: str, servers: Iterable[str], timeout: float = 120, answering: bool = False
    ) -> None:
        """Start ``servers`` of ``user`` all at once (each accepted: 201, or 202 while it
        starts), then wait until each is ready and, with ``answering``, answers through the
        proxy."""
        servers = list(servers)
        for server in servers:
            r = self.start_server(user, server)
            assert r.status_code in (201, 202), r.text
        for server in servers:
            self.wait_ready(user, server, timeout=timeout)
            if answering:
                self.wait_answering(user, server)

    def start_outcome(
        self, user: str, server: str, options: dict[str, Any] | None = None, timeout: float = 180
    ) -> tuple[str, str]:
        """Start a server and wait for the outcome: ("ready", "") or ("failed", message).

        The hub answers a start that takes longer than its slow-spawn timeout (10 s, often
        reached on a loaded machine) with 202; the failure then arrives on the progress
        stream, with the same message the 500 answer would have carried."""
        r = self.start_server(user, server, options)
        if r.status_code not in (201, 202):
            return "failed", r.json().get("message", r.text)
        # Even a 201 is read from the stream: JupyterHub 6.1 answers 201 for a start still
        # pending when its slow-spawn timeout and the spawn race.
        url = f"{self.api}/users/{user}/servers/{server}/progress"
        headers = {"Authorization": f"token {self.api_token}"}
        with requests.get(url, headers=headers, stream=True, timeout=timeout) as events:
            if events.status_code == 400:
                # The start failed before the stream could be opened, and the hub answered
                # the POST only after its 10 s slow-spawn wait, while the failed start's
                # stop went on (one that waits for a job to appear): once that stop is
                # done, the failure is in the hub's log.
                wait_for(lambda: self.server_model(user, server) is None, timeout, f"{user}/{server} stopped")
                return "failed", self.last_start_error(user, server)
            for line in events.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    event = json.loads(line[5:])
                    if event.get("failed"):
                        return "failed", event.get("message", "").removeprefix("Spawn failed: ")
                    if event.get("ready"):
                        return "ready", ""
        raise AssertionError(f"no outcome of starting {user}/{server} on the progress stream")

    def last_start_error(self, user: str, server: str) -> str:
        """The message of the last failed start of user/server, from the hub's log."""
        pattern = re.compile(rf"Error starting {re.escape(user)}'s server: HTTP \d+: [^(]*\((.*)\)$")
        found = [m.group(1) for m in map(pattern.search, self.log_text().splitlines()) if m]
        if not found:
            raise AssertionError(
                f"no outcome of starting {user}/{server}:\n{self.hub.tail(30) if self.hub else ''}"
            )
        # hpchub's start failures are logged escaped, on one line (a repr: claims.shown).
        text = found[-1]
        return ast.literal_eval(text) if len(text) > 1 and text[0] in "'\"" and text[-1] == text[0] else text

    def server_model(self, user: str, server: str) -> dict[str, Any] | None:
        r = self.request("GET", f"/users/{user}")
        r.raise_for_status()
        return (r.json().get("servers") or {}).get(server)

    def wait_ready(self, user: str, server: str, timeout: float = 120) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            model = self.server_model(user, server)
            if model is None:
                raise AssertionError(
                    f"server {user}/{server} is gone:\n{self.hub.tail(30) if self.hub else ''}"
                )
            return model if model.get("ready") else None

        return wait_for(ready, timeout, f"{user}/{server} ready", interval=0.2)

    def stop_server(self, user: str, server: str, timeout: float = 90) -> None:
        r = self.request("DELETE", f"/users/{user}/servers/{server}")
        assert r.status_code in (202, 204), r.text
        wait_for(
            lambda: self.server_model(user, server) is None,
            timeout,
            f"{user}/{server} stopped",
        )

    def through_proxy(self, user: str, server: str) -> requests.Response:
        # No redirects: once the route is gone the hub answers /user/... itself.
        return requests.get(f"{self.public}/user/{user}/{server}/api", timeout=5, allow_redirects=False)

    def answers(self, user: str, server: str) -> bool:
        """The notebook server itself (not the hub's fallback page) answers via the proxy."""
        r = self.through_proxy(user, server)
        return r.status_code == 200 and r.headers.get("Content-Type", "").startswith("application/json")

    def wait_answering(self, user: str, server: str, timeout: float = 30) -> requests.Response:
        def answers() -> requests.Response | None:
            r = self.through_proxy(user, server)
            return r if self.answers(user, server) and "version" in r.json() else None

        return wait_for(
            answers,
            timeout,
            f"{user}/{server} answering through the proxy",
            interval=0.1,
        )


@contextmanager
def running_hub(
    workdir: Path,
    values: dict[str, Any],
    ssh_ca_key: Path,
    name: str,
    users: tuple[str, ...] = USERS,
    **kw: Any,
) -> Iterator[Hub]:
    """A hub of its own (a test module's), its users created; at the end every server of
    theirs is stopped (no process or job outlives it) and the hub with its proxy."""
    hub = Hub(workdir, values, ssh_ca_key, name=name, **kw)
    hub.start()
    try:
        for user in users:
            hub.ensure_user(user)
        yield hub
    finally:
        hub.stop_all_servers(users)
        hub.stop()


class HungLoginHost:
    """A "login node" that accepts TCP and then never speaks SSH (a hung host): the worst
    case for failover. Records, in order, each connection it accepts and each one the
    client gives up on, so a test sees whether (and how) a host was tried."""

    def __init__(self) -> None:
        self._srv = socket.socket()
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(64)
        self.address: tuple[str, int] = ("127.0.0.1", self._srv.getsockname()[1])
        self.events: list[tuple[str, int]] = []  # ("accepted" | "abandoned", connection number)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def accepted(self) -> int:
        return sum(1 for e, _ in self.events if e == "accepted")

    @property
    def abandoned(self) -> int:
        return sum(1 for e, _ in self.events if e == "abandoned")

    def tried_in_one_round(self) -> bool:
        """Every connection came before the client gave up on any: however many parallel
        attempts there were, together they cost one connect timeout."""
        first = next((i for i, (e, _) in enumerate(self.events) if e == "abandoned"), len(self.events))
        return all(e != "accepted" for e, _ in self.events[first:])

    def _serve(self) -> None:
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self._srv, selectors.EVENT_READ, 0)
        while not self._stop.is_set():
            for key, _ in sel.select(timeout=0.2):
                if key.fileobj is self._srv:
                    conn, _ = self._srv.accept()
                    self._held.append(conn)
                    self.events.append(("accepted", len(self._held)))
                    sel.register(conn, selectors.EVENT_READ, len(self._held))
                    continue
                try:
                    data = key.fileobj.recv(4096)  # the client's SSH banner, then EOF
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(key.fileobj)
                    self.events.append(("abandoned", key.data))
        sel.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for c in self._held:
            c.close()
        self._srv.close()


def make_workdir() -> Path:
    # Under /tmp and traversable: the users' sbatch needs the munge socket and slurm.conf.
    d = Path(tempfile.mkdtemp(prefix="hpchub-minihpc-"))
    os.chmod(d, 0o755)
    return d


def test_values(
    sshd: SSHD,
    hosts: list[tuple[str, int]],
    extra_known: list[tuple[str, int]] = (),
    extra_systems: bool = False,
) -> dict:
    """The hub's values for the mini HPC center (system "mini": ssh + slurm levels).

    ``extra_systems`` adds "impatient" (short Slurm start timeout), "tunnel" (SSH tunnel
    mode) and "loginsh" (login shell) on the same login node and cluster, for the
    integration tests.
    """
    values = yaml.safe_load((MINI / "values-test.yaml").read_text())
    ssh = values["systems"]["mini"]["ssh"]
    ssh["hosts"] = [f"{h}:{p}" for h, p in hosts]
    ssh["knownHosts"] = sshd.known_hosts(list(hosts) + list(extra_known))
    values["systems"]["mini"]["singleuser"]["cmd"] = [str(VENV / "bin" / "jupyterhub-singleuser")]
    if not extra_systems:
        return values
    # "impatient": the same login node and cluster with a short Slurm start timeout, for
    # the test that a start timeout cancels the queued job.
    impatient = copy.deepcopy(values["systems"]["mini"])
    impatient["displayName"] = "Impatient HPC"
    impatient["slurm"]["startTimeoutSeconds"] = 8
    impatient["slurm"]["emailOnStart"] = False  # the operator's switch (test_bad_options)
    impatient["levels"] = {"exclusive": impatient["levels"]["exclusive"]}
    values["systems"]["impatient"] = impatient
    # "tunnel": the same login node in SSH tunnel mode (DESIGN flow 6): the proxy reaches
    # notebooks through a port the hub forwards, notebooks reach the hub API through a
    # port forwarded on the login node.
    tunnel = copy.deepcopy(values["systems"]["mini"])
    tunnel["displayName"] = "Tunnel HPC"
    tunnel["ssh"].update(tunnel=True, tunnelBindAddress="127.0.0.1", tunnelConnectHost="127.0.0.1")
    # Notebooks report activity to the hub API every 2s (not 300s): the isolation tests
    # watch where those requests, which carry the notebook's API token, end up.
    tunnel["singleuser"]["environment"]["JUPYTERHUB_ACTIVITY_INTERVAL"] = "2"
    tunnel["levels"] = {k: tunnel["levels"][k] for k in ("shared", "exclusive")}
    values["systems"]["tunnel"] = tunnel
    # "loginsh": the same login node through the user's login shell (ssh.loginShell): bash
    # reads the launcher from stdin line by line, as sites with modules run it.
    loginsh = copy.deepcopy(values["systems"]["mini"])
    loginsh["displayName"] = "Login-shell HPC"
    loginsh["ssh"]["loginShell"] = True
    loginsh["levels"] = {"shared": loginsh["levels"]["shared"]}
    values["systems"]["loginsh"] = loginsh
    return values
