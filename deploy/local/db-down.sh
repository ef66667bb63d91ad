#!/usr/bin/env bash
# Stops exactly the PgBouncer and PostgreSQL processes named in this
# instance's pid files. Does nothing when they are not running.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

pidfile="$PD_BOUNCER_DIR/pgbouncer.pid"
pid="$(head -1 "$pidfile" 2>/dev/null || true)"
if pd_pid_alive "$pid" && grep -q pgbouncer "/proc/$pid/cmdline" 2>/dev/null; then
  pd_log "stopping PgBouncer (pid $pid)"
  kill -INT "$pid"
  for _ in $(seq 1 100); do pd_pid_alive "$pid" || break; sleep 0.1; done
  pd_pid_alive "$pid" && kill -KILL "$pid"
fi
rm -f "$pidfile"

if PGBIN="$(pd_pgbin)" && [ -f "$PD_PGDATA/postmaster.pid" ]; then
  pid="$(head -1 "$PD_PGDATA/postmaster.pid")"
  if pd_pid_alive "$pid" && grep -q postgres "/proc/$pid/cmdline" 2>/dev/null; then
    pd_log "stopping PostgreSQL (pid $pid)"
    pd_as_server "$PGBIN/pg_ctl" -D "$PD_PGDATA" -m fast -w -t 60 stop >/dev/null
  else
    rm -f "$PD_PGDATA/postmaster.pid"
  fi
fi
