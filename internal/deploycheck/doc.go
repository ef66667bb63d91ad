// Package deploycheck holds the tests of what the repository ships for
// operators, checked as far as this machine allows: the PgBouncer production
// configuration started on a real PgBouncer, the compose file through
// `docker-compose config`, every manifest, unit and config file parsed, the
// commands and flags they name run against the real binaries' --help, and the
// Grafana dashboard's series against a running server's /metrics. It has no
// code of its own beyond the helpers its tests share.
package deploycheck

import (
	"path/filepath"
	"runtime"
)

// Root is the repository's root folder.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Path is a path inside the repository.
func Path(elem ...string) string {
	return filepath.Join(append([]string{Root()}, elem...)...)
}
