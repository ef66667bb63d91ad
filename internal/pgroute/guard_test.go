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
		`SELECT E'it\'s; fine', e'\\', E'\\\'; SET x'`,
		`SELECT 'a\', 'b'`,           // no escapes in a standard string
		`SELECT "SET_CONFIG" FROM t`, // a quoted name is exact: not the function
		`SELECT 1 -- comment\n`,
		`SELECT x'1F', b'101', n'text'`, // bit and national strings
		`SELECT some_e'x' FROM t`,       // not an escape string (invalid SQL, but one statement)
		`SELECT "set_""config" FROM t`,  // the name set_"config, not the function
		"SELECT 1 --x\rFROM t",          // one statement: the comment ends at \r
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
		// A "--" comment ends at a carriage return too.
		"SELECT 1 --x\r; SET ROLE tenant_b",
		// E'…' takes backslash escapes: \' does not end it.
		`SELECT E'\''; SET ROLE tenant_b; --'`,
		`SELECT e'\\\''; SET ROLE tenant_b; --'`,
		// A quoted name is still the function or the settings view.
		`SELECT "set_config"('role', 'tenant_b', false)`,
		`SELECT pg_catalog."set_config"('search_path', 'tenant_b', false)`,
		`SELECT "pg_advisory_lock"(1)`,
		`UPDATE pg_settings SET setting = 'tenant_b' WHERE name = 'search_path'`,
		`UPDATE pg_catalog."pg_settings" SET setting = 'x' WHERE name = 'role'`,
		// Unicode escapes could spell any name.
		`SELECT U&"\0073et_config"('role', 'x', false)`,
		`SELECT u&'\0027'`,
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
