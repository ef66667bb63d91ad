package bench

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/publicdigit/publicdigit/internal/tenant"
)

// The probe role (scaleFlags.probeRole) is created and dropped to change
// pg_authid, which makes every backend recompute the application role's
// memberships.

// rolesStage measures what N tenant roles granted to the application role
// cost it, on direct connections (PgBouncer would hide the connection
// start): connecting; the first SET LOCAL ROLE of a new connection; SET
// LOCAL ROLE on a connection that has set roles before; and the first SET
// LOCAL ROLE after a role was created and dropped elsewhere (which any
// provisioning does). Medians of 5 (of 200 for the steady one).
func (s *scaleRun) rolesStage(ctx context.Context, n int) error {
	ts, err := s.tenants(ctx)
	if err != nil {
		return err
	}
	if len(ts) == 0 {
		return fmt.Errorf("no tenants")
	}
	direct, err := withDatabase(s.cl.URL, s.f.db, DirectPGPort)
	if err != nil {
		return err
	}
	cfg, err := pgx.ParseConfig(direct)
	if err != nil {
		return err
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	setRole := func(conn *pgx.Conn, t tenant.Tenant) (time.Duration, error) {
		start := time.Now()
		_, err := conn.Exec(ctx, "BEGIN; SET LOCAL ROLE "+pgx.Identifier{t.Slug.RoleName()}.Sanitize()+"; COMMIT")
		return time.Since(start), err
	}
	var connects, firsts, afters, steadies []float64
	for i := 0; i < 5; i++ {
		start := time.Now()
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return err
		}
		connects = append(connects, provMS(time.Since(start)))
		d, err := setRole(conn, ts[(i*7919)%len(ts)])
		if err != nil {
			conn.Close(ctx)
			return err
		}
		firsts = append(firsts, provMS(d))
		if i == 0 {
			for k := 0; k < 200; k++ {
				d, err := setRole(conn, ts[(k*104729)%len(ts)])
				if err != nil {
					conn.Close(ctx)
					return err
				}
				steadies = append(steadies, provMS(d))
			}
		}
		// A role change elsewhere, then the same connection again.
		probe := pgx.Identifier{s.f.probeRole()}.Sanitize()
		if _, err := s.server.ExecContext(ctx, "CREATE ROLE "+probe+" NOLOGIN"); err != nil {
			conn.Close(ctx)
			return err
		}
		if _, err := s.server.ExecContext(ctx, "DROP ROLE "+probe); err != nil {
			conn.Close(ctx)
			return err
		}
		d, err = setRole(conn, ts[(i*31)%len(ts)])
		conn.Close(ctx)
		if err != nil {
			return err
		}
		afters = append(afters, provMS(d))
	}
	for _, m := range []struct {
		name string
		xs   []float64
	}{
		{"role_connect_ms", connects},
		{"role_first_set_role_ms", firsts},
		{"role_set_role_ms", steadies},
		{"role_set_role_after_change_ms", afters},
	} {
		if err := s.res.put(ctx, m.name, n, median(m.xs)); err != nil {
			return err
		}
	}
	return nil
}

// userOf is the user name of a connection URL.
func userOf(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("url: %w", err)
	}
	return u.User.Username(), nil
}
