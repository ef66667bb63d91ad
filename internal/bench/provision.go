package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/httpapi"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

const (
	benchSlugPrefix  = "bprov_"
	benchSparePrefix = "pd_bspare_"
)

// runProvision provisions -n tenants through POST /api/v1/platform/tenants
// on a server whose warm pool is off (cold: each request applies the
// schema), then -n more on a server whose warm pool holds -n spares built
// beforehand (warm: each request claims one), one request at a time, on the
// platform database. It prints the client-side latency of each path and
// removes every tenant, spare and token it made.
func runProvision(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("provision", flag.ContinueOnError)
	n := fs.Int("n", 100, "tenants per path (cold, warm)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *n > 1000 {
		return fmt.Errorf("-n must be between 1 and 1000")
	}
	cfg, err := config.Load(nil)
	if err != nil {
		return err
	}
	// Two apps on the platform database: one without a warm pool (cold),
	// one whose warm pool holds -n spares of its own (warm).
	log := zerolog.Nop()
	coldCfg, warmCfg := cfg, cfg
	coldCfg.Tenant.WarmPool, warmCfg.Tenant.WarmPool = 0, *n
	coldApp, err := app.Open(ctx, coldCfg, log, app.Options{TokenCacheTTL: 5 * time.Second})
	if err != nil {
		return err
	}
	defer coldApp.Close()
	warmApp, err := app.Open(ctx, warmCfg, log, app.Options{TokenCacheTTL: 5 * time.Second, SparePrefix: benchSparePrefix})
	if err != nil {
		return err
	}
	defer warmApp.Close()
	if err := coldApp.Admin.PingContext(ctx); err != nil {
		return fmt.Errorf("admin connection (run make db-init): %w", err)
	}
	admin, tokens, warm := coldApp.Admin, coldApp.Tokens, warmApp.Provisioner

	// Leftovers of an interrupted run go first; everything goes at the end.
	cleanup := func() error {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
		defer cancel()
		if err := purgeBenchTenants(c, coldApp); err != nil {
			return err
		}
		if _, err := warm.DrainWarmPool(c); err != nil {
			return err
		}
		_, err := admin.ExecContext(c, `DELETE FROM landlord.api_tokens WHERE name = 'bench-provision'`)
		return err
	}
	if err := cleanup(); err != nil {
		return fmt.Errorf("clean up an earlier run: %w", err)
	}
	defer func() {
		start := time.Now()
		if err := cleanup(); err != nil {
			fmt.Fprintf(out, "# cleanup failed: %v\n", err)
			return
		}
		fmt.Fprintf(out, "# cleaned up in %s\n", time.Since(start).Round(time.Millisecond))
	}()
	secret, _, err := tokens.Create(ctx, access.CreateRequest{Name: "bench-provision", Kind: access.KindPlatform})
	if err != nil {
		return err
	}

	var schemas int
	if err := admin.QueryRowContext(ctx, `SELECT count(*) FROM pg_namespace`).Scan(&schemas); err != nil {
		return err
	}
	fmt.Fprintf(out, "# %d tenants per path through POST /api/v1/platform/tenants, one at a time; %d schemas in the database at start\n", *n, schemas)

	serve := func(a *app.App) (string, func(), error) {
		api := httpapi.New(httpapi.Deps{Log: log, App: a, BodyLimit: cfg.HTTP.BodyLimit})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", nil, err
		}
		go func() { _ = api.Listener(ln) }()
		return "http://" + ln.Addr().String(), func() { _ = api.ShutdownWithTimeout(5 * time.Second) }, nil
	}
	client := &http.Client{Timeout: time.Minute}

	phase := func(name string, a *app.App, offset int) error {
		base, stop, err := serve(a)
		if err != nil {
			return err
		}
		defer stop()
		lat := make([]time.Duration, 0, *n)
		for i := 0; i < *n; i++ {
			slug := fmt.Sprintf("%s%s_%04d", benchSlugPrefix, name, offset+i)
			d, path, err := postTenant(ctx, client, base, secret, slug)
			if err != nil {
				return fmt.Errorf("%s: %w", slug, err)
			}
			if path != name {
				return fmt.Errorf("%s: provisioned %s, expected %s", slug, path, name)
			}
			lat = append(lat, d)
		}
		p50, p95 := percentile(lat, 50), percentile(lat, 95)
		fmt.Fprintf(out, "provision_ms %s %.2f %.2f\n", name, provMS(p50), provMS(p95))
		return nil
	}

	if err := phase("cold", coldApp, 0); err != nil {
		return err
	}
	start := time.Now()
	built, err := warm.FillWarmPool(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "# warm pool: %d spares built beforehand in %s (%.1f ms each), not counted below\n",
		built, time.Since(start).Round(time.Millisecond), provMS(time.Since(start))/float64(max(built, 1)))
	return phase("warm", warmApp, *n)
}

func postTenant(ctx context.Context, client *http.Client, base, token, slug string) (time.Duration, string, error) {
	body, _ := json.Marshal(map[string]string{"slug": slug, "name": "Bench " + slug})
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/api/v1/platform/tenants", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	req.Header.Set(fiber.HeaderAuthorization, "Bearer "+token)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if resp.StatusCode != http.StatusCreated {
		return 0, "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return d, resp.Header.Get(httpapi.HeaderProvisionPath), nil
}

// purgeBenchTenants deletes and purges every tenant whose slug has the bench prefix.
func purgeBenchTenants(ctx context.Context, a *app.App) error {
	var slugs []tenant.Slug
	o := catalog.ListOptions{Prefix: benchSlugPrefix, Limit: catalog.MaxPage}
	for {
		page, err := a.Catalog.List(ctx, o)
		if err != nil {
			return err
		}
		for _, t := range page.Tenants {
			slugs = append(slugs, t.Slug)
		}
		if page.Next.IsZero() {
			break
		}
		o.After = page.Next
	}
	for _, slug := range slugs {
		if _, err := a.Catalog.Delete(ctx, slug); err != nil {
			return err
		}
		if err := a.Provisioner.Purge(ctx, slug); err != nil {
			return err
		}
	}
	return nil
}

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	if i < 1 {
		i = 1
	}
	return s[i-1]
}

func provMS(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
