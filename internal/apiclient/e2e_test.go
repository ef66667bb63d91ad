package apiclient_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/apiclient"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/servertest"
)

// bearer sets the Authorization header of one request.
func bearer(token string) apiclient.RequestEditorFn {
	return func(_ context.Context, req *http.Request) error {
		req.Header.Set("Authorization", "Bearer "+token)
		return nil
	}
}

// code is a problem's stable code, or "" when it has none.
func code(p *apiclient.Problem) string {
	if p == nil || p.Code == nil {
		return ""
	}
	return *p.Code
}

// The client generated from openapi.yaml drives the real server (server.Run,
// through PgBouncer to the test database): a tenant, a tenant token, a member,
// a card read back, listed, activated and validated, and the error answers
// parsed from application/problem+json into the documented fields.
func TestGeneratedClientDrivesTheServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := servertest.Start(t, servertest.Config(t))
	base := srv.Base
	platform := bearer(srv.PlatformToken(t))
	c, err := apiclient.NewClientWithResponses(base)
	require.NoError(t, err)

	// Operations, no token.
	health, err := c.GetHealthzWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, 200, health.StatusCode())
	assert.Equal(t, "ok", health.JSON200.Status)
	ready, err := c.GetReadyzWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, 200, ready.StatusCode())

	// A tenant: 201 on the cold path (no warm pool), then 409 for the same slug.
	slug := dbtest.Name("e2e_")
	created, err := c.CreateTenantWithResponse(ctx, apiclient.TenantCreate{Slug: slug, Name: "E2E " + slug}, platform)
	require.NoError(t, err)
	require.Equal(t, 201, created.StatusCode(), "%s", created.Body)
	t.Cleanup(func() {
		// Soft delete, then purge: schema, role, catalog row and tokens gone.
		del, err := c.DeleteTenantWithResponse(ctx, slug, nil, platform)
		if assert.NoError(t, err) {
			assert.Equal(t, 200, del.StatusCode(), "%s", del.Body)
		}
		purge := true
		del, err = c.DeleteTenantWithResponse(ctx, slug, &apiclient.DeleteTenantParams{Purge: &purge}, platform)
		if assert.NoError(t, err) {
			assert.Equal(t, 204, del.StatusCode(), "%s", del.Body)
		}
	})
	require.NotNil(t, created.JSON201)
	assert.Equal(t, slug, created.JSON201.Slug)
	assert.Equal(t, apiclient.TenantStatusActive, created.JSON201.Status)
	require.NotNil(t, created.Headers201)
	require.NotNil(t, created.Headers201.XProvisionPath)
	assert.Equal(t, "cold", *created.Headers201.XProvisionPath)

	again, err := c.CreateTenantWithResponse(ctx, apiclient.TenantCreate{Slug: slug, Name: "again"}, platform)
	require.NoError(t, err)
	require.Equal(t, 409, again.StatusCode())
	require.NotNil(t, again.ApplicationproblemJSON409, "a problem+json body: %s", again.Body)
	assert.Equal(t, "tenant_exists", code(again.ApplicationproblemJSON409))
	assert.Equal(t, 409, again.ApplicationproblemJSON409.Status)
	assert.NotEmpty(t, again.HTTPResponse.Header.Get("X-Request-Id"))

	got, err := c.GetTenantWithResponse(ctx, slug, platform)
	require.NoError(t, err)
	require.Equal(t, 200, got.StatusCode())
	assert.Equal(t, created.JSON201.Id, got.JSON200.Id)

	// A token for this tenant only.
	tenantKind := apiclient.TokenCreateKindTenant
	tok, err := c.CreateTokenWithResponse(ctx, apiclient.TokenCreate{Name: "e2e", Kind: tenantKind, Tenant: &slug}, platform)
	require.NoError(t, err)
	require.Equal(t, 201, tok.StatusCode(), "%s", tok.Body)
	require.True(t, strings.HasPrefix(tok.JSON201.Token, "pdt_"))
	tenant := bearer(tok.JSON201.Token)

	// A member and a card, with the tenant's own token.
	email := "grace@example.org"
	m, err := c.CreateMemberWithResponse(ctx, slug, apiclient.MemberCreate{FullName: "Grace Hopper", Email: &email}, tenant)
	require.NoError(t, err)
	require.Equal(t, 201, m.StatusCode(), "%s", m.Body)
	member := m.JSON201
	require.NotNil(t, member)
	assert.Equal(t, "Grace Hopper", member.FullName)
	assert.Equal(t, apiclient.MemberStatusActive, member.Status)

	issued, err := c.IssueCardWithResponse(ctx, slug, apiclient.CardIssue{MemberId: member.Id}, tenant)
	require.NoError(t, err)
	require.Equal(t, 201, issued.StatusCode(), "%s", issued.Body)
	card := issued.JSON201
	assert.Equal(t, apiclient.CardStatusIssued, card.Status)
	assert.True(t, strings.HasPrefix(card.QrCode, "PD1-"), card.QrCode)

	read, err := c.GetCardWithResponse(ctx, slug, card.Id.String(), tenant)
	require.NoError(t, err)
	require.Equal(t, 200, read.StatusCode())
	assert.Equal(t, card.Id, read.JSON200.Id)
	assert.Equal(t, card.QrCode, read.JSON200.QrCode)
	assert.Equal(t, member.Id, read.JSON200.MemberId)

	list, err := c.ListCardsWithResponse(ctx, slug, &apiclient.ListCardsParams{MemberId: &member.Id}, tenant)
	require.NoError(t, err)
	require.Equal(t, 200, list.StatusCode())
	require.Len(t, list.JSON200.Items, 1)
	assert.Equal(t, card.Id, list.JSON200.Items[0].Id)
	assert.Nil(t, list.JSON200.Next)

	act, err := c.ActivateCardWithResponse(ctx, slug, card.Id.String(), tenant)
	require.NoError(t, err)
	require.Equal(t, 200, act.StatusCode(), "%s", act.Body)
	assert.Equal(t, apiclient.CardStatusActive, act.JSON200.Status)
	act, err = c.ActivateCardWithResponse(ctx, slug, card.Id.String(), tenant)
	require.NoError(t, err)
	require.Equal(t, 409, act.StatusCode())
	assert.Equal(t, "illegal_transition", code(act.ApplicationproblemJSON409))

	valid, err := c.ValidateCardWithResponse(ctx, slug, apiclient.ValidateRequest{QrCode: card.QrCode}, tenant)
	require.NoError(t, err)
	require.Equal(t, 200, valid.StatusCode())
	assert.Equal(t, apiclient.ValidationResultResultValid, valid.JSON200.Result)

	log, err := c.ListCardActivitiesWithResponse(ctx, slug, card.Id.String(), nil, tenant)
	require.NoError(t, err)
	require.Equal(t, 200, log.StatusCode())
	var actions []apiclient.ActivityAction
	for _, a := range log.JSON200.Items {
		actions = append(actions, a.Action)
	}
	assert.Equal(t, []apiclient.ActivityAction{apiclient.ActivityActionIssued, apiclient.ActivityActionActivated,
		apiclient.ActivityActionValidated}, actions)

	// Keyset pages: a second member, one per page, the cursor passed back.
	_, err = c.CreateMemberWithResponse(ctx, slug, apiclient.MemberCreate{FullName: "Ada Lovelace"}, tenant)
	require.NoError(t, err)
	one := apiclient.Limit(1)
	page, err := c.ListMembersWithResponse(ctx, slug, &apiclient.ListMembersParams{Limit: &one}, tenant)
	require.NoError(t, err)
	require.Equal(t, 200, page.StatusCode())
	require.Len(t, page.JSON200.Items, 1)
	require.NotNil(t, page.JSON200.Next)
	next := apiclient.After(*page.JSON200.Next)
	page2, err := c.ListMembersWithResponse(ctx, slug, &apiclient.ListMembersParams{Limit: &one, After: &next}, tenant)
	require.NoError(t, err)
	require.Equal(t, 200, page2.StatusCode())
	require.Len(t, page2.JSON200.Items, 1)
	assert.NotEqual(t, page.JSON200.Items[0].Id, page2.JSON200.Items[0].Id)

	// Error answers, each parsed into its documented problem field.
	bad, err := c.GetCardWithResponse(ctx, slug, "not-a-uuid", tenant)
	require.NoError(t, err)
	require.Equal(t, 400, bad.StatusCode())
	assert.Equal(t, "invalid_id", code(bad.ApplicationproblemJSON400))

	other, err := c.ListMembersWithResponse(ctx, "nrna_"+slug, nil, tenant)
	require.NoError(t, err)
	require.Equal(t, 404, other.StatusCode())
	assert.Equal(t, "tenant_not_found", code(other.ApplicationproblemJSON404))

	anon, err := c.ListMembersWithResponse(ctx, slug, nil)
	require.NoError(t, err)
	require.Equal(t, 401, anon.StatusCode())
	require.NotNil(t, anon.ApplicationproblemJSON401, "%s", anon.Body)

	forbidden, err := c.ListTenantsWithResponse(ctx, nil, tenant)
	require.NoError(t, err)
	require.Equal(t, 403, forbidden.StatusCode())
	require.NotNil(t, forbidden.ApplicationproblemJSON403, "%s", forbidden.Body)

	huge, err := c.CreateMemberWithResponse(ctx, slug, apiclient.MemberCreate{FullName: strings.Repeat("x", 70_000)}, tenant)
	require.NoError(t, err)
	require.Equal(t, 413, huge.StatusCode())
	assert.Equal(t, "body_too_large", code(huge.ApplicationproblemJSON413))

	// A URI longer than 2,048 bytes: 414; a request line beyond the read buffer (16 KiB): 431.
	longAfter := apiclient.After(strings.Repeat("a", 5000))
	long, err := c.ListMembersWithResponse(ctx, slug, &apiclient.ListMembersParams{After: &longAfter}, tenant)
	require.NoError(t, err)
	require.Equal(t, 414, long.StatusCode())
	require.NotNil(t, long.ApplicationproblemJSON414, "%s", long.Body)
	assert.Equal(t, "uri_too_long", code(long.ApplicationproblemJSON414))
	longerAfter := apiclient.After(strings.Repeat("a", 20_000))
	longer, err := c.ListMembersWithResponse(ctx, slug, &apiclient.ListMembersParams{After: &longerAfter}, tenant)
	require.NoError(t, err)
	require.Equal(t, 431, longer.StatusCode())
	require.NotNil(t, longer.ApplicationproblemJSON431, "%s", longer.Body)
	assert.Equal(t, "header_too_large", code(longer.ApplicationproblemJSON431))

	// Revoking the tenant token through the API stops it at once.
	rev, err := c.RevokeTokenWithResponse(ctx, tok.JSON201.Id.String(), platform)
	require.NoError(t, err)
	require.Equal(t, 200, rev.StatusCode(), "%s", rev.Body)
	assert.NotNil(t, rev.JSON200.RevokedAt)
	after, err := c.GetCardWithResponse(ctx, slug, card.Id.String(), tenant)
	require.NoError(t, err)
	assert.Equal(t, 401, after.StatusCode())
}

