"""The hub-API relay of tunnel mode: runs on a login node as the notebook's owner.

The hub forwards its API to a Unix socket in the owner's 0700 run directory (sshd's
streamlocal forwarding): only the owner can open it, and nobody can take its place while
the forward is down (after a hub restart or a dropped connection). The notebook, which
speaks HTTP over TCP only, talks to this relay instead: it holds one TCP port for the
notebook's whole lifetime, so no other user on the node can ever bind it, and passes each
connection on to the socket. With the forward down, a connection is closed at once: the
notebook's requests fail and its tokens go nowhere.

The spawner sends this file to the login node and runs it with the node's ``python3``;
it must stay standard library only and run on Python 3.6 (RHEL 8 login nodes).

Exits on TERM/HUP/INT, when the server process in ``--pid-file`` is gone (SSH backend), or
when ``--end-file`` appears (the Slurm job script writes it on exit).
"""

import argparse
import os
import signal
import socket
import sys
import threading
import time

CHUNK = 65536


def pipe(src, dst):
    try:
        while True:
            data = src.recv(CHUNK)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def serve(client, path):
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(path)
    except OSError:
        # The forward is down: refuse rather than wait, the notebook retries later.
        upstream.close()
        client.close()
        return
    back = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
    back.start()
    pipe(client, upstream)
    back.join()
    upstream.close()
    client.close()


def server_gone(pid_file):
    try:
        with open(pid_file) as f:
            pid = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return False  # not started yet
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return True  # the number now belongs to someone else's process
    return False


def watch(args):
    while True:
        if args.pid_file and server_gone(args.pid_file):
            os._exit(0)
        if args.end_file and os.path.exists(args.end_file):
            os._exit(0)
        time.sleep(1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1", help="address the notebook connects to")
    parser.add_argument("--socket", required=True, help="the hub's forwarded Unix socket")
    parser.add_argument("--port-file", required=True, help="where the chosen port is written")
    parser.add_argument("--pid-file", help="exit once the process named in this file is gone")
    parser.add_argument("--end-file", help="exit once this file exists")
    args = parser.parse_args(argv)

    family = socket.AF_INET6 if ":" in args.listen else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    # As every server does. Without SO_REUSEPORT (never set here) no other socket can bind
    # the port while this one listens, whoever asks.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Port 0: the kernel picks a free port while binding, so there is no window in which
    # another user could take it; the relay then keeps it until the notebook is gone.
    listener.bind((args.listen, 0))
    listener.listen(128)
    tmp = args.port_file + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{listener.getsockname()[1]}\n")
    os.rename(tmp, args.port_file)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, lambda *_: os._exit(0))
    threading.Thread(target=watch, args=(args,), daemon=True).start()
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            continue
        threading.Thread(target=serve, args=(client, args.socket), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
