package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/apptest"
	"github.com/publicdigit/publicdigit/internal/cards"
	"github.com/publicdigit/publicdigit/internal/cli"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/membership"
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// tenantctl module and election cover what the API offers: install a
// module, build a draft, open it, vote (once), close, read the results,
// publish, read the log — with usage errors for bad arguments.
func TestModuleAndElectionCommands(t *testing.T) {
	dbtest.SetEnv(t)
	tt := dbtest.Tenant(t, "clel")
	a := apptest.Open(t, apptest.Options{})
	ctx := context.Background()
	slug := tenant.MustSlug(tt.Slug)
	var members []string
	for _, n := range []string{"Sita", "Ram", "Gita"} {
		m, err := a.Members.Create(ctx, slug, membership.New{FullName: n})
		require.NoError(t, err)
		c, err := a.Cards.Issue(ctx, slug, cards.Issue{MemberID: m.ID}, "test")
		require.NoError(t, err)
		_, err = a.Cards.Transition(ctx, slug, c.ID, cards.Activate, "test")
		require.NoError(t, err)
		members = append(members, m.ID.String())
	}
	ok := func(args ...string) string {
		t.Helper()
		code, out, errOut := run(t, args...)
		require.Equal(t, cli.ExitOK, code, "%v: %s", args, errOut)
		return out
	}
	line := func(args ...string) string { t.Helper(); return strings.TrimSpace(ok(args...)) }

	out := ok("module", "list")
	assert.Regexp(t, `elections\s+1\.0\.0\s+true\s+false\s+digital_cards\s+modules/elections\.hcl`, out)
	code, _, errOut := run(t, "election", "list", tt.Slug)
	assert.Equal(t, cli.ExitFailure, code)
	assert.Contains(t, errOut, "not installed")
	assert.Contains(t, ok("module", "install", tt.Slug, modules.Elections), "module elections installed")

	opens, closes := time.Now().Add(-time.Minute).Format(time.RFC3339), time.Now().Add(time.Hour).Format(time.RFC3339)
	id := line("election", "create", tt.Slug, "--title", "Board 2026", "--opens", opens, "--closes", closes)
	require.NoError(t, uuid.Validate(id))
	pos := line("election", "position", "add", tt.Slug, id, "--title", "Chair")
	c1 := line("election", "candidate", "add", tt.Slug, id, pos, "--member", members[0])
	c2 := line("election", "candidate", "add", tt.Slug, id, pos, "--member", members[1])
	ok("election", "update", tt.Slug, id, "--title", "Board 2027")
	out = ok("election", "show", tt.Slug, id)
	assert.Contains(t, out, "draft  Board 2027")
	assert.Contains(t, out, "candidate "+c1+"  Sita")
	assert.Contains(t, ok("election", "open", tt.Slug, id), "open")

	ok("election", "vote", tt.Slug, id, "--member", members[0], "--choice", pos+"="+c1)
	ok("election", "vote", tt.Slug, id, "--member", members[1], "--choice", pos+"="+c1)
	ok("election", "vote", tt.Slug, id, "--member", members[2], "--choice", pos+"="+c2)
	code, _, errOut = run(t, "election", "vote", tt.Slug, id, "--member", members[0], "--choice", pos+"="+c2)
	assert.Equal(t, cli.ExitFailure, code)
	assert.Contains(t, errOut, "voted in this election already")
	code, _, errOut = run(t, "election", "update", tt.Slug, id, "--title", "Late")
	assert.Equal(t, cli.ExitFailure, code)
	assert.Contains(t, errOut, "only while it is a draft")

	assert.Contains(t, ok("election", "close", tt.Slug, id), "closed")
	out = ok("election", "results", tt.Slug, id)
	assert.Contains(t, out, "closed, 3 ballots")
	assert.Regexp(t, `Chair \(1\)\s+Sita\s+2\s+elected`, out)
	assert.Regexp(t, `Chair \(1\)\s+Ram\s+1\s*\n`, out)
	assert.Contains(t, ok("election", "publish", tt.Slug, id), "published")
	var acts []map[string]any
	require.NoError(t, json.Unmarshal([]byte(ok("election", "activities", tt.Slug, id, "--json")), &acts))
	require.Len(t, acts, 11, "created, position, 2 candidates, updated, opened, 3 ballots, closed, published")
	assert.Equal(t, "tenantctl", acts[0]["actor"])
	assert.Regexp(t, id+`\s+published\s+\S+\s+\S+\s+3\s+Board 2027`, ok("election", "list", tt.Slug))

	for _, bad := range [][]string{
		{"election", "show", tt.Slug},
		{"election", "show", tt.Slug, "not-a-uuid"},
		{"election", "show", "Bad-Slug", id},
		{"election", "create", tt.Slug, "--title", "x", "--opens", "tomorrow", "--closes", closes},
		{"election", "create", tt.Slug, "--title", "x"},
		{"election", "vote", tt.Slug, id, "--member", members[0], "--choice", "nonsense"},
		{"module", "install", tt.Slug},
		{"module", "uninstall", tt.Slug, "elections", "extra"},
	} {
		code, _, _ := run(t, bad...)
		assert.Equal(t, cli.ExitUsage, code, "%v", bad)
	}

	// Uninstall: refused while the module holds data, done with --purge.
	code, _, errOut = run(t, "module", "uninstall", tt.Slug, modules.Elections)
	assert.Equal(t, cli.ExitFailure, code)
	assert.Contains(t, errOut, "hold data")
	assert.Contains(t, ok("module", "uninstall", tt.Slug, modules.Elections, "--purge"), "uninstalled")
}
