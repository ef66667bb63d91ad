#!/usr/bin/env bash
# Restarts one server of an instance, for fault injection (make chaos):
#   db-restart.sh postgres [seconds]   fast shutdown (pg_ctl -m fast), down for
#                                      the given seconds (default 0), start
#   db-restart.sh pgbouncer [seconds]  immediate shutdown (SIGTERM), down for
#                                      the given seconds, start
# Either must already be running (make db-up); it runs again when this ends,
# also when the restart fails halfway (db-up.sh starts whatever is missing).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

what="${1:-}"
down="${2:-0}"
PGBIN="$(pd_pgbin)" || pd_die "no PostgreSQL server binaries found under /usr/lib/postgresql"

wait_port() {
  local i
  for i in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

case "$what" in
  postgres)
    [ -f "$PD_PGDATA/postmaster.pid" ] || pd_die "PostgreSQL is not running (make db-up)"
    pd_as_server "$PGBIN/pg_ctl" -D "$PD_PGDATA" -m fast -w -t 60 stop >/dev/null
    sleep "$down"
    pd_as_server "$PGBIN/pg_ctl" -D "$PD_PGDATA" -w -t 60 -l "$PD_DATA_DIR/postgresql.log" start >/dev/null \
      || pd_die "PostgreSQL did not start again (see $PD_DATA_DIR/postgresql.log)"
    ;;
  pgbouncer)
    pidfile="$PD_BOUNCER_DIR/pgbouncer.pid"
    pid="$(head -1 "$pidfile" 2>/dev/null || true)"
    pd_pid_alive "$pid" && grep -q pgbouncer "/proc/$pid/cmdline" 2>/dev/null || pd_die "PgBouncer is not running (make db-up)"
    kill -TERM "$pid"
    for _ in $(seq 1 100); do pd_pid_alive "$pid" || break; sleep 0.05; done
    pd_pid_alive "$pid" && kill -KILL "$pid"
    rm -f "$pidfile"
    sleep "$down"
    bin="$(command -v pgbouncer || echo /usr/sbin/pgbouncer)"
    pd_as_server "$bin" -d "$PD_BOUNCER_DIR/pgbouncer.ini" >/dev/null 2>"$PD_BOUNCER_DIR/start.err" \
      || { cat "$PD_BOUNCER_DIR/start.err" >&2; pd_die "PgBouncer did not start again"; }
    wait_port "$PD_BOUNCER_PORT" || pd_die "PgBouncer is not listening on $PD_BOUNCER_PORT again"
    ;;
  *)
    echo "usage: $0 postgres|pgbouncer [seconds down]" >&2
    exit 2
    ;;
esac
