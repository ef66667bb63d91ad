// Package apptest opens an App (internal/app) on the test database for one
// test and closes it at cleanup: the services as the server wires them,
// with the warm pool off and a spare prefix of the test's own.
package apptest

import (
	"context"
	"testing"

	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/pgroute"
)

// Options adjust Open.
type Options struct {
	app.Options
	// Configure may change the test configuration (dbtest.Config) first.
	Configure func(*config.Config)
	// Log receives the services' logs (default: none).
	Log *zerolog.Logger
}

// Open returns an App on the test database (landlord catalog applied),
// closed at cleanup. The warm pool is off unless Configure sets it.
func Open(t testing.TB, o Options) *app.App {
	t.Helper()
	dbtest.Landlord(t)
	cfg := dbtest.Config(t)
	cfg.Tenant.WarmPool = 0
	if o.Configure != nil {
		o.Configure(&cfg)
	}
	if o.SparePrefix == "" {
		o.SparePrefix = dbtest.Name("pd_tspare") + "_"
	}
	log := zerolog.Nop()
	if o.Log != nil {
		log = *o.Log
	}
	a, err := app.Open(context.Background(), cfg, log, o.Options)
	if err != nil {
		t.Fatalf("apptest: %v", err)
	}
	t.Cleanup(func() {
		if cfg.Tenant.WarmPool > 0 {
			_, _ = a.Provisioner.DrainWarmPool(context.Background())
		}
		a.Close()
	})
	return a
}

// Router opens a tenant router with cfg's settings (usually dbtest.Config,
// possibly changed), resolving tenants in the test database's catalog;
// adjust, when set, may change its options. Closed at cleanup.
func Router(t testing.TB, cfg config.Config, adjust func(*pgroute.Options)) *pgroute.Router {
	t.Helper()
	o := app.RouterOptions(cfg, dbtest.Catalog(t), zerolog.Nop())
	if adjust != nil {
		adjust(&o)
	}
	r, err := pgroute.New(context.Background(), o)
	if err != nil {
		t.Fatalf("apptest: router: %v", err)
	}
	t.Cleanup(r.Close)
	return r
}
