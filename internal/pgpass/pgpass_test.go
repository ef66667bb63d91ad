package pgpass_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgpassfile"

	"github.com/publicdigit/publicdigit/internal/pgpass"
)

func TestFill(t *testing.T) {
	pf, err := pgpassfile.ParsePassfile(strings.NewReader("127.0.0.1:15432:db:app:s3cret\n*:*:*:admin:any\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ raw, want string }{
		{"postgres://app@127.0.0.1:15432/db", "postgres://app:s3cret@127.0.0.1:15432/db"},
		{"postgres://app@127.0.0.1:15432/other", "postgres://app@127.0.0.1:15432/other"}, // no entry
		{"postgres://app:mine@127.0.0.1:15432/db", "postgres://app:mine@127.0.0.1:15432/db"},
		{"postgres://admin@h:1/x?sslmode=disable", "postgres://admin:any@h:1/x?sslmode=disable"},
		{"postgres://127.0.0.1:15432/db", "postgres://127.0.0.1:15432/db"}, // no user
		{"::not a url", "::not a url"},
	} {
		if got := pgpass.Fill(c.raw, pf); got != c.want {
			t.Errorf("Fill(%q) = %q, want %q", c.raw, got, c.want)
		}
	}
	if got := pgpass.Fill("postgres://app@127.0.0.1:15432/db", nil); got != "postgres://app@127.0.0.1:15432/db" {
		t.Errorf("Fill with no file = %q", got)
	}
}

func TestFillFromEnvReadsPGPASSFILE(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pgpass")
	if err := os.WriteFile(path, []byte("127.0.0.1:16432:*:app:fromfile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGPASSFILE", path)
	if got, want := pgpass.FillFromEnv("postgres://app@127.0.0.1:16432/db"), "postgres://app:fromfile@127.0.0.1:16432/db"; got != want {
		t.Errorf("FillFromEnv = %q, want %q", got, want)
	}
	t.Setenv("PGPASSFILE", filepath.Join(t.TempDir(), "missing"))
	if got := pgpass.FillFromEnv("postgres://app@127.0.0.1:16432/db"); got != "postgres://app@127.0.0.1:16432/db" {
		t.Errorf("FillFromEnv without a file = %q", got)
	}
}
