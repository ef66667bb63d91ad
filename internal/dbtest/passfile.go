package dbtest

import (
	"net/url"
	"os"
	"path/filepath"
	"sync"

	"github.com/jackc/pgpassfile"

	"github.com/publicdigit/publicdigit/internal/pgpass"
)

// The built-in configuration carries no password; the local servers'
// development passwords are in the password file that deploy/local/db-up.sh
// writes (.data/pgpass in the checkout). The Makefile sets PGPASSFILE to
// it, and pgx reads it itself; a plain `go test` without that variable gets
// the passwords here, put into the test configuration's URLs.
var (
	passfileOnce sync.Once
	passfile     *pgpassfile.Passfile
)

// localPassfile reads PGPASSFILE, else .data/pgpass of the checkout
// (found from the working directory up to go.mod); nil when there is none.
func localPassfile() *pgpassfile.Passfile {
	passfileOnce.Do(func() {
		path := os.Getenv("PGPASSFILE")
		if path == "" {
			path = checkoutFile(".data", "pgpass")
		}
		if path == "" {
			return
		}
		if pf, err := pgpassfile.ReadPassfile(path); err == nil {
			passfile = pf
		}
	})
	return passfile
}

// checkoutFile is the path of a file in the checkout's root (the folder of
// go.mod above the working directory), or "" when it does not exist.
func checkoutFile(elem ...string) string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(append([]string{dir}, elem...)...)
			if _, err := os.Stat(p); err == nil {
				return p
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// withLocalPassword returns raw with the password the local password file
// has for its host, port, database and user, if raw has none.
func withLocalPassword(raw string) string { return pgpass.Fill(raw, localPassfile()) }

// LocalURL is raw pointed at database db, with the local password if raw
// has none (for examples, which have no testing.TB); raw unchanged if it
// does not parse.
func LocalURL(raw, db string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Path = "/" + db
	return withLocalPassword(u.String())
}
