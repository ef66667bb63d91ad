// Package chaos breaks the platform on purpose while clients use it, and
// checks what the clients saw: a relay that stalls or cuts the network to
// the databases (Proxy), the faults of a local PostgreSQL and PgBouncer
// (restart, backends terminated), the server killed and started again, and a
// workload of writers and readers over many tenants whose every answer is
// recorded and whose acknowledged writes are checked afterwards
// (make chaos, make soak, cmd/pdchaos).
package chaos
