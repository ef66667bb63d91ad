#!/usr/bin/env bash
# Starts the local PostgreSQL server and its PgBouncer (one "instance"),
# installing the Debian packages when they are missing, creating the cluster,
# roles and databases on first use. Idempotent: with everything running it
# returns at once.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

ensure_packages() {
  local missing=()
  pd_pgbin >/dev/null || missing+=(postgresql postgresql-contrib)
  command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    pd_die "missing ${missing[*]} and apt-get is not available: install PostgreSQL 15 (with contrib) and PgBouncer with this machine's package manager"
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "deploy/local: missing packages: ${missing[*]}. Run as root:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  pd_log "installing ${missing[*]} with apt-get"
  apt-get update -q >/dev/null || pd_die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
    || pd_die "apt-get install ${missing[*]} failed"
}

prepare_dirs() {
  mkdir -p "$PD_DATA_ROOT" "$PD_DATA_DIR" "$PD_RUN_DIR" "$PD_BOUNCER_DIR"
  chmod 700 "$PD_RUN_DIR" "$PD_BOUNCER_DIR"
  if [ "$(id -u)" = 0 ]; then
    chmod 755 "$PD_DATA_ROOT" "$PD_DATA_DIR"
    chown postgres:postgres "$PD_DATA_DIR" "$PD_RUN_DIR" "$PD_BOUNCER_DIR"
  fi
  ln -sfn "$PD_DATA_ROOT" "$PD_ROOT/.data" 2>/dev/null || true
}

init_cluster() {
  [ -f "$PD_PGDATA/PG_VERSION" ] && return 0
  pd_log "initdb in $PD_PGDATA"
  rm -rf "$PD_PGDATA"
  mkdir -p "$PD_PGDATA"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$PD_PGDATA"
  chmod 700 "$PD_PGDATA"
  pd_as_server "$PGBIN/initdb" -D "$PD_PGDATA" -U postgres -E UTF8 --locale=C \
    --auth-local=trust --auth-host=scram-sha-256 >"$PD_DATA_DIR/initdb.log" 2>&1 \
    || { cat "$PD_DATA_DIR/initdb.log" >&2; pd_die "initdb failed"; }
  # Only the socket owner can use the trusted unix socket (its folder is 0700);
  # everyone else comes over TCP on 127.0.0.1 with a SCRAM password.
  pd_as_server sh -c "cat > '$PD_PGDATA/pg_hba.conf'" <<HBA
local all all trust
host  all all 127.0.0.1/32 scram-sha-256
HBA
  pd_as_server sh -c "echo \"include 'publicdigit.conf'\" >> '$PD_PGDATA/postgresql.conf'"
}

write_server_conf() {
  pd_as_server sh -c "cat > '$PD_PGDATA/publicdigit.conf'" <<CONF
# Written by deploy/local/db-up.sh on every start; edit that script instead.
listen_addresses = '127.0.0.1'
port = $PD_PG_PORT
unix_socket_directories = '$PD_RUN_DIR'
max_connections = 300
shared_buffers = 256MB
max_locks_per_transaction = 256
# Online moves hold the source's write lock across the catalog flip in a
# prepared transaction, so that a crashed mover never unblocks writes to a copy
# that is being retired (see internal/move).
max_prepared_transactions = 32
# Online moves copy a tenant and stream its changes meanwhile with logical
# replication: one temporary slot and one WAL sender per move in progress (a
# second, briefly, for its verification snapshot). wal_level needs a restart,
# which start_postgres does when the setting is pending. A slot that nobody
# reads keeps WAL; max_slot_wal_keep_size caps it (the slot's move then fails)
# rather than fill the disk.
wal_level = logical
max_replication_slots = 64
max_wal_senders = 64
max_slot_wal_keep_size = '4GB'
password_encryption = 'scram-sha-256'
log_line_prefix = '%m [%p] %q%u@%d '
CONF
}

postgres_running() {
  pd_as_server "$PGBIN/pg_ctl" -D "$PD_PGDATA" status >/dev/null 2>&1 || return 1
  # pg_ctl trusts the pid in postmaster.pid; make sure it is really our postmaster.
  local pid
  pid="$(head -1 "$PD_PGDATA/postmaster.pid" 2>/dev/null || true)"
  pd_pid_alive "$pid" && grep -q "postgres" "/proc/$pid/cmdline" 2>/dev/null
}

