// Package pgpass puts the passwords of a PostgreSQL password file into
// connection URLs: the built-in configuration carries none, and tools that
// hand a URL to another program (a private PgBouncer, a test's own
// connections) need the password in it.
package pgpass

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgpassfile"
)

// Fill returns raw with the password that pf has for its host, port,
// database and user, if raw has none; raw unchanged when it does not
// parse, names no user, has a password already, or pf has none for it.
func Fill(raw string, pf *pgpassfile.Passfile) string {
	if pf == nil {
		return raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		return raw
	}
	pw := pf.FindPassword(u.Hostname(), u.Port(), strings.TrimPrefix(u.Path, "/"), u.User.Username())
	if pw == "" {
		return raw
	}
	u.User = url.UserPassword(u.User.Username(), pw)
	return u.String()
}

// FillFromEnv is Fill with the password file libpq would read: $PGPASSFILE,
// else ~/.pgpass (raw unchanged when there is none).
func FillFromEnv(raw string) string {
	path := os.Getenv("PGPASSFILE")
	if path == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return raw
		}
		path = filepath.Join(home, ".pgpass")
	}
	pf, err := pgpassfile.ReadPassfile(path)
	if err != nil {
		return raw
	}
	return Fill(raw, pf)
}
