package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/geography"
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/provision"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// demoModules is the module catalog of the demo (the original platform's modules).
var demoModules = []modules.Module{
	{Name: "events", DisplayName: "Events", Version: "1.0.0",
		Description: "Events a tenant organises and its members' registrations.", SchemaFiles: []string{"modules/events.hcl"}},
	{Name: "donations", DisplayName: "Donations", Version: "1.0.0",
		Description: "Donation campaigns and the donations made to them.", SchemaFiles: []string{"modules/donations.hcl"}},
}

// demoTenants are the original platform's tenants and the modules they use.
var demoTenants = []struct {
	slug, name string
	modules    []string
}{
	{"nrna", "Non-Resident Nepali Association", []string{"events"}},
	{"rotary", "Rotary Club of Kathmandu", []string{"events", "donations"}},
}

// demoGeography is a small administrative tree of Nepal.
const demoGeography = `code,name,level,parent_code
NP,Nepal,country,
NP-P1,Koshi Province,province,NP
NP-P3,Bagmati Province,province,NP
NP-P4,Gandaki Province,province,NP
NP-P1-MOR,Morang,district,NP-P1
NP-P3-KTM,Kathmandu,district,NP-P3
NP-P3-LAL,Lalitpur,district,NP-P3
NP-P3-BKT,Bhaktapur,district,NP-P3
NP-P4-KAS,Kaski,district,NP-P4
NP-P1-MOR-BRT,Biratnagar Metropolitan City,municipality,NP-P1-MOR
NP-P3-KTM-KMC,Kathmandu Metropolitan City,municipality,NP-P3-KTM
NP-P3-LAL-LMC,Lalitpur Metropolitan City,municipality,NP-P3-LAL
NP-P4-KAS-PKR,Pokhara Metropolitan City,municipality,NP-P4-KAS
NP-P3-KTM-KMC-01,Ward 1,ward,NP-P3-KTM-KMC
NP-P3-KTM-KMC-02,Ward 2,ward,NP-P3-KTM-KMC
NP-P3-KTM-KMC-03,Ward 3,ward,NP-P3-KTM-KMC
NP-P4-KAS-PKR-01,Ward 1,ward,NP-P4-KAS-PKR
`

func newSeedCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "seed", Short: "Load demo data"}
	c.AddCommand(newSeedDemoCmd(e))
	return c
}

func newSeedDemoCmd(e *env) *cobra.Command {
	var tokenFile string
	c := &cobra.Command{
		Use:   "demo [--token-file <path>]",
		Short: "The demo: modules events and donations, tenants nrna and rotary, a geography tree",
		Long: `Loads the demo data of the original platform, idempotently (make run runs it
every time): the module catalog (events, donations), the tenants nrna (events)
and rotary (events, donations) with their modules installed, and a small
geography tree of Nepal. With --token-file, the file holds a platform token
named "demo": kept when it still works, else a new one is written (mode 0600).`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return e.withApp(cmd, 5*time.Minute, func(ctx context.Context, a *app.App) error {
				return seedDemo(ctx, e, a, tokenFile)
			})
		},
	}
	c.Flags().StringVar(&tokenFile, "token-file", "", "keep a working platform token in this file")
	return c
}

func seedDemo(ctx context.Context, e *env, a *app.App, tokenFile string) error {
	for _, m := range demoModules {
		_, err := a.Modules.Create(ctx, m)
		switch {
		case errors.Is(err, modules.ErrModuleExists):
			fmt.Fprintf(e.out, "module %s: present\n", m.Name)
		case err != nil:
			return err
		default:
			fmt.Fprintf(e.out, "module %s: registered\n", m.Name)
		}
	}
	for _, d := range demoTenants {
		slug := tenant.MustSlug(d.slug)
		res, err := a.Provisioner.Provision(ctx, provision.Request{Slug: slug, Name: d.name})
		switch {
		case errors.Is(err, tenant.ErrExists):
			fmt.Fprintf(e.out, "tenant %s: present\n", slug)
		case err != nil:
			return err
		default:
			fmt.Fprintf(e.out, "tenant %s: provisioned (%s)\n", slug, res.Path)
		}
		t, err := a.Catalog.Get(ctx, slug)
		if err != nil {
			return err
		}
		if t.Status != tenant.StatusActive && t.Status != tenant.StatusSuspended {
			fmt.Fprintf(e.out, "tenant %s: %s, modules left as they are\n", slug, t.Status)
			continue
		}
		for _, m := range d.modules {
			_, err := a.Modules.Install(ctx, slug, m)
			switch {
			case errors.Is(err, modules.ErrAlreadyInstalled):
			case err != nil:
				return err
			default:
				fmt.Fprintf(e.out, "tenant %s: module %s installed\n", slug, m)
			}
		}
	}
	pool, err := e.adminPool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	geo, err := geography.New(pool).Import(ctx, strings.NewReader(demoGeography))
	if err != nil {
		return fmt.Errorf("demo geography: %w", err)
	}
	fmt.Fprintf(e.out, "geography: %d created, %d updated, %d unchanged\n", geo.Created, geo.Updated, geo.Unchanged)
	if tokenFile != "" {
		return demoToken(ctx, e, a, tokenFile)
	}
	return nil
}

// demoToken keeps a working platform token in path.
func demoToken(ctx context.Context, e *env, a *app.App, path string) error {
	if b, err := os.ReadFile(path); err == nil {
		if pr, err := a.Tokens.Authenticate(ctx, strings.TrimSpace(string(b))); err == nil && pr.IsPlatform() {
			fmt.Fprintf(e.out, "demo token: %s (kept)\n", path)
			return nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("demo token: %w", err)
	}
	secret, _, err := a.Tokens.Create(ctx, access.CreateRequest{Name: "demo", Kind: access.KindPlatform})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("demo token: %w", err)
	}
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("demo token: %w", err)
	}
	fmt.Fprintf(e.out, "demo token: %s (new)\n", path)
	return nil
}
