-- PgBouncer auth_query support (pgbouncer/pgbouncer-production.ini).
--
-- Run as a superuser in the database that auth_dbname names (publicdigit),
-- with psql: psql -v ON_ERROR_STOP=1 -d publicdigit -f pgbouncer/auth_query.sql
-- then give the role its password:
--   ALTER ROLE pgbouncer_auth LOGIN PASSWORD '…';
-- and put the same password in PgBouncer's auth_file:
--   "pgbouncer_auth" "…"
-- Idempotent: rerunning it changes nothing. deploy/local/db-up.sh runs it in
-- the local databases, and internal/deploycheck logs in through it.

SELECT 'CREATE ROLE pgbouncer_auth NOLOGIN'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgbouncer_auth') \gexec

-- CONNECT to this database (publicdigit revokes it from PUBLIC).
SELECT format('GRANT CONNECT ON DATABASE %I TO pgbouncer_auth', current_database()) \gexec

CREATE SCHEMA IF NOT EXISTS pgbouncer;
REVOKE ALL ON SCHEMA pgbouncer FROM PUBLIC;
GRANT USAGE ON SCHEMA pgbouncer TO pgbouncer_auth;

-- The SCRAM secret of one login role, for PgBouncer only. SECURITY DEFINER
-- (owned by the superuser running this file) so that pgbouncer_auth never
-- reads pg_authid itself; superusers and roles that cannot log in are never
-- returned, so they cannot come in through PgBouncer; a role whose password
-- has expired is refused too.
CREATE OR REPLACE FUNCTION pgbouncer.get_auth(p_usename text)
RETURNS TABLE (usename name, passwd text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT a.rolname, a.rolpassword
    FROM pg_catalog.pg_authid a
   WHERE a.rolname = p_usename
     AND a.rolcanlogin
     AND NOT a.rolsuper
     AND (a.rolvaliduntil IS NULL OR a.rolvaliduntil > now())
$$;

REVOKE ALL ON FUNCTION pgbouncer.get_auth(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgbouncer.get_auth(text) TO pgbouncer_auth;
