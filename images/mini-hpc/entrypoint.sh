#!/usr/bin/env bash
# Entry point of the mini HPC center image: `mini-hpc login|ctl|compute`.
# Every role runs munged (Slurm's auth); login runs sshd, ctl slurmctld, compute slurmd.
# Home directories live on the shared volume mounted at /home; they are created on the
# login node at start, owned by each test user.
set -euo pipefail
role="${1:-login}"
mkdir -p /run/munge /var/log/slurm /var/spool/slurmctld /var/spool/slurmd /run/sshd
chown munge:munge /run/munge
runuser -u munge -- /usr/sbin/munged --force

case "$role" in
  login)
    while read -r name uid gid; do
      case "$name" in '' | '#'*) continue ;; esac
      if [ ! -d "/home/$name" ]; then
        mkdir -p "/home/$name" && chown "$uid:$gid" "/home/$name" && chmod 0750 "/home/$name"
      fi
    done </etc/mini-hpc/users.txt
    if [ ! -f /etc/ssh/host/ssh_host_ed25519_key ]; then
      mkdir -p /etc/ssh/host && ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/host/ssh_host_ed25519_key
    fi
    # sshd refuses to start without the CA file; until `make up` installs the hub's CA
    # public key nobody can log in, which is the right default.
    [ -f /etc/ssh/hpchub_ca.pub ] || : >/etc/ssh/hpchub_ca.pub
    # The status account, set up by the operator guide's steps as they are written.
    if [ "${MINI_HPC_STATUS_ACCOUNT:-1}" = 1 ]; then
      (cd /etc/mini-hpc/status-account && sh -e ./status-account.sh)
    fi
    # The extend account (slurm.extend), by the operator guide's steps as they are written.
    if [ "${MINI_HPC_EXTEND_ACCOUNT:-1}" = 1 ]; then
      (cd /etc/mini-hpc/extend-account && sh -e ./extend-account.sh)
    fi
    exec /usr/sbin/sshd -D -e
    ;;
  ctl)
    exec /usr/sbin/slurmctld -D -i
    ;;
  compute)
    # The fake GPUs of gres.conf (/dev/null's device numbers: nothing can be done with them).
    mkdir -p /var/lib/mini-hpc
    for i in 0 1; do
      [ -c "/var/lib/mini-hpc/gpu$i" ] || mknod -m 0666 "/var/lib/mini-hpc/gpu$i" c 1 3
    done
    exec /usr/sbin/slurmd -D -N "${SLURMD_NODENAME:-$(hostname -s)}"
    ;;
  *)
    exec "$@"
    ;;
esac
