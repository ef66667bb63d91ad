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

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/cards"
	"github.com/publicdigit/publicdigit/internal/elections"
	"github.com/publicdigit/publicdigit/internal/geography"
	"github.com/publicdigit/publicdigit/internal/membership"
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/provision"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// demoTenants are the original platform's tenants and the modules they use
// (besides digital_cards, which every tenant gets).
var demoTenants = []struct {
	slug, name string
	modules    []string
}{
	{"nrna", "Non-Resident Nepali Association", []string{modules.DigitalCards, modules.Elections}},
	{"rotary", "Rotary Club of Kathmandu", []string{modules.DigitalCards}},
}

// demoMembers are nrna's members, each with an active card, in units of the
// demo geography (Hari and Maya live outside Bagmati, the demo election's scope).
var demoMembers = []struct{ name, email, unit string }{
	{"Sita Sharma", "sita@nrna.example", "NP-P3-KTM-KMC-01"},
	{"Ram Thapa", "ram@nrna.example", "NP-P3-KTM-KMC-02"},
	{"Gita Gurung", "gita@nrna.example", "NP-P3-LAL-LMC"},
	{"Bishnu Adhikari", "bishnu@nrna.example", "NP-P3-BKT"},
	{"Hari Rai", "hari@nrna.example", "NP-P1-MOR-BRT"},
	{"Maya Tamang", "maya@nrna.example", "NP-P4-KAS-PKR-01"},
}

// demoElection is nrna's open election, scoped to Bagmati Province.
const demoElection = "NRNA Executive Committee 2026"

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
		Short: "The demo: modules digital_cards and elections, tenants nrna and rotary, a geography tree, an election",
		Long: `Loads the demo data, idempotently (make run runs it every time): the module
catalog (digital_cards, elections), a small geography tree of Nepal, the
tenants nrna (digital_cards, elections) and rotary (digital_cards) with their
modules installed, six members of nrna with active cards, and nrna's open
election "` + demoElection + `" (positions President and Committee,
scoped to Bagmati Province). With --token-file, the file holds a platform
token named "demo": kept when it still works, else a new one is written
(mode 0600).`,
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
	n, err := modules.Register(ctx, a.Admin)
	if err != nil {
		return err
	}
	var names []string
	for _, d := range modules.Builtin() {
		names = append(names, d.Name)
	}
	state := "present"
	if n > 0 {
		state = fmt.Sprintf("%d registered or updated", n)
	}
	fmt.Fprintf(e.out, "modules %s: %s\n", strings.Join(names, ", "), state)
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
	if err := seedElection(ctx, e, a); err != nil {
		return fmt.Errorf("demo election: %w", err)
	}
	if tokenFile != "" {
		return demoToken(ctx, e, a, tokenFile)
	}
	return nil
}

// seedElection makes nrna's members (with active cards) and its open demo
// election, unless they exist.
func seedElection(ctx context.Context, e *env, a *app.App) error {
	slug := tenant.MustSlug("nrna")
	if t, err := a.Catalog.Get(ctx, slug); err != nil || t.Status != tenant.StatusActive {
		return err
	}
	units := map[string]int64{}
	for _, m := range demoMembers {
		p, err := a.Geography.List(ctx, geography.ListOptions{Code: m.unit, Limit: 1})
		if err != nil {
			return err
		}
		if len(p.Units) == 1 {
			units[m.unit] = p.Units[0].ID
		}
	}
	ids, created := map[string]uuid.UUID{}, 0
	for _, m := range demoMembers {
		id, made, err := demoMember(ctx, a, slug, m.name, m.email, units[m.unit])
		if err != nil {
			return err
		}
		ids[m.email] = id
		if made {
			created++
		}
	}
	fmt.Fprintf(e.out, "tenant nrna: %d demo members with active cards (%d created)\n", len(demoMembers), created)

	var all []elections.Election
	q := elections.ListQuery{Limit: elections.MaxLimit}
	for {
		es, more, err := a.Elections.List(ctx, slug, q, cliAdmin)
		if err != nil {
			return err
		}
		all = append(all, es...)
		if !more {
			break
		}
		q.After = &es[len(es)-1].ID
	}
	for _, el := range all {
		if el.Title == demoElection {
			fmt.Fprintf(e.out, "tenant nrna: election %s present (%s)\n", el.ID, el.Status)
			return nil
		}
	}
	now := time.Now().Truncate(time.Second)
	in := elections.New{Title: demoElection, Description: "Demo election: members of Bagmati Province vote.",
		OpensAt: now.Add(-time.Hour), ClosesAt: now.Add(30 * 24 * time.Hour)}
	if id, ok := units["NP-P3-KTM-KMC-01"]; ok {
		bagmati, err := a.Geography.Detail(ctx, id, 1)
		if err != nil {
			return err
		}
		for _, u := range bagmati.Ancestors {
			if u.Code == "NP-P3" {
				in.ScopeUnitID = &u.ID
			}
		}
	}
	el, err := a.Elections.Create(ctx, slug, in, cliActor)
	if err != nil {
		return err
	}
	for _, p := range []struct {
		title  string
		seats  int
		emails []string
	}{
		{"President", 1, []string{"sita@nrna.example", "ram@nrna.example"}},
		{"Committee", 2, []string{"gita@nrna.example", "bishnu@nrna.example", "hari@nrna.example"}},
	} {
		pos, err := a.Elections.AddPosition(ctx, slug, el.ID, elections.NewPosition{Title: p.title, Seats: p.seats}, cliActor)
		if err != nil {
			return err
		}
		for _, em := range p.emails {
			if _, err := a.Elections.AddCandidate(ctx, slug, el.ID, pos.ID, ids[em], cliActor); err != nil {
				return err
			}
		}
	}
	if _, err := a.Elections.Transition(ctx, slug, el.ID, elections.Open, cliActor); err != nil {
		return err
	}
	fmt.Fprintf(e.out, "tenant nrna: election %s created (open)\n", el.ID)
	return nil
}

// demoMember returns the member with that e-mail, created with an active
// card when missing (made: whether it was).
func demoMember(ctx context.Context, a *app.App, slug tenant.Slug, name, email string, unit int64) (uuid.UUID, bool, error) {
	in := membership.New{FullName: name, Email: &email}
	if unit != 0 {
		in.GeoUnitID = &unit
	}
	m, err := a.Members.Create(ctx, slug, in)
	if errors.Is(err, membership.ErrEmailTaken) {
		var after *uuid.UUID
		for {
			ms, more, err := a.Members.List(ctx, slug, membership.ListQuery{Limit: membership.MaxLimit, After: after})
			if err != nil {
				return uuid.Nil, false, err
			}
			for _, x := range ms {
				if x.Email != nil && *x.Email == email {
					return x.ID, false, nil
				}
			}
			if !more {
				return uuid.Nil, false, fmt.Errorf("member %s: e-mail taken but not listed", email)
			}
			after = &ms[len(ms)-1].ID
		}
	}
	if err != nil {
		return uuid.Nil, false, err
	}
	c, err := a.Cards.Issue(ctx, slug, cards.Issue{MemberID: m.ID}, cliActor)
	if err != nil {
		return uuid.Nil, false, err
	}
	if _, err := a.Cards.Transition(ctx, slug, c.ID, cards.Activate, cliActor); err != nil {
		return uuid.Nil, false, err
	}
	return m.ID, true, nil
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
