package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/cli"
)

// landlordStage measures the landlord operations an operator runs on the
// whole catalog: listing it page by page (catalog.List, the keyset pages of
// GET /api/v1/platform/tenants, 500 a page), `tenantctl tenant list` (every
// page plus each tenant's size and rows) and `tenantctl schema drift` (every
// tenant checked against its desired schema). Medians of 3.
func (s *scaleRun) landlordStage(ctx context.Context, n int) error {
	list := func() (time.Duration, error) {
		start := time.Now()
		o := catalog.ListOptions{Prefix: s.f.slugPrefix(), Limit: catalog.MaxPage}
		total := 0
		for {
			page, err := s.cold.Catalog.List(ctx, o)
			if err != nil {
				return 0, err
			}
			total += len(page.Tenants)
			if page.Next.IsZero() {
				break
			}
			o.After = page.Next
		}
		if total < n {
			return 0, fmt.Errorf("listed %d tenants, expected at least %d", total, n)
		}
		return time.Since(start), nil
	}
	cfgPath, err := s.writeCLIConfig()
	if err != nil {
		return err
	}
	defer os.Remove(cfgPath)
	tenantctl := func(args ...string) func() (time.Duration, error) {
		return func() (time.Duration, error) {
			var stdout, stderr bytes.Buffer
			start := time.Now()
			code := cli.Run(ctx, append([]string{"--config", cfgPath}, args...), &stdout, &stderr)
			d := time.Since(start)
			if code != cli.ExitOK {
				return d, fmt.Errorf("tenantctl %v: exit %d: %s", args, code, tail(stderr.String()+stdout.String(), 400))
			}
			if lines := bytes.Count(stdout.Bytes(), []byte("\n")); args[0] == "tenant" && lines < n {
				return d, fmt.Errorf("tenantctl %v printed %d lines, expected at least %d", args, lines, n)
			}
			return d, nil
		}
	}
	for _, m := range []struct {
		name string
		run  func() (time.Duration, error)
	}{
		{"landlord_list_all_ms", list},
		{"tenantctl_tenant_list_ms", tenantctl("tenant", "list")},
		{"tenantctl_schema_drift_ms", tenantctl("schema", "drift", "--slug-prefix", s.f.slugPrefix())},
	} {
		d, err := fleetMedian(3, m.run)
		if err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		if err := s.res.put(ctx, m.name, n, provMS(d)); err != nil {
			return err
		}
	}
	return nil
}

// writeCLIConfig writes a tenantctl config file for the scratch database.
func (s *scaleRun) writeCLIConfig() (string, error) {
	cl := s.cfg.Clusters[s.cfg.DefaultCluster]
	yaml := fmt.Sprintf(`landlord:
  url: %q
  listen_url: ""
admin:
  url: %q
default_cluster: %q
clusters:
  %s:
    url: %q
    admin_url: %q
    pgbouncer: %q
log:
  level: error
`, s.cfg.Landlord.URL, s.cfg.Admin.URL, s.cfg.DefaultCluster, s.cfg.DefaultCluster, cl.URL, cl.AdminURL, cl.PgBouncer)
	path := filepath.Join(os.TempDir(), "pdbench-"+s.f.db+"-tenantctl.yaml")
	return path, os.WriteFile(path, []byte(yaml), 0o600)
}
