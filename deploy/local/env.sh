# shellcheck shell=bash
# Common settings for the local PostgreSQL + PgBouncer environment.
# Sourced by the other scripts in deploy/local; every value can be overridden
# from the environment. One "instance" is one PostgreSQL server with its own
# PgBouncer: "main" for everyday work, more for multi-cluster tests.

set -euo pipefail

PD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PD_INSTANCE="${PD_INSTANCE:-main}"

case "$PD_INSTANCE" in
  main) _pd_default_pg=15432; _pd_default_bouncer=16432 ;;
  b)    _pd_default_pg=15433; _pd_default_bouncer=16433 ;;
  # make chaos / make soak restart this one on purpose; nothing else uses it.
  chaos) _pd_default_pg=15434; _pd_default_bouncer=16434 ;;
  *)    echo "deploy/local: unknown PD_INSTANCE '$PD_INSTANCE' (use main, b or chaos)" >&2; exit 2 ;;
esac
PD_PG_PORT="${PD_PG_PORT:-$_pd_default_pg}"
PD_BOUNCER_PORT="${PD_BOUNCER_PORT:-$_pd_default_bouncer}"

# The data folder lives under /tmp, one per checkout: the postgres user (which
# runs the servers when the caller is root) must reach it, and a CI checkout's
# parent folders may not be readable to that user. .data in the checkout is a
# symlink to it for convenience.
_pd_hash="$(printf '%s' "$PD_ROOT" | sha1sum | cut -c1-10)"
PD_DATA_ROOT="${PD_DATA_ROOT:-/tmp/publicdigit-$(id -u)-$_pd_hash}"
PD_DATA_DIR="$PD_DATA_ROOT/$PD_INSTANCE"
PD_PGDATA="$PD_DATA_DIR/pg"
PD_BOUNCER_DIR="$PD_DATA_DIR/pgbouncer"
PD_RUN_DIR="$PD_DATA_DIR/run"

PD_DB="${PD_DB:-publicdigit}"
PD_TEST_DB="${PD_TEST_DB:-publicdigit_test}"
PD_ADMIN_USER="${PD_ADMIN_USER:-pd_admin}"
PD_ADMIN_PASSWORD="${PD_ADMIN_PASSWORD:-pd_admin_dev}"
PD_APP_USER="${PD_APP_USER:-pd_app}"
PD_APP_PASSWORD="${PD_APP_PASSWORD:-pd_app_dev}"
# PgBouncer's auth_query role (pgbouncer/auth_query.sql); the name is fixed there.
PD_AUTH_USER=pgbouncer_auth
PD_AUTH_PASSWORD="${PD_AUTH_PASSWORD:-pgbouncer_auth_dev}"
# PgBouncer server pool per database; the test database gets a tiny one so that
# tests really share server connections between tenants.
PD_BOUNCER_POOL_SIZE="${PD_BOUNCER_POOL_SIZE:-20}"
PD_BOUNCER_TEST_POOL_SIZE="${PD_BOUNCER_TEST_POOL_SIZE:-2}"
# Lane aliases (<db>_lane<i>) of the platform and test databases, for
# clusters.<name>.lanes up to this many (docs/SCALE.md).
PD_BOUNCER_LANES="${PD_BOUNCER_LANES:-16}"
PD_BOUNCER_INI="${PD_BOUNCER_INI:-pgbouncer-1.18.ini}"
# The development passwords above never reach the programs' configuration:
# db-up.sh writes them to this password file (PostgreSQL's .pgpass format)
# for the local ports, and the Makefile points PGPASSFILE at it (the tests
# find it themselves, see internal/dbtest).
PD_PASSFILE="$PD_DATA_ROOT/pgpass"

pd_log() { printf 'deploy/local[%s]: %s\n' "$PD_INSTANCE" "$*" >&2; }
pd_die() { printf 'deploy/local[%s]: error: %s\n' "$PD_INSTANCE" "$*" >&2; exit 1; }

# pd_pgbin prints the bin folder of the newest installed PostgreSQL, if any.
pd_pgbin() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  return 1
}

# pd_as_server runs a command as the user that owns the servers: postgres when
# we are root (both servers refuse to run as root), ourselves otherwise.
pd_as_server() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# pd_psql runs psql as the bootstrap superuser over the instance's unix socket.
pd_psql() {
  PGOPTIONS="-c client_min_messages=warning" pd_as_server "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PD_RUN_DIR" -p "$PD_PG_PORT" -U postgres "$@"
}

pd_pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
