package pgroute

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestGuardAllowsDML(t *testing.T) {
	for _, sql := range []string{
		`SELECT 1`,
		`  select * from members where id = $1`,
		`WITH x AS (SELECT 1) SELECT * FROM x`,
		`INSERT INTO members (full_name) VALUES ('a; SET search_path = x')`,
		`UPDATE members SET full_name = $1 WHERE id = $2 RETURNING id`,
		`DELETE FROM members WHERE id = $1`,
		`SELECT 'it''s; fine', "odd;name" FROM t`,
		`SELECT $$ ; SET x $$, $tag$ ; LISTEN y $tag$`,
		`SELECT 1 -- trailing; comment SET x`,
		`SELECT /* nested /* ; */ SET */ 1`,
		`SELECT 1;`,
		`VALUES (1), (2)`,
		`LOCK TABLE members IN SHARE MODE`,
		`SELECT set_configuration FROM t`, // a column, not the function
		`SELECT E'it\'s; fine', e'a\\', 'b\' FROM t`,
		`SELECT "Set_Configuration" FROM t`,
		"SELECT 1 -- a comment\r\n",
		`SELECT U&'d\0061t\+000061' FROM t`,
	} {
		assert.NoError(t, lexCheck(sql), sql)
	}
}

func TestGuardRefusesSessionStatements(t *testing.T) {
	for _, sql := range []string{
		`SET search_path = tenant_b`,
		`set search_path to tenant_b`,
		`SET LOCAL search_path = tenant_b`,
		`SET ROLE tenant_b`,
		`SET SESSION AUTHORIZATION x`,
		`RESET ALL`,
		`DISCARD ALL`,
		`PREPARE p AS SELECT 1`,
		`EXECUTE p`,
		`DEALLOCATE ALL`,
		`LISTEN ch`,
		`UNLISTEN *`,
		`CREATE TEMP TABLE t (x int)`,
		`CREATE TABLE t (x int)`,
		`DROP TABLE members`,
		`BEGIN`,
		`COMMIT`,
		`SELECT set_config('search_path', 'tenant_b', false)`,
		`SELECT pg_catalog.set_config('role', 'x', false)`,
		`SELECT pg_advisory_lock(1)`,
		`SELECT 1; SET search_path = tenant_b`,
		`SELECT 1; SELECT 2`,
		`/* comment */ SET x = 1`,
		`-- hi
		 SET x = 1`,
		``,
		`   `,
		`SELECT 'unterminated`,
		`SELECT $$unterminated`,
		`COPY members TO STDOUT`,
		`DO $$ BEGIN PERFORM 1; END $$`,
		// PostgreSQL ends a -- comment at \r too.
		"SELECT 1 -- a comment\r; SET search_path = tenant_b",
		// In an escape string \' is a quote inside it: PostgreSQL sees a
		// second statement, and a comment hiding the last quote.
		`SELECT E'\''; SET search_path = tenant_b; -- '`,
		`SELECT e'\''; SET search_path = tenant_b; -- '`,
		// A quoted name is the same function.
		`SELECT "set_config"('role', 'tenant_b', false)`,
		`SELECT pg_catalog."set_config"('role', 'tenant_b', false)`,
		`SELECT "pg_advisory_lock"(1)`,
		`SELECT U&"set\005fconfig"('role', 'tenant_b', false)`,
	} {
		assert.Error(t, lexCheck(sql), sql)
	}
}

func FuzzGuard(f *testing.F) {
	for _, s := range []string{"SELECT 1", "SET x=1", "SELECT ';'", "SELECT $$;$$", "/*/**/*/SELECT 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_ = lexCheck(s) // must not panic or hang
	})
}