start_postgres() {
  if postgres_running; then
    pd_as_server "$PGBIN/pg_ctl" -D "$PD_PGDATA" reload >/dev/null
    sleep 0.2
    # A changed setting that only a restart applies (e.g. after an upgrade of
    # this script): restart now rather than run with the old value.
    if [ "$(pd_psql -d postgres -Atc "SELECT count(*) FROM pg_settings WHERE pending_restart")" != 0 ]; then
      pd_log "restarting PostgreSQL to apply changed settings"
      pd_as_server "$PGBIN/pg_ctl" -D "$PD_PGDATA" -m fast -w -t 60 -l "$PD_DATA_DIR/postgresql.log" restart >/dev/null \
        || pd_die "PostgreSQL did not restart (see $PD_DATA_DIR/postgresql.log)"
    fi
    return 0
  fi
  if [ -f "$PD_PGDATA/postmaster.pid" ]; then
    pd_log "removing stale postmaster.pid"
    rm -f "$PD_PGDATA/postmaster.pid"
  fi
  pd_log "starting PostgreSQL on 127.0.0.1:$PD_PG_PORT"
  if ! pd_as_server "$PGBIN/pg_ctl" -D "$PD_PGDATA" -w -t 60 -l "$PD_DATA_DIR/postgresql.log" start >/dev/null; then
    tail -n 20 "$PD_DATA_DIR/postgresql.log" >&2 || true
    pd_die "PostgreSQL did not start (port $PD_PG_PORT busy? see $PD_DATA_DIR/postgresql.log)"
  fi
}

bootstrap_sql() {
  pd_psql -d postgres -v admin="$PD_ADMIN_USER" -v admin_pw="$PD_ADMIN_PASSWORD" \
    -v app="$PD_APP_USER" -v app_pw="$PD_APP_PASSWORD" -v db="$PD_DB" -v testdb="$PD_TEST_DB" <<'SQL'
SELECT format('CREATE ROLE %I', r) FROM unnest(ARRAY[:'admin', :'app']) r
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) \gexec
-- The owner/admin role: DDL, provisioning, moves. Direct connections only.
ALTER ROLE :"admin" LOGIN CREATEDB CREATEROLE PASSWORD :'admin_pw';
-- Dropping a tenant's retired database (or a scratch one) must end the
-- application role's idle server connections to it.
GRANT pg_signal_backend TO :"admin";
-- Online moves read the tenant's changes from a logical replication slot
-- (docs/MOVES.md): slots need the REPLICATION attribute.
ALTER ROLE :"admin" REPLICATION;
-- The application role: reaches PostgreSQL through PgBouncer. Its default
-- search_path is empty, so a statement without a bound tenant fails. It is a
-- member of every tenant role but NOINHERIT: only the role a transaction
-- assumed (SET LOCAL ROLE tenant_<slug>) reaches that tenant's tables.
ALTER ROLE :"app" LOGIN NOCREATEDB NOCREATEROLE NOSUPERUSER NOINHERIT PASSWORD :'app_pw';
ALTER ROLE :"app" SET search_path = '';
SELECT format('CREATE DATABASE %I OWNER %I TEMPLATE template0 ENCODING %L', d, :'admin', 'UTF8')
  FROM unnest(ARRAY[:'db', :'testdb']) d
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = d) \gexec
SQL
  local d
  for d in "$PD_DB" "$PD_TEST_DB"; do
    pd_psql -d "$d" -v db="$d" -v admin="$PD_ADMIN_USER" -v app="$PD_APP_USER" <<'SQL'
CREATE EXTENSION IF NOT EXISTS ltree;
CREATE EXTENSION IF NOT EXISTS btree_gin;
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO :"app";
GRANT ALL ON DATABASE :"db" TO :"admin";
ALTER SCHEMA public OWNER TO :"admin";
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
    # PgBouncer's auth_query (pgbouncer/pgbouncer-production.ini): the role
    # and function of production, so that a PgBouncer can log clients in
    # without a list of their passwords (internal/deploycheck does).
    pd_psql -d "$d" -f "$PD_ROOT/pgbouncer/auth_query.sql"
  done
  pd_psql -d postgres -v auth="$PD_AUTH_USER" -v auth_pw="$PD_AUTH_PASSWORD" <<'SQL'
ALTER ROLE :"auth" LOGIN PASSWORD :'auth_pw';
SQL
}

