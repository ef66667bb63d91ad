#!/usr/bin/env bash
# First start of the postgres container only (docker-entrypoint-initdb.d):
# the roles and database settings that deploy/local/db-up.sh makes locally.
# 20-pgbouncer-auth.sql (pgbouncer/auth_query.sql) runs after this file.
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v admin_pw="$PD_ADMIN_PASSWORD" -v app_pw="$PD_APP_PASSWORD" -v auth_pw="$PD_AUTH_PASSWORD" \
  -v db="$POSTGRES_DB" <<'SQL'
-- The owner/admin role: DDL, provisioning, moves. Direct connections only.
CREATE ROLE pd_admin LOGIN CREATEDB CREATEROLE PASSWORD :'admin_pw';
-- Dropping a tenant's retired database must end pd_app's idle connections.
GRANT pg_signal_backend TO pd_admin;
-- The application role, through PgBouncer. Its default search_path is empty,
-- so a statement without a bound tenant fails; NOINHERIT: only the tenant
-- role a transaction assumes reaches that tenant's tables (docs/SECURITY.md).
CREATE ROLE pd_app LOGIN NOCREATEDB NOCREATEROLE NOSUPERUSER NOINHERIT PASSWORD :'app_pw';
ALTER ROLE pd_app SET search_path = '';
-- PgBouncer's auth_query role (its function: 20-pgbouncer-auth.sql).
CREATE ROLE pgbouncer_auth LOGIN PASSWORD :'auth_pw';

ALTER DATABASE :"db" OWNER TO pd_admin;
CREATE EXTENSION IF NOT EXISTS ltree;
CREATE EXTENSION IF NOT EXISTS btree_gin;
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO pd_app;
GRANT ALL ON DATABASE :"db" TO pd_admin;
ALTER SCHEMA public OWNER TO pd_admin;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
