#!/usr/bin/env bash
# hikkoshi lab: the official postgres image's docker-entrypoint.sh, in short. As root it makes
# PGDATA and the socket directory the postgres user's and runs itself again as that user; an
# empty PGDATA is initialised from POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB /
# POSTGRES_HOST_AUTH_METHOD / POSTGRES_INITDB_ARGS and /docker-entrypoint-initdb.d/*.{sh,sql}.
set -Eeo pipefail

: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
export PGDATA POSTGRES_USER POSTGRES_DB

if [ "${1:0:1}" = '-' ]; then
  set -- postgres "$@"
fi

if [ "$1" = 'postgres' ] && [ "$(id -u)" = '0' ]; then
  mkdir -p "$PGDATA"
  chmod 00700 "$PGDATA" || :
  find "$PGDATA" \! -user postgres -exec chown postgres '{}' +
  mkdir -p /var/run/postgresql
  chown postgres:postgres /var/run/postgresql
  chmod 03775 /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [ "$1" = 'postgres' ]; then
  # The official 18+ images keep PGDATA below /var/lib/postgresql (/var/lib/postgresql/18/docker)
  # and refuse to start next to data left in the old place.
  if [ "$PGDATA" != /var/lib/postgresql/data ] && [ -s /var/lib/postgresql/data/PG_VERSION ]; then
    cat >&2 <<MSG
Error: in 18+, these Docker images are configured to store database data in a
       format which is compatible with "pg_ctlcluster" (specifically, using
       major-version-specific directory names).  ...
       Counter to that, there appears to be PostgreSQL data in:
         /var/lib/postgresql/data (unused mount/volume)
       This is usually the result of upgrading the Docker image without upgrading
       the underlying database.  The suggested container configuration for 18+ is
       to place a single mount at /var/lib/postgresql.
MSG
    exit 1
  fi
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "${POSTGRES_HOST_AUTH_METHOD:-}" != 'trust' ]; then
      cat >&2 <<'MSG'
Error: Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD to a non-empty value for the
       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".

       You may also use "POSTGRES_HOST_AUTH_METHOD=trust" to allow all
       connections without a password. This is *not* recommended.
MSG
      exit 1
    fi
    pwfile=()
    if [ -n "${POSTGRES_PASSWORD:-}" ]; then
      pwfile=(--pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD"))
    fi
    # shellcheck disable=SC2086
    initdb --username="$POSTGRES_USER" "${pwfile[@]}" -D "$PGDATA" --encoding=UTF8 --locale=C.UTF-8 \
      ${POSTGRES_INITDB_ARGS:-} >/dev/null
    printf '\nhost all all all %s\n' "${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >>"$PGDATA/pg_hba.conf"
    printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start >/dev/null
    if [ "$POSTGRES_DB" != 'postgres' ]; then
      psql -X -q -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres -v db="$POSTGRES_DB" \
        <<<'CREATE DATABASE :"db";'
    fi
    for f in /docker-entrypoint-initdb.d/*; do
      case $f in
        *.sh) echo "running $f"; . "$f" ;;
        *.sql) echo "running $f"; psql -X -q -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -f "$f" ;;
        *) ;;
      esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo 'PostgreSQL init process complete; ready for start up.'
  fi
fi

exec "$@"