# write_passfile records this instance's passwords for its ports, then joins
# every instance's into $PD_PASSFILE (0600), which PGPASSFILE names.
write_passfile() {
  local esc_admin esc_app
  esc_admin="$(printf '%s' "$PD_ADMIN_PASSWORD" | sed 's/[\\:]/\\&/g')"
  esc_app="$(printf '%s' "$PD_APP_PASSWORD" | sed 's/[\\:]/\\&/g')"
  (umask 077; cat >"$PD_DATA_DIR/pgpass.part" <<PASS
127.0.0.1:$PD_PG_PORT:*:$PD_ADMIN_USER:$esc_admin
127.0.0.1:$PD_PG_PORT:*:$PD_APP_USER:$esc_app
127.0.0.1:$PD_BOUNCER_PORT:*:$PD_APP_USER:$esc_app
PASS
  cat "$PD_DATA_ROOT"/*/pgpass.part >"$PD_PASSFILE.new" && mv "$PD_PASSFILE.new" "$PD_PASSFILE")
}

bouncer_pid() { head -1 "$PD_BOUNCER_DIR/pgbouncer.pid" 2>/dev/null || true; }

bouncer_running() {
  local pid; pid="$(bouncer_pid)"
  pd_pid_alive "$pid" && grep -q "pgbouncer" "/proc/$pid/cmdline" 2>/dev/null
}

write_bouncer_conf() {
  local tmpl="$PD_ROOT/pgbouncer/$PD_BOUNCER_INI"
  [ -f "$tmpl" ] || pd_die "no PgBouncer config template $tmpl"
  sed -e "s|@BOUNCER_PORT@|$PD_BOUNCER_PORT|g" -e "s|@PG_PORT@|$PD_PG_PORT|g" \
      -e "s|@BOUNCER_DIR@|$PD_BOUNCER_DIR|g" -e "s|@DB@|$PD_DB|g" -e "s|@TEST_DB@|$PD_TEST_DB|g" \
      -e "s|@POOL_SIZE@|$PD_BOUNCER_POOL_SIZE|g" -e "s|@TEST_POOL_SIZE@|$PD_BOUNCER_TEST_POOL_SIZE|g" \
      -e "s|@APP_USER@|$PD_APP_USER|g" \
      "$tmpl" >"$PD_BOUNCER_DIR/pgbouncer.ini.new"
  # Lane aliases: <db>_lane<i>, the platform database's connections shared
  # out, the test database's one server connection each.
  local i per_lane=$(( (PD_BOUNCER_POOL_SIZE + PD_BOUNCER_LANES - 1) / PD_BOUNCER_LANES ))
  : >"$PD_BOUNCER_DIR/lanes.ini.new"
  for ((i = 0; i < PD_BOUNCER_LANES; i++)); do
    printf '%s_lane%d = host=127.0.0.1 port=%s dbname=%s pool_size=%d\n' "$PD_DB" "$i" "$PD_PG_PORT" "$PD_DB" "$per_lane" >>"$PD_BOUNCER_DIR/lanes.ini.new"
    printf '%s_lane%d = host=127.0.0.1 port=%s dbname=%s pool_size=1\n' "$PD_TEST_DB" "$i" "$PD_PG_PORT" "$PD_TEST_DB" >>"$PD_BOUNCER_DIR/lanes.ini.new"
  done
  mv "$PD_BOUNCER_DIR/lanes.ini.new" "$PD_BOUNCER_DIR/lanes.ini"
  # PgBouncer does SCRAM with the server using this password too.
  printf '"%s" "%s"\n' "$PD_APP_USER" "$PD_APP_PASSWORD" >"$PD_BOUNCER_DIR/userlist.txt.new"
  mv "$PD_BOUNCER_DIR/pgbouncer.ini.new" "$PD_BOUNCER_DIR/pgbouncer.ini"
  mv "$PD_BOUNCER_DIR/userlist.txt.new" "$PD_BOUNCER_DIR/userlist.txt"
  chmod 600 "$PD_BOUNCER_DIR/userlist.txt"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$PD_BOUNCER_DIR"/pgbouncer.ini "$PD_BOUNCER_DIR"/userlist.txt "$PD_BOUNCER_DIR"/lanes.ini
  return 0
}

wait_port() {
  local port="$1" i
  for i in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

start_bouncer() {
  local bin; bin="$(command -v pgbouncer || echo /usr/sbin/pgbouncer)"
  if bouncer_running; then
    kill -HUP "$(bouncer_pid)"   # reload the (re)written config
    return 0
  fi
  rm -f "$PD_BOUNCER_DIR/pgbouncer.pid"
  pd_log "starting PgBouncer on 127.0.0.1:$PD_BOUNCER_PORT"
  pd_as_server "$bin" -d "$PD_BOUNCER_DIR/pgbouncer.ini" >/dev/null 2>"$PD_BOUNCER_DIR/start.err" || {
    cat "$PD_BOUNCER_DIR/start.err" >&2; tail -n 20 "$PD_BOUNCER_DIR/pgbouncer.log" >&2 2>/dev/null || true
    pd_die "PgBouncer did not start"
  }
  wait_port "$PD_BOUNCER_PORT" || { tail -n 20 "$PD_BOUNCER_DIR/pgbouncer.log" >&2 || true; pd_die "PgBouncer is not listening on $PD_BOUNCER_PORT"; }
}

ensure_packages
PGBIN="$(pd_pgbin)" || pd_die "no PostgreSQL server binaries found under /usr/lib/postgresql"
prepare_dirs
init_cluster
write_server_conf
start_postgres
bootstrap_sql
write_passfile
write_bouncer_conf
start_bouncer
pd_log "ready: PostgreSQL 127.0.0.1:$PD_PG_PORT (direct, $PD_ADMIN_USER), PgBouncer 127.0.0.1:$PD_BOUNCER_PORT ($PD_APP_USER), data in $PD_DATA_DIR"
