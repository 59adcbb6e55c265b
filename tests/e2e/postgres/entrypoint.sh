#!/bin/sh
# A fresh cluster in /tmp (an emptyDir): role $POSTGRES_USER with $POSTGRES_PASSWORD
# (password auth only, from any address), database $POSTGRES_DB, listening on 5432.
set -eu
bin=/usr/lib/postgresql/15/bin
data=/tmp/pgdata
umask 077
printf '%s\n' "$POSTGRES_PASSWORD" > /tmp/pw
"$bin/initdb" -D "$data" -U "$POSTGRES_USER" --pwfile=/tmp/pw --auth=scram-sha-256 -E UTF8 --locale=C >/dev/null
rm -f /tmp/pw
echo "host all all 0.0.0.0/0 scram-sha-256" >> "$data/pg_hba.conf"
echo "CREATE DATABASE \"$POSTGRES_DB\";" | "$bin/postgres" --single -D "$data" postgres >/dev/null
exec "$bin/postgres" -D "$data" -c listen_addresses='*' -c unix_socket_directories=/tmp
