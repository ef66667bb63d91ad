package bench

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/publicdigit/publicdigit/internal/tenant"
)

// scaleSeed is what one tenant holds for the API measures: members, each with an issued card.
type scaleSeed struct {
	t       tenant.Tenant
	members []uuid.UUID
	cards   []uuid.UUID
}

// seed gives every tenant without one -members members with a card each
// (recorded in pdbench.seeds, so a resumed run knows them) and returns
// the seeds of all tenants in slug order. Each connection seeds 500
// tenants at most: a backend keeps catalog entries of every table it wrote.
func (s *scaleRun) seed(ctx context.Context) ([]scaleSeed, error) {
	ts, err := s.tenants(ctx)
	if err != nil {
		return nil, err
	}
	have, err := s.seeds(ctx)
	if err != nil {
		return nil, err
	}
	var todo []tenant.Tenant
	for _, t := range ts {
		if t.Status == tenant.StatusActive && have[t.Slug.String()] == nil {
			todo = append(todo, t)
		}
	}
	for len(todo) > 0 {
		k := min(len(todo), 500)
		if err := s.seedSome(ctx, todo[:k]); err != nil {
			return nil, err
		}
		todo = todo[k:]
	}
	if have, err = s.seeds(ctx); err != nil {
		return nil, err
	}
	out := make([]scaleSeed, 0, len(ts))
	for _, t := range ts {
		if sd := have[t.Slug.String()]; sd != nil {
			sd.t = t
			out = append(out, *sd)
		}
	}
	return out, nil
}

func (s *scaleRun) seeds(ctx context.Context) (map[string]*scaleSeed, error) {
	rows, err := s.admin.QueryContext(ctx, `SELECT slug, array_to_string(members, ','), array_to_string(cards, ',') FROM pdbench.seeds`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]*scaleSeed{}
	for rows.Next() {
		var slug string
		var ms, cs string
		if err := rows.Scan(&slug, &ms, &cs); err != nil {
			return nil, err
		}
		sd := &scaleSeed{}
		for _, m := range strings.Split(ms, ",") {
			sd.members = append(sd.members, uuid.MustParse(m))
		}
		for _, c := range strings.Split(cs, ",") {
			sd.cards = append(sd.cards, uuid.MustParse(c))
		}
		out[slug] = sd
	}
	return out, rows.Err()
}

// seedSome seeds ts on one fresh connection, 50 tenants per message.
func (s *scaleRun) seedSome(ctx context.Context, ts []tenant.Tenant) error {
	conn, err := pgx.Connect(ctx, s.cfg.Admin.URL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for len(ts) > 0 {
		k := min(len(ts), 50)
		var b strings.Builder
		for _, t := range ts[:k] {
			s.seedSQL(&b, t)
		}
		if _, err := conn.Exec(ctx, b.String(), pgx.QueryExecModeSimpleProtocol); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		ts = ts[k:]
	}
	return nil
}

// seedSQL writes one tenant's seed statements: every value is a uuid made
// here or a constant, every name a quoted identifier.
func (s *scaleRun) seedSQL(b *strings.Builder, t tenant.Tenant) {
	schema := pgx.Identifier{t.Schema}.Sanitize()
	var ms, cs []string
	for i := 0; i < s.f.members; i++ {
		ms = append(ms, uuid.NewString())
		cs = append(cs, uuid.NewString())
	}
	fmt.Fprintf(b, "INSERT INTO %s.members (id, tenant_id, full_name, email) VALUES ", schema)
	for i, m := range ms {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(b, "('%s', '%s', 'Member %d', 'm%d@example.test')", m, t.ID, i, i)
	}
	fmt.Fprintf(b, ";\nINSERT INTO %s.digital_cards (id, tenant_id, member_id, qr_code, status, expires_at) VALUES ", schema)
	for i, c := range cs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(b, "('%s', '%s', '%s', 'PD1-SEED-%s', 'issued', now() + interval '1 year')", c, t.ID, ms[i], c)
	}
	fmt.Fprintf(b, ";\nINSERT INTO pdbench.seeds VALUES ('%s', '{%s}', '{%s}');\n",
		t.Slug.String(), strings.Join(ms, ","), strings.Join(cs, ","))
}
