package pgroute_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// exampleSetup provisions a throwaway tenant in the test database for the
// examples and returns the router config, the slug, the admin connection
// and a cleanup function.
func exampleSetup() (config.Config, tenant.Slug, *sql.DB, func()) {
	cfg, err := config.Load(nil)
	if err != nil {
		panic(err)
	}
	swap := func(raw string) string { return dbtest.LocalURL(raw, "publicdigit_test") }
	cfg.Landlord.URL, cfg.Admin.URL = swap(cfg.Landlord.URL), swap(cfg.Admin.URL)
	cl := cfg.Clusters["main"]
	cl.URL, cl.AdminURL = swap(cl.URL), swap(cl.AdminURL)
	cfg.Clusters["main"] = cl

	pc, _ := pgx.ParseConfig(cfg.Admin.URL)
	db := stdlib.OpenDB(*pc)
	if _, err := schemaapply.Apply(context.Background(), db, schemaapply.Landlord(cfg.Tenant.AppRole), schemaapply.Options{}); err != nil {
		panic(err)
	}
	tt := testTenant{slug: tenant.MustSlug("example_" + uuid.NewString()[:8])}
	tt.marker = "Ada Lovelace"
	if err := provision(db, &tt); err != nil {
		fmt.Fprintln(os.Stderr, "example setup:", err)
	}
	return cfg, tt.slug, db, func() { dropExample(db, tt.slug); db.Close() }
}

func dropExample(db *sql.DB, slug tenant.Slug) {
	db.Exec("DROP SCHEMA IF EXISTS " + pgx.Identifier{slug.SchemaName()}.Sanitize() + " CASCADE")
	db.Exec("DROP ROLE IF EXISTS " + pgx.Identifier{slug.RoleName()}.Sanitize())
	ctx := context.Background()
	if t, err := catalog.Select(ctx, db, catalog.Selection{Slugs: []string{slug.String()}}); err == nil && len(t) == 1 {
		tx, _ := db.BeginTx(ctx, nil)
		_ = catalog.SetStatus(ctx, tx, t[0], t[0].Status, tenant.StatusDeleted, "delete")
		_ = catalog.DeletePurged(ctx, tx, t[0])
		_ = tx.Commit()
	}
}

// exampleRouter opens the router the examples use: cfg's settings, tenants
// resolved in the test database's catalog.
func exampleRouter(ctx context.Context, cfg config.Config, db *sql.DB) (*pgroute.Router, func(), error) {
	landlord, err := pgroute.NewPool(ctx, cfg.Landlord.URL, pgroute.PoolConfig{MaxConns: 2}, pgx.QueryExecModeExec, nil)
	if err != nil {
		return nil, nil, err
	}
	cat, err := catalog.New(catalog.Options{Pool: landlord, Admin: db})
	if err != nil {
		return nil, nil, err
	}
	r, err := pgroute.New(ctx, app.RouterOptions(cfg, cat, zerolog.Nop()))
	if err != nil {
		landlord.Close()
		return nil, nil, err
	}
	return r, func() { r.Close(); landlord.Close() }, nil
}

// Single-shot work: everything queued travels with the tenant binding in one
// round trip, as one implicit transaction.
func ExampleRouter_Do() {
	cfg, slug, db, cleanup := exampleSetup()
	defer cleanup()
	ctx := context.Background()
	// internal/app builds the router from the configuration; tenants are
	// resolved in the landlord catalog.
	router, closeRouter, err := exampleRouter(ctx, cfg, db)
	if err != nil {
		panic(err)
	}
	defer closeRouter()

	var name string
	var members int
	err = router.Do(ctx, slug, func(b *pgroute.Batch) error {
		tenantID := b.Tenant().ID // the golden rule: every read checks tenant_id
		b.Queue(`INSERT INTO members (tenant_id, full_name) VALUES ($1, $2)`, tenantID, "Grace Hopper")
		b.Queue(`SELECT full_name FROM members WHERE tenant_id = $1 ORDER BY full_name LIMIT 1`, tenantID).
			QueryRow(func(row pgx.Row) error { return row.Scan(&name) })
		b.Queue(`SELECT count(*) FROM members WHERE tenant_id = $1`, tenantID).
			QueryRow(func(row pgx.Row) error { return row.Scan(&members) })
		return nil
	})
	fmt.Println(name, members, err)
	// Output: Ada Lovelace 2 <nil>
}

// Work with Go logic between statements: BEGIN and the binding travel with
// the first flush; statements still queued travel with COMMIT.
func ExampleRouter_Tx() {
	cfg, slug, db, cleanup := exampleSetup()
	defer cleanup()
	ctx := context.Background()
	// internal/app builds the router from the configuration; tenants are
	// resolved in the landlord catalog.
	router, closeRouter, err := exampleRouter(ctx, cfg, db)
	if err != nil {
		panic(err)
	}
	defer closeRouter()

	err = router.Tx(ctx, slug, pgroute.TxOptions{}, func(ctx context.Context, tx *pgroute.Tx) error {
		var status string
		tx.Queue(`SELECT status FROM members WHERE tenant_id = $1 AND full_name = $2 FOR UPDATE`,
			tx.Tenant().ID, "Ada Lovelace").QueryRow(func(row pgx.Row) error { return row.Scan(&status) })
		if err := tx.Flush(ctx); err != nil { // round trip 1
			return err
		}
		if status != "active" {
			return fmt.Errorf("member is %s", status)
		}
		tx.Queue(`UPDATE members SET status = 'inactive' WHERE tenant_id = $1 AND full_name = $2`,
			tx.Tenant().ID, "Ada Lovelace")
		return nil // round trip 2: UPDATE + COMMIT
	})
	fmt.Println(err)
	// Output: <nil>
}
