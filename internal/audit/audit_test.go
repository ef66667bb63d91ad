package audit_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/audit"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/requestid"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// The application role writes and reads the trail, never changes it.
func TestAppRoleCannotChangeTheTrail(t *testing.T) {
	t.Parallel()
	dbtest.Landlord(t)
	app := dbtest.AppPool(t, dbtest.Bouncer, 2)
	ctx := context.Background()
	slug := dbtest.Name("aud")
	require.NoError(t, audit.RecordTx(ctx, app, audit.Event{Action: audit.TenantSuspend, Tenant: slug}))
	t.Cleanup(func() { deleteEvents(t, slug) })
	var n int
	require.NoError(t, app.QueryRow(ctx, `SELECT count(*) FROM landlord.audit_events WHERE tenant = $1`, slug).Scan(&n))
	assert.Equal(t, 1, n)
	for _, q := range []string{
		`UPDATE landlord.audit_events SET outcome = 'ok' WHERE tenant = $1`,
		`DELETE FROM landlord.audit_events WHERE tenant = $1`,
		`TRUNCATE landlord.audit_events`,
		`INSERT INTO landlord.audit_events (id, actor, action, outcome) VALUES (1, 'x', 'tenant.create', 'ok')`,
	} {
		var args []any
		if q[0] != 'T' && q[0] != 'I' {
			args = []any{slug}
		}
		_, err := app.Exec(ctx, q, args...)
		var pe *pgconn.PgError
		if assert.ErrorAs(t, err, &pe, q) {
			assert.Contains(t, []string{"42501", "428C9"}, pe.Code, "%s: %s", q, pe.Message)
		}
	}
	require.NoError(t, app.QueryRow(ctx, `SELECT count(*) FROM landlord.audit_events WHERE tenant = $1`, slug).Scan(&n))
	assert.Equal(t, 1, n, "unchanged")
}

// Record joins the caller's transaction: rolled back with it, committed
// with it; Failed writes on its own.
func TestRecordJoinsTheTransaction(t *testing.T) {
	t.Parallel()
	dbtest.Landlord(t)
	db := dbtest.AdminDB(t)
	ctx := requestid.With(audit.WithActor(context.Background(), audit.TokenActor("0190f5a4-7c1e-7d3b-9a2e-4f6b8c0d1e2f")), "req-0123456789")
	slug := dbtest.Name("aud")
	t.Cleanup(func() { deleteEvents(t, slug) })
	id := uuid.New()
	ev := audit.Event{Action: audit.TenantRename, TenantID: id, Tenant: slug, Detail: map[string]any{"name": "New"}}

	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	require.NoError(t, audit.Record(ctx, tx, ev))
	require.NoError(t, tx.Rollback())
	log := audit.New(dbtest.AppPool(t, dbtest.Bouncer, 2), zerolog.Nop())
	page, err := log.List(ctx, audit.ListOptions{Tenant: slug})
	require.NoError(t, err)
	assert.Empty(t, page.Entries, "rolled back with the transaction")

	tx, err = db.BeginTx(ctx, nil)
	require.NoError(t, err)
	require.NoError(t, audit.Record(ctx, tx, ev))
	require.NoError(t, tx.Commit())
	log.Failed(ctx, audit.Event{Action: audit.TenantSuspend, TenantID: id, Tenant: slug}, &tenant.StatusError{Slug: tenant.MustSlug(slug), Status: tenant.StatusDeleted, Op: "suspend"})
	log.Failed(ctx, audit.Event{Action: audit.TenantSuspend, Tenant: slug}, errors.New("boom"))

	page, err = log.List(ctx, audit.ListOptions{Tenant: slug})
	require.NoError(t, err)
	require.Len(t, page.Entries, 3)
	internal, failed, ok := page.Entries[0], page.Entries[1], page.Entries[2]
	assert.Equal(t, audit.TenantRename, ok.Action)
	assert.Equal(t, audit.OK, ok.Outcome)
	assert.Nil(t, ok.ErrorCode)
	assert.Equal(t, "token:0190f5a4-7c1e-7d3b-9a2e-4f6b8c0d1e2f", ok.Actor)
	require.NotNil(t, ok.TokenID)
	assert.Equal(t, "0190f5a4-7c1e-7d3b-9a2e-4f6b8c0d1e2f", *ok.TokenID)
	require.NotNil(t, ok.RequestID)
	assert.Equal(t, "req-0123456789", *ok.RequestID)
	require.NotNil(t, ok.TenantID)
	assert.Equal(t, id.String(), *ok.TenantID)
	assert.Equal(t, map[string]any{"name": "New"}, ok.Detail)
	assert.Equal(t, audit.Error, failed.Outcome)
	require.NotNil(t, failed.ErrorCode)
	assert.Equal(t, "wrong_tenant_status", *failed.ErrorCode)
	require.NotNil(t, internal.ErrorCode)
	assert.Equal(t, "internal", *internal.ErrorCode, "an error of no known kind")
	assert.False(t, ok.At.IsZero())
}

// The trail reads in keyset pages, newest first, filtered by tenant and
// action, through PgBouncer.
func TestTrailPages(t *testing.T) {
	t.Parallel()
	dbtest.Landlord(t)
	ctx := context.Background()
	app := dbtest.AppPool(t, dbtest.Bouncer, 2)
	log := audit.New(app, zerolog.Nop())
	slug := dbtest.Name("aud")
	t.Cleanup(func() { deleteEvents(t, slug) })
	actions := []audit.Action{audit.TenantCreate, audit.TenantSuspend, audit.TenantResume, audit.ModuleInstall,
		audit.TenantLimits, audit.TokenCreate, audit.TenantSuspend}
	for _, a := range actions {
		require.NoError(t, pgx.BeginFunc(ctx, app, func(tx pgx.Tx) error {
			return audit.RecordTx(ctx, tx, audit.Event{Action: a, Tenant: slug})
		}))
	}
	var got []audit.Action
	var ids []int64
	o := audit.ListOptions{Tenant: slug, Limit: 3}
	for pages := 0; ; pages++ {
		require.Less(t, pages, 5)
		p, err := log.List(ctx, o)
		require.NoError(t, err)
		for _, e := range p.Entries {
			got = append(got, e.Action)
			ids = append(ids, e.ID)
		}
		if p.Next == 0 {
			break
		}
		o.Before = p.Next
	}
	want := make([]audit.Action, len(actions))
	for i, a := range actions {
		want[len(actions)-1-i] = a
	}
	assert.Equal(t, want, got, "newest first, each once")
	for i := 1; i < len(ids); i++ {
		assert.Less(t, ids[i], ids[i-1])
	}
	p, err := log.List(ctx, audit.ListOptions{Tenant: slug, Action: audit.TenantSuspend})
	require.NoError(t, err)
	assert.Len(t, p.Entries, 2)
	_, err = log.List(ctx, audit.ListOptions{Limit: 501})
	assert.ErrorIs(t, err, audit.ErrInvalid)
}

// deleteEvents removes a test's events, as the admin role (the only one that may).
func deleteEvents(t *testing.T, slug string) {
	t.Helper()
	_, err := dbtest.AdminDB(t).ExecContext(context.Background(), `DELETE FROM landlord.audit_events WHERE tenant = $1`, slug)
	assert.NoError(t, err)
}
