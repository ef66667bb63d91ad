package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/publicdigit/publicdigit/internal/pgroute"
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
// provisioning does). Medians of 5 (of 200 for the steady one). Then the
// same first SET LOCAL ROLE, before and after a role change, for a login
// role granted only the tenant roles of one lane (lane 0 of -lanes): what
// "one application role per lane" would cost (laneRoles).
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
	laneFirsts, laneAfters, laneRoles, err := s.laneRoles(ctx, ts, setRole)
	if err != nil {
		return fmt.Errorf("lane role: %w", err)
	}
	for _, m := range []struct {
		name string
		xs   []float64
	}{
		{"role_lane_members", []float64{float64(laneRoles)}},
		{"role_lane_first_set_role_ms", laneFirsts},
		{"role_lane_set_role_after_change_ms", laneAfters},
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

// laneRoles measures, on 5 new direct connections of a login role granted
// only the tenant roles of lane 0 (pgroute.LaneOf), the first SET LOCAL ROLE
// to one of them, and the first after a role was created and dropped
// elsewhere; it returns those and how many roles the lane role was granted.
// The role (the probe role's name with "_lane") is made here, with a random
// password, and dropped at the end (cleanup drops it too).
func (s *scaleRun) laneRoles(ctx context.Context, ts []tenant.Tenant,
	setRole func(*pgx.Conn, tenant.Tenant) (time.Duration, error)) (firsts, afters []float64, members int, err error) {
	name := s.f.probeRole() + "_lane"
	ident := pgx.Identifier{name}.Sanitize()
	var lane []tenant.Tenant
	var roles []string
	for _, t := range ts {
		if pgroute.LaneOf(t.Slug, s.f.lanes) == 0 {
			lane = append(lane, t)
			roles = append(roles, pgx.Identifier{t.Slug.RoleName()}.Sanitize())
		}
	}
	if len(lane) == 0 {
		return nil, nil, 0, fmt.Errorf("no tenant on lane 0 of %d", s.f.lanes)
	}
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return nil, nil, 0, err
	}
	password := hex.EncodeToString(secret)
	var create string
	if err := s.server.QueryRowContext(ctx, `SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', $1::text, $2::text)`, name, password).Scan(&create); err != nil {
		return nil, nil, 0, err
	}
	if _, err := s.server.ExecContext(ctx, "DROP ROLE IF EXISTS "+ident); err != nil {
		return nil, nil, 0, err
	}
	if _, err := s.server.ExecContext(ctx, create); err != nil {
		return nil, nil, 0, err
	}
	defer func() {
		drop := "REVOKE CONNECT ON DATABASE " + pgx.Identifier{s.f.db}.Sanitize() + " FROM " + ident + "; DROP ROLE " + ident
		if _, derr := s.server.ExecContext(context.WithoutCancel(ctx), drop); derr != nil && err == nil {
			err = derr
		}
	}()
	if _, err := s.server.ExecContext(ctx, "GRANT CONNECT ON DATABASE "+pgx.Identifier{s.f.db}.Sanitize()+" TO "+ident); err != nil {
		return nil, nil, 0, err
	}
	for i := 0; i < len(roles); i += 500 {
		if _, err := s.server.ExecContext(ctx, "GRANT "+strings.Join(roles[i:min(i+500, len(roles))], ", ")+" TO "+ident); err != nil {
			return nil, nil, 0, err
		}
	}
	direct, err := withDatabase(s.cl.URL, s.f.db, DirectPGPort)
	if err != nil {
		return nil, nil, 0, err
	}
	cfg, err := pgx.ParseConfig(direct)
	if err != nil {
		return nil, nil, 0, err
	}
	cfg.User, cfg.Password = name, password
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	for i := 0; i < 5; i++ {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return nil, nil, 0, err
		}
		d, err := setRole(conn, lane[(i*7919)%len(lane)])
		if err == nil {
			firsts = append(firsts, provMS(d))
			probe := pgx.Identifier{s.f.probeRole()}.Sanitize()
			if _, err = s.server.ExecContext(ctx, "CREATE ROLE "+probe+" NOLOGIN; DROP ROLE "+probe); err == nil {
				d, err = setRole(conn, lane[(i*31)%len(lane)])
				afters = append(afters, provMS(d))
			}
		}
		conn.Close(ctx)
		if err != nil {
			return nil, nil, 0, err
		}
	}
	return firsts, afters, len(lane), nil
}

// userOf is the user name of a connection URL.
func userOf(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("url: %w", err)
	}
	return u.User.Username(), nil
}
