#!/bin/sh
# Stand-in for the official PostgreSQL image's entrypoint: initialise PGDATA once, then run the server.
set -eu
bin=$(echo /usr/lib/postgresql/*/bin)
if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
  POSTGRES_PASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
fi
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
mkdir -p "$PGDATA" /run/postgresql
chown -R postgres:postgres "$PGDATA" /run/postgresql
chmod 0700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE is required}" > "$pwfile"
  chown postgres "$pwfile"
  su postgres -s /bin/sh -c "$bin/initdb --username='$user' --pwfile='$pwfile' --auth=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 -D '$PGDATA'" >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  su postgres -s /bin/sh -c "$bin/postgres -D '$PGDATA' -c listen_addresses='' -k /run/postgresql" &
  until su postgres -s /bin/sh -c "pg_isready -q -h /run/postgresql"; do sleep 0.2; done
  if [ "$db" != postgres ]; then
    PGPASSWORD=$POSTGRES_PASSWORD su postgres -s /bin/sh -c \
      "psql -q -h /run/postgresql -U '$user' -d postgres -c 'CREATE DATABASE \"$db\"'"
  fi
  su postgres -s /bin/sh -c "$bin/pg_ctl -D '$PGDATA' -m fast -w stop" >/dev/null
fi
if [ "${1:-postgres}" = postgres ]; then
  shift $(( $# > 0 ? 1 : 0 ))
  exec su postgres -s /bin/sh -c "exec $bin/postgres -D '$PGDATA' -c listen_addresses='*' $*"
fi
exec "$@"
