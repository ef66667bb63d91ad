package cards_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/publicdigit/publicdigit/internal/apptest"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/cards"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/membership"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

func TestStateMachine(t *testing.T) {
	now := time.Now()
	later, earlier := now.Add(time.Hour), now.Add(-time.Hour)
	ok := []struct {
		from   string
		action cards.Action
		to     string
	}{
		{"issued", cards.Activate, "active"}, {"issued", cards.Revoke, "revoked"}, {"issued", cards.Expire, "expired"},
		{"active", cards.Revoke, "revoked"}, {"active", cards.Expire, "expired"},
	}
	for _, c := range ok {
		to, err := cards.Next(c.from, c.action, later, now)
		require.NoError(t, err, "%s %s", c.from, c.action)
		assert.Equal(t, c.to, to)
	}
	bad := []struct {
		from   string
		action cards.Action
	}{
		{"active", cards.Activate}, {"revoked", cards.Activate}, {"revoked", cards.Revoke}, {"revoked", cards.Expire},
		{"expired", cards.Activate}, {"expired", cards.Revoke}, {"expired", cards.Expire},
	}
	for _, c := range bad {
		_, err := cards.Next(c.from, c.action, later, now)
		assert.ErrorIs(t, err, cards.ErrIllegalTransition, "%s %s", c.from, c.action)
	}
	_, err := cards.Next("issued", cards.Activate, earlier, now)
	assert.ErrorIs(t, err, cards.ErrIllegalTransition, "past its validity")
}

type fixture struct {
	cards   *cards.Service
	members *membership.Service
	a, b    tenant.Slug
}

func setup(t *testing.T) fixture {
	t.Helper()
	a := dbtest.Tenant(t, "carda")
	b := dbtest.Tenant(t, "cardb")
	r := apptest.Router(t, dbtest.Config(t), nil)
	return fixture{cards: cards.NewService(r), members: membership.NewService(r, nil),
		a: tenant.MustSlug(a.Slug), b: tenant.MustSlug(b.Slug)}
}

func TestCardLifecycle(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	m, err := f.members.Create(ctx, f.a, membership.New{FullName: "Grace"})
	require.NoError(t, err)

	c, err := f.cards.Issue(ctx, f.a, cards.Issue{MemberID: m.ID}, "test")
	require.NoError(t, err)
	assert.Equal(t, "issued", c.Status)
	assert.Regexp(t, `^PD1-[A-Z2-7]{32}$`, c.QRCode)

	v, err := f.cards.Validate(ctx, f.a, c.QRCode, "gate")
	require.NoError(t, err)
	assert.Equal(t, cards.Inactive, v.Result)

	c, err = f.cards.Transition(ctx, f.a, c.ID, cards.Activate, "test")
	require.NoError(t, err)
	assert.Equal(t, "active", c.Status)
	assert.NotNil(t, c.ActivatedAt)

	v, err = f.cards.Validate(ctx, f.a, c.QRCode, "gate")
	require.NoError(t, err)
	assert.Equal(t, cards.Valid, v.Result)
	assert.Equal(t, c.ID, *v.CardID)

	_, err = f.cards.Transition(ctx, f.a, c.ID, cards.Activate, "test")
	assert.ErrorIs(t, err, cards.ErrIllegalTransition)

	c, err = f.cards.Transition(ctx, f.a, c.ID, cards.Revoke, "test")
	require.NoError(t, err)
	assert.Equal(t, "revoked", c.Status)
	v, err = f.cards.Validate(ctx, f.a, c.QRCode, "gate")
	require.NoError(t, err)
	assert.Equal(t, cards.Revoked, v.Result)

	for _, act := range []cards.Action{cards.Activate, cards.Revoke, cards.Expire} {
		_, err = f.cards.Transition(ctx, f.a, c.ID, act, "test")
		assert.ErrorIs(t, err, cards.ErrIllegalTransition, act)
	}

	acts, more, err := f.cards.Activities(ctx, f.a, c.ID, nil, 50)
	require.NoError(t, err)
	assert.False(t, more)
	var names []string
	for _, a := range acts {
		names = append(names, a.Action)
	}
	assert.Equal(t, []string{"issued", "validated", "activated", "validated", "revoked", "validated"}, names,
		"every change (and scan) logged, failed transitions not")

	// Expire path and the unknown QR.
	c2, err := f.cards.Issue(ctx, f.a, cards.Issue{MemberID: m.ID}, "")
	require.NoError(t, err)
	c2, err = f.cards.Transition(ctx, f.a, c2.ID, cards.Expire, "")
	require.NoError(t, err)
	v, err = f.cards.Validate(ctx, f.a, c2.QRCode, "")
	require.NoError(t, err)
	assert.Equal(t, cards.Expired, v.Result)
	v, err = f.cards.Validate(ctx, f.a, "PD1-NOPE", "")
	require.NoError(t, err)
	assert.Equal(t, cards.Unknown, v.Result)
	assert.Nil(t, v.CardID)

	// Deleting a member with cards is refused.
	assert.ErrorIs(t, f.members.Delete(ctx, f.a, m.ID), membership.ErrHasCards)
}