// The generated client exports a tenant and imports it under another slug,
// the export's body streamed straight into the import's request.
func TestGeneratedClientExportsAndImports(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := servertest.Start(t, servertest.Config(t))
	platform := bearer(srv.PlatformToken(t))
	c, err := apiclient.NewClientWithResponses(srv.Base)
	require.NoError(t, err)
	purge := func(slug string) {
		t.Cleanup(func() {
			_, _ = c.DeleteTenantWithResponse(ctx, slug, nil, platform)
			yes := true
			_, _ = c.DeleteTenantWithResponse(ctx, slug, &apiclient.DeleteTenantParams{Purge: &yes}, platform)
		})
	}
	slug, copySlug := dbtest.Name("e2x_"), dbtest.Name("e2y_")
	purge(slug)
	purge(copySlug)
	created, err := c.CreateTenantWithResponse(ctx, apiclient.TenantCreate{Slug: slug, Name: "Exported"}, platform)
	require.NoError(t, err)
	require.Equal(t, 201, created.StatusCode(), "%s", created.Body)
	for _, name := range []string{"Grace Hopper", "Ada Lovelace"} {
		m, err := c.CreateMemberWithResponse(ctx, slug, apiclient.MemberCreate{FullName: name}, platform)
		require.NoError(t, err)
		require.Equal(t, 201, m.StatusCode(), "%s", m.Body)
	}

	exp, err := c.ExportTenant(ctx, slug, platform)
	require.NoError(t, err)
	defer exp.Body.Close()
	require.Equal(t, 200, exp.StatusCode)
	assert.Equal(t, "application/gzip", exp.Header.Get("Content-Type"))
	assert.Equal(t, "2", exp.Header.Get("X-Export-Rows"))
	imp, err := c.ImportTenantWithBodyWithResponse(ctx, &apiclient.ImportTenantParams{As: &copySlug}, "application/gzip", exp.Body, platform)
	require.NoError(t, err)
	require.Equal(t, 201, imp.StatusCode(), "%s", imp.Body)
	require.NotNil(t, imp.JSON201)
	assert.Equal(t, copySlug, imp.JSON201.Slug)
	assert.Equal(t, "Exported", imp.JSON201.Name)
	assert.NotEqual(t, created.JSON201.Id, imp.JSON201.Id)

	members, err := c.ListMembersWithResponse(ctx, copySlug, nil, platform)
	require.NoError(t, err)
	require.Equal(t, 200, members.StatusCode(), "%s", members.Body)
	require.Len(t, members.JSON200.Items, 2)
	assert.Equal(t, imp.JSON201.Id, members.JSON200.Items[0].TenantId)

	again, err := c.ImportTenantWithBodyWithResponse(ctx, &apiclient.ImportTenantParams{As: &copySlug}, "application/gzip",
		strings.NewReader("not an archive"), platform)
	require.NoError(t, err)
	require.Equal(t, 400, again.StatusCode())
	assert.Equal(t, "invalid_archive", code(again.ApplicationproblemJSON400))
}