// The golden rule across tenants: B never reads, changes or validates A's card.
func TestCardsOfAnotherTenant(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	m, err := f.members.Create(ctx, f.a, membership.New{FullName: "Alan"})
	require.NoError(t, err)
	c, err := f.cards.Issue(ctx, f.a, cards.Issue{MemberID: m.ID}, "")
	require.NoError(t, err)

	_, err = f.cards.Issue(ctx, f.b, cards.Issue{MemberID: m.ID}, "")
	assert.ErrorIs(t, err, cards.ErrMemberNotFound, "B cannot issue for A's member")
	_, err = f.cards.Get(ctx, f.b, c.ID)
	assert.ErrorIs(t, err, cards.ErrNotFound)
	_, err = f.cards.Transition(ctx, f.b, c.ID, cards.Revoke, "")
	assert.ErrorIs(t, err, cards.ErrNotFound)
	_, _, err = f.cards.Activities(ctx, f.b, c.ID, nil, 10)
	assert.ErrorIs(t, err, cards.ErrNotFound)
	v, err := f.cards.Validate(ctx, f.b, c.QRCode, "")
	require.NoError(t, err)
	assert.Equal(t, cards.Unknown, v.Result)
	list, _, err := f.cards.List(ctx, f.b, cards.ListQuery{Limit: 100})
	require.NoError(t, err)
	assert.Empty(t, list)

	got, err := f.cards.Get(ctx, f.a, c.ID)
	require.NoError(t, err)
	assert.Equal(t, "issued", got.Status, "A's card untouched")
}

func TestIssueRules(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	inactive, err := f.members.Create(ctx, f.a, membership.New{FullName: "Sleepy", Status: "inactive"})
	require.NoError(t, err)
	_, err = f.cards.Issue(ctx, f.a, cards.Issue{MemberID: inactive.ID}, "")
	assert.ErrorIs(t, err, cards.ErrMemberNotActive)
	_, err = f.cards.Issue(ctx, f.a, cards.Issue{MemberID: uuid.New()}, "")
	assert.ErrorIs(t, err, cards.ErrMemberNotFound)
	past := time.Now().Add(-time.Hour)
	_, err = f.cards.Issue(ctx, f.a, cards.Issue{MemberID: inactive.ID, ExpiresAt: &past}, "")
	assert.ErrorIs(t, err, cards.ErrInvalidData)
	_, err = f.cards.Issue(ctx, f.a, cards.Issue{}, "")
	assert.ErrorIs(t, err, cards.ErrInvalidData)
}

// 32 concurrent issuers: every QR code is unique and every card listed once.
func TestQRCodesUniqueUnderConcurrentIssuers(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	m, err := f.members.Create(ctx, f.a, membership.New{FullName: "Many Cards"})
	require.NoError(t, err)
	var mu sync.Mutex
	codes := map[string]bool{}
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				c, err := f.cards.Issue(ctx, f.a, cards.Issue{MemberID: m.ID}, "")
				if !assert.NoError(t, err) {
					return
				}
				mu.Lock()
				assert.False(t, codes[c.QRCode], "duplicate QR code")
				codes[c.QRCode] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	assert.Len(t, codes, 160)
	var all []cards.Card
	var after *uuid.UUID
	for {
		page, more, err := f.cards.List(ctx, f.a, cards.ListQuery{After: after, Limit: 50, MemberID: &m.ID, Status: "issued"})
		require.NoError(t, err)
		all = append(all, page...)
		if !more {
			break
		}
		after = &page[len(page)-1].ID
	}
	assert.Len(t, all, 160)
}
