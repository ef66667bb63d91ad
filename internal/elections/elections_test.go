package elections_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/apptest"
	"github.com/publicdigit/publicdigit/internal/cards"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/elections"
	"github.com/publicdigit/publicdigit/internal/geography"
	"github.com/publicdigit/publicdigit/internal/membership"
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

var admin = elections.Viewer{Admin: true}

func TestDecide(t *testing.T) {
	for _, c := range []struct {
		seats         int
		votes         []int
		elected, tied string // one character per candidate: y/n
		tie           bool
		why           string
	}{
		{1, []int{5, 3, 1}, "ynn", "nnn", false, "a clear winner"},
		{1, []int{4, 4, 1}, "nnn", "yyn", true, "a tie for the only seat"},
		{2, []int{5, 3, 3, 1}, "ynn" + "n", "nyy" + "n", true, "a tie for the last seat: the first is elected"},
		{2, []int{5, 5, 3}, "yyn", "nnn", false, "equal votes within the seats are no tie"},
		{3, []int{2, 1}, "yy", "nn", false, "fewer candidates than seats"},
		{2, []int{0, 0, 0}, "nnn", "yyy", true, "nobody voted"},
		{1, []int{}, "", "", false, "no candidate"},
	} {
		elected, tied, tie := elections.Decide(c.seats, c.votes)
		assert.Equal(t, c.elected, yn(elected), c.why)
		assert.Equal(t, c.tied, yn(tied), c.why)
		assert.Equal(t, c.tie, tie, c.why)
	}
}

func yn(bs []bool) string {
	var b strings.Builder
	for _, x := range bs {
		if x {
			b.WriteByte('y')
		} else {
			b.WriteByte('n')
		}
	}
	return b.String()
}

func TestStateMachine(t *testing.T) {
	now := time.Now()
	ready := elections.State{Status: elections.StatusDraft, ClosesAt: now.Add(time.Hour), Now: now, Positions: 2}
	to, err := elections.Next(ready, elections.Open)
	require.NoError(t, err)
	assert.Equal(t, elections.StatusOpen, to)
	for why, s := range map[string]elections.State{
		"no position":    {Status: elections.StatusDraft, ClosesAt: now.Add(time.Hour), Now: now},
		"empty position": {Status: elections.StatusDraft, ClosesAt: now.Add(time.Hour), Now: now, Positions: 2, Empty: 1},
		"window over":    {Status: elections.StatusDraft, ClosesAt: now, Now: now, Positions: 1},
		"open already":   {Status: elections.StatusOpen, ClosesAt: now.Add(time.Hour), Now: now, Positions: 1},
		"closed":         {Status: elections.StatusClosed, ClosesAt: now.Add(time.Hour), Now: now, Positions: 1},
		"published":      {Status: elections.StatusPublished, ClosesAt: now.Add(time.Hour), Now: now, Positions: 1},
	} {
		_, err := elections.Next(s, elections.Open)
		assert.ErrorIs(t, err, elections.ErrIllegalTransition, why)
	}
	for _, c := range []struct {
		from   string
		action elections.Action
		to     string
	}{
		{elections.StatusOpen, elections.Close, elections.StatusClosed},
		{elections.StatusClosed, elections.Publish, elections.StatusPublished},
	} {
		to, err := elections.Next(elections.State{Status: c.from}, c.action)
		require.NoError(t, err)
		assert.Equal(t, c.to, to)
	}
	for _, c := range []struct {
		from   string
		action elections.Action
	}{
		{elections.StatusDraft, elections.Close}, {elections.StatusClosed, elections.Close},
		{elections.StatusDraft, elections.Publish}, {elections.StatusOpen, elections.Publish},
		{elections.StatusPublished, elections.Publish}, {elections.StatusPublished, elections.Close},
	} {
		_, err := elections.Next(elections.State{Status: c.from}, c.action)
		assert.ErrorIs(t, err, elections.ErrIllegalTransition, "%s %s", c.from, c.action)
	}
}

// env is the services of an App on the test database, whose tenant work goes
// through PgBouncer (a server pool of 2).
type env struct {
	a   *app.App
	ctx context.Context
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return &env{a: apptest.Open(t, apptest.Options{}), ctx: context.Background()}
}

// tenant makes a tenant with the elections module (and digital_cards).
func (e *env) tenant(t *testing.T, prefix string) dbtest.TestTenant {
	t.Helper()
	return dbtest.Tenant(t, prefix, modules.Elections)
}

// voter creates an active member with an active card.
func (e *env) voter(t *testing.T, tt dbtest.TestTenant, name string, geo *int64) uuid.UUID {
	t.Helper()
	slug := tenant.MustSlug(tt.Slug)
	m, err := e.a.Members.Create(e.ctx, slug, membership.New{FullName: name, GeoUnitID: geo})
	require.NoError(t, err)
	c, err := e.a.Cards.Issue(e.ctx, slug, cards.Issue{MemberID: m.ID}, "test")
	require.NoError(t, err)
	_, err = e.a.Cards.Transition(e.ctx, slug, c.ID, cards.Activate, "test")
	require.NoError(t, err)
	return m.ID
}

// election creates a draft election with positions (title → seats), a
// candidate per member listed for each, and returns it.
type spec struct {
	title      string
	seats      int
	candidates []uuid.UUID
}

func (e *env) election(t *testing.T, tt dbtest.TestTenant, in elections.New, positions ...spec) elections.Detail {
	t.Helper()
	slug := tenant.MustSlug(tt.Slug)
	if in.Title == "" {
		in.Title = "Executive committee"
	}
	if in.OpensAt.IsZero() {
		in.OpensAt, in.ClosesAt = time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
	}
	el, err := e.a.Elections.Create(e.ctx, slug, in, "test")
	require.NoError(t, err)
	for _, p := range positions {
		pos, err := e.a.Elections.AddPosition(e.ctx, slug, el.ID, elections.NewPosition{Title: p.title, Seats: p.seats}, "test")
		require.NoError(t, err)
		for _, m := range p.candidates {
			_, err := e.a.Elections.AddCandidate(e.ctx, slug, el.ID, pos.ID, m, "test")
			require.NoError(t, err)
		}
	}
	d, err := e.a.Elections.Get(e.ctx, slug, el.ID, admin)
	require.NoError(t, err)
	return d
}

func (e *env) vote(tt dbtest.TestTenant, id, member uuid.UUID, choices ...elections.Choice) error {
	_, err := e.a.Elections.Vote(e.ctx, tenant.MustSlug(tt.Slug), id, elections.Ballot{MemberID: member, Choices: choices}, elections.Viewer{}, "test")
	return err
}

func choose(p elections.Position, idx ...int) elections.Choice {
	c := elections.Choice{PositionID: p.ID}
	for _, i := range idx {
		c.CandidateIDs = append(c.CandidateIDs, p.Candidates[i].ID)
	}
	return c
}

// The whole life of an election: a draft that changes, opens (a draft is
// invisible to non-admins), takes ballots that count once, closes (the
// tally), publishes; every step refused out of order; the log.
func TestElectionLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tt := e.tenant(t, "ellife")
	slug := tenant.MustSlug(tt.Slug)
	var voters []uuid.UUID
	for _, n := range []string{"Asha", "Bikash", "Chandra", "Dipa", "Eka"} {
		voters = append(voters, e.voter(t, tt, n, nil))
	}
	d := e.election(t, tt, elections.New{},
		spec{"President", 1, voters[:2]},
		spec{"Committee", 2, voters[2:5]})
	id := d.ID
	assert.Equal(t, elections.StatusDraft, d.Status)
	require.Len(t, d.Positions, 2)
	assert.Equal(t, "Asha", d.Positions[0].Candidates[0].FullName)
	pres, comm := d.Positions[0], d.Positions[1]

	_, err := e.a.Elections.Get(e.ctx, slug, id, elections.Viewer{})
	assert.ErrorIs(t, err, elections.ErrNotFound, "a draft is hidden from non-admins")
	list, _, err := e.a.Elections.List(e.ctx, slug, elections.ListQuery{Limit: 10}, elections.Viewer{})
	require.NoError(t, err)
	assert.Empty(t, list)
	assert.ErrorIs(t, e.vote(tt, id, voters[0], choose(pres, 0)), elections.ErrNotFound, "no ballot in a hidden draft")
	_, err = e.a.Elections.Vote(e.ctx, slug, id, elections.Ballot{MemberID: voters[0]}, admin, "test")
	assert.ErrorIs(t, err, elections.ErrNotOpen)

	title := "Executive committee 2026"
	up, err := e.a.Elections.Update(e.ctx, slug, id, elections.Patch{Title: &title}, "test")
	require.NoError(t, err)
	assert.Equal(t, title, up.Title)
	_, err = e.a.Elections.Transition(e.ctx, slug, id, elections.Close, "test")
	assert.ErrorIs(t, err, elections.ErrIllegalTransition)
	_, err = e.a.Elections.Results(e.ctx, slug, id, admin)
	assert.ErrorIs(t, err, elections.ErrNoResults)

	opened, err := e.a.Elections.Transition(e.ctx, slug, id, elections.Open, "test")
	require.NoError(t, err)
	assert.Equal(t, elections.StatusOpen, opened.Status)
	assert.NotNil(t, opened.OpenedAt)
	_, err = e.a.Elections.Update(e.ctx, slug, id, elections.Patch{Title: &title}, "test")
	assert.ErrorIs(t, err, elections.ErrLocked)
	_, err = e.a.Elections.AddPosition(e.ctx, slug, id, elections.NewPosition{Title: "Late", Seats: 1}, "test")
	assert.ErrorIs(t, err, elections.ErrLocked)
	_, err = e.a.Elections.AddCandidate(e.ctx, slug, id, pres.ID, voters[4], "test")
	assert.ErrorIs(t, err, elections.ErrLocked)
	assert.ErrorIs(t, e.a.Elections.RemovePosition(e.ctx, slug, id, pres.ID, "test"), elections.ErrLocked)
	assert.ErrorIs(t, e.a.Elections.RemoveCandidate(e.ctx, slug, id, pres.ID, pres.Candidates[0].ID, "test"), elections.ErrLocked)
	seen, err := e.a.Elections.Get(e.ctx, slug, id, elections.Viewer{})
	require.NoError(t, err, "open: visible to everyone")
	assert.Len(t, seen.Positions, 2)

	// Ballots: Asha ×2 for President; Committee: Chandra+Dipa, Chandra+Eka, Dipa.
	require.NoError(t, e.vote(tt, id, voters[0], choose(pres, 0), choose(comm, 0, 1)))
	require.NoError(t, e.vote(tt, id, voters[1], choose(pres, 0), choose(comm, 0, 2)))
	require.NoError(t, e.vote(tt, id, voters[2], choose(pres, 1), choose(comm, 1)))
	require.NoError(t, e.vote(tt, id, voters[3]), "a blank ballot counts as cast")
	assert.ErrorIs(t, e.vote(tt, id, voters[0], choose(pres, 1)), elections.ErrAlreadyVoted)
	_, err = e.a.Elections.Results(e.ctx, slug, id, admin)
	assert.ErrorIs(t, err, elections.ErrNoResults, "no running tally, not even for admins")

	closed, err := e.a.Elections.Transition(e.ctx, slug, id, elections.Close, "test")
	require.NoError(t, err)
	assert.Equal(t, elections.StatusClosed, closed.Status)
	require.NotNil(t, closed.Ballots)
	assert.Equal(t, 4, *closed.Ballots)
	assert.ErrorIs(t, e.vote(tt, id, voters[4], choose(pres, 0)), elections.ErrNotOpen)
	_, err = e.a.Elections.Results(e.ctx, slug, id, elections.Viewer{})
	assert.ErrorIs(t, err, elections.ErrNotPublished)

	res, err := e.a.Elections.Results(e.ctx, slug, id, admin)
	require.NoError(t, err)
	assert.Equal(t, 4, res.Ballots)
	require.Len(t, res.Positions, 2)
	p := res.Positions[0]
	assert.Equal(t, "President", p.Title)
	assert.False(t, p.Tie)
	assert.Equal(t, []string{"Asha:2:y", "Bikash:1:n"}, summary(p))
	c := res.Positions[1]
	assert.False(t, c.Tie, "Chandra 2 and Dipa 2 fill the 2 seats; Eka has 1")
	assert.Equal(t, []string{"Chandra:2:y", "Dipa:2:y", "Eka:1:n"}, summary(c))
	assert.Equal(t, recount(t, tt, id), tally(res), "the tally is a recount of the ballots")

	published, err := e.a.Elections.Transition(e.ctx, slug, id, elections.Publish, "test")
	require.NoError(t, err)
	assert.Equal(t, elections.StatusPublished, published.Status)
	pub, err := e.a.Elections.Results(e.ctx, slug, id, elections.Viewer{})
	require.NoError(t, err, "published: readable by everyone")
	assert.Equal(t, res.Positions, pub.Positions)
	_, err = e.a.Elections.Transition(e.ctx, slug, id, elections.Publish, "test")
	assert.ErrorIs(t, err, elections.ErrIllegalTransition)

	// The log: every change and every ballot, a ballot's entry without its choices.
	acts, more, err := e.a.Elections.Activities(e.ctx, slug, id, nil, 100)
	require.NoError(t, err)
	assert.False(t, more)
	var actions []string
	for _, a := range acts {
		actions = append(actions, a.Action)
		if a.Action == "ballot_cast" {
			assert.NotContains(t, string(a.Detail), "candidate")
			assert.NotContains(t, string(a.Detail), "position")
			assert.Contains(t, string(a.Detail), "member_id")
		}
	}
	assert.Equal(t, []string{"created", "position_added", "candidate_added", "candidate_added", "position_added",
		"candidate_added", "candidate_added", "candidate_added", "updated", "opened",
		"ballot_cast", "ballot_cast", "ballot_cast", "ballot_cast", "closed", "published"}, actions)
	assert.JSONEq(t, `{"from": "open", "to": "closed", "ballots": 4}`, string(acts[14].Detail))
}

func summary(p elections.PositionResult) []string {
	var out []string
	for _, c := range p.Candidates {
		e := "n"
		if c.Elected {
			e = "y"
		}
		out = append(out, c.FullName+":"+strconv.Itoa(c.Votes)+":"+e)
	}
	return out
}

// tally is the results as candidate → votes.
func tally(r elections.Results) map[uuid.UUID]int {
	out := map[uuid.UUID]int{}
	for _, p := range r.Positions {
		for _, c := range p.Candidates {
			out[c.CandidateID] = c.Votes
		}
	}
	return out
}

// recount counts the stored ballots' choices directly (admin connection).
func recount(t *testing.T, tt dbtest.TestTenant, id uuid.UUID) map[uuid.UUID]int {
	t.Helper()
	rows, err := dbtest.AdminDB(t).QueryContext(context.Background(), `SELECT c.id,
		(SELECT count(*) FROM `+pgx.Identifier{tt.Schema, "election_ballots"}.Sanitize()+` b
		  WHERE b.election_id = $1 AND c.id = ANY(b.choices))
		FROM `+pgx.Identifier{tt.Schema, "election_candidates"}.Sanitize()+` c WHERE c.election_id = $1`, id)
	require.NoError(t, err)
	defer rows.Close()
	out := map[uuid.UUID]int{}
	for rows.Next() {
		var c uuid.UUID
		var n int
		require.NoError(t, rows.Scan(&c, &n))
		out[c] = n
	}
	require.NoError(t, rows.Err())
	return out
}

// Ballots are refused, with nothing written, outside the voting window, by
// members who may not vote, and for choices that are not candidates of that
// position of this election — each with its own code.
func TestBallotRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tt := e.tenant(t, "elref")
	other := e.tenant(t, "elrefo")
	slug := tenant.MustSlug(tt.Slug)

	// Geography: a province with a district, and another province.
	p := dbtest.Name("E") + "-"
	geo := geoUnits(t, p, "$NP,Nepal,country,", "$BAG,Bagmati,province,$NP", "$KTM,Kathmandu,district,$BAG", "$KOS,Koshi,province,$NP")

	a := e.voter(t, tt, "Inside", ptr(geo[p+"KTM"]))
	b := e.voter(t, tt, "Outside", ptr(geo[p+"KOS"]))
	nowhere := e.voter(t, tt, "Nowhere", nil)
	c1, c2 := e.voter(t, tt, "Cand One", nil), e.voter(t, tt, "Cand Two", nil)
	scoped := e.election(t, tt, elections.New{ScopeUnitID: ptr(geo[p+"BAG"])}, spec{"Chair", 1, []uuid.UUID{c1, c2}}, spec{"Board", 2, []uuid.UUID{c1, c2, a}})
	second := e.election(t, tt, elections.New{Title: "Another"}, spec{"Chair", 1, []uuid.UUID{c1, c2}})
	later := e.election(t, tt, elections.New{Title: "Later", OpensAt: time.Now().Add(time.Hour), ClosesAt: time.Now().Add(2 * time.Hour)},
		spec{"Chair", 1, []uuid.UUID{c1}})
	soon := e.election(t, tt, elections.New{Title: "Soon over"}, spec{"Chair", 1, []uuid.UUID{c1}})
	o1 := e.voter(t, other, "Other", nil)
	foreign := e.election(t, other, elections.New{}, spec{"Chair", 1, []uuid.UUID{o1}})
	for _, d := range []elections.Detail{scoped, second, later, soon} {
		_, err := e.a.Elections.Transition(e.ctx, slug, d.ID, elections.Open, "test")
		require.NoError(t, err)
	}
	_, err := e.a.Elections.Transition(e.ctx, tenant.MustSlug(other.Slug), foreign.ID, elections.Open, "test")
	require.NoError(t, err)
	chair, board := scoped.Positions[0], scoped.Positions[1]

	// Members who may not vote.
	inactive := e.voter(t, tt, "Inactive", ptr(geo[p+"KTM"]))
	_, err = e.a.Members.Update(e.ctx, slug, inactive, membership.Patch{Status: ptr("inactive")})
	require.NoError(t, err)
	noCard, err := e.a.Members.Create(e.ctx, slug, membership.New{FullName: "No card", GeoUnitID: ptr(geo[p+"KTM"])})
	require.NoError(t, err)
	issuedOnly, err := e.a.Members.Create(e.ctx, slug, membership.New{FullName: "Issued only", GeoUnitID: ptr(geo[p+"KTM"])})
	require.NoError(t, err)
	_, err = e.a.Cards.Issue(e.ctx, slug, cards.Issue{MemberID: issuedOnly.ID}, "test")
	require.NoError(t, err)
	revoked := e.voter(t, tt, "Revoked", ptr(geo[p+"KTM"]))
	rc, _, err := e.a.Cards.List(e.ctx, slug, cards.ListQuery{Limit: 1, MemberID: &revoked})
	require.NoError(t, err)
	_, err = e.a.Cards.Transition(e.ctx, slug, rc[0].ID, cards.Revoke, "test")
	require.NoError(t, err)

	before := counts(t, tt)
	for _, c := range []struct {
		why      string
		election uuid.UUID
		member   uuid.UUID
		choices  []elections.Choice
		want     error
	}{
		{"not yet open", later.ID, a, nil, elections.ErrOutsideWindow},
		{"unknown election", uuid.New(), a, nil, elections.ErrNotFound},
		{"election of another tenant", foreign.ID, a, nil, elections.ErrNotFound},
		{"unknown member", scoped.ID, uuid.New(), nil, elections.ErrMemberNotFound},
		{"member of another tenant", scoped.ID, o1, nil, elections.ErrMemberNotFound},
		{"inactive member", scoped.ID, inactive, nil, elections.ErrNotEligible},
		{"no card", scoped.ID, noCard.ID, nil, elections.ErrNotEligible},
		{"card not activated", scoped.ID, issuedOnly.ID, nil, elections.ErrNotEligible},
		{"card revoked", scoped.ID, revoked, nil, elections.ErrNotEligible},
		{"outside the scope", scoped.ID, b, nil, elections.ErrNotEligible},
		{"no unit in a scoped election", scoped.ID, nowhere, nil, elections.ErrNotEligible},
		{"candidate of another position", scoped.ID, a, []elections.Choice{{PositionID: chair.ID, CandidateIDs: []uuid.UUID{board.Candidates[2].ID}}}, elections.ErrInvalidBallot},
		{"candidate of another election", scoped.ID, a, []elections.Choice{choose(second.Positions[0], 0)}, elections.ErrInvalidBallot},
		{"candidate of another election, under this position", scoped.ID, a, []elections.Choice{{PositionID: chair.ID, CandidateIDs: []uuid.UUID{second.Positions[0].Candidates[0].ID}}}, elections.ErrInvalidBallot},
		{"candidate of another tenant", scoped.ID, a, []elections.Choice{{PositionID: chair.ID, CandidateIDs: []uuid.UUID{foreign.Positions[0].Candidates[0].ID}}}, elections.ErrInvalidBallot},
		{"unknown position", scoped.ID, a, []elections.Choice{{PositionID: uuid.New(), CandidateIDs: []uuid.UUID{chair.Candidates[0].ID}}}, elections.ErrInvalidBallot},
		{"more than the seats", scoped.ID, a, []elections.Choice{choose(chair, 0, 1)}, elections.ErrInvalidBallot},
		{"a candidate twice", scoped.ID, a, []elections.Choice{{PositionID: board.ID, CandidateIDs: []uuid.UUID{board.Candidates[0].ID, board.Candidates[0].ID}}}, elections.ErrInvalidBallot},
		{"a position twice", scoped.ID, a, []elections.Choice{choose(board, 0), choose(board, 1)}, elections.ErrInvalidBallot},
		{"no member", scoped.ID, uuid.Nil, nil, elections.ErrInvalidBallot},
	} {
		err := e.vote(tt, c.election, c.member, c.choices...)
		assert.ErrorIs(t, err, c.want, c.why)
	}
	assert.Equal(t, before, counts(t, tt), "no refused ballot wrote anything")

	// The eligible member votes once, in scope (a district below the province).
	require.NoError(t, e.vote(tt, scoped.ID, a, choose(chair, 1), choose(board, 0, 2)))
	assert.ErrorIs(t, e.vote(tt, scoped.ID, a, choose(chair, 0)), elections.ErrAlreadyVoted)
	// The window closes by the clock, even while the election is still open
	// (the clock moved on: its closing time is set in the past directly).
	require.NoError(t, e.vote(tt, soon.ID, b))
	_, err = dbtest.AdminDB(t).ExecContext(e.ctx, `UPDATE `+pgx.Identifier{tt.Schema, "elections"}.Sanitize()+
		` SET opens_at = now() - interval '1 hour', closes_at = now() - interval '1 second' WHERE id = $1`, soon.ID)
	require.NoError(t, err)
	assert.ErrorIs(t, e.vote(tt, soon.ID, a), elections.ErrOutsideWindow)
	st, err := e.a.Elections.Get(e.ctx, slug, soon.ID, admin)
	require.NoError(t, err)
	assert.Equal(t, elections.StatusOpen, st.Status, "still open: only the clock refuses")
}

func ptr[T any](v T) *T { return &v }

// geoUnits imports units (CSV lines, "$" replaced by prefix) and returns
// their ids by code; removed at cleanup.
func geoUnits(t *testing.T, prefix string, lines ...string) map[string]int64 {
	t.Helper()
	pool := dbtest.AdminPool(t)
	t.Cleanup(func() {
		_, err := pool.Exec(context.Background(), `DELETE FROM landlord.geo_administrative_units WHERE starts_with(code, $1)`, prefix)
		assert.NoError(t, err)
	})
	var b strings.Builder
	b.WriteString("code,name,level,parent_code\n")
	for _, l := range lines {
		b.WriteString(strings.ReplaceAll(l, "$", prefix) + "\n")
	}
	_, err := geography.New(pool).Import(context.Background(), strings.NewReader(b.String()))
	require.NoError(t, err)
	out := map[string]int64{}
	rows, err := pool.Query(context.Background(), `SELECT code, id FROM landlord.geo_administrative_units WHERE starts_with(code, $1)`, prefix)
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var code string
		var id int64
		require.NoError(t, rows.Scan(&code, &id))
		out[code] = id
	}
	return out
}

// counts returns the rows of the election tables, read directly.
func counts(t *testing.T, tt dbtest.TestTenant) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, table := range []string{"election_voters", "election_ballots", "election_activities"} {
		var n int
		require.NoError(t, dbtest.AdminDB(t).QueryRowContext(context.Background(),
			`SELECT count(*) FROM `+pgx.Identifier{tt.Schema, table}.Sanitize()).Scan(&n))
		out[table] = n
	}
	return out
}

// The stored ballots cannot be joined back to the roll: no shared column,
// random (version 4) ids, and once the election closes every ballot is
// rewritten by the closing transaction (fresh ids, random order), so not
// even PostgreSQL's transaction ids (xmin) tie a ballot to a voter's row.
func TestBallotSecrecy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tt := e.tenant(t, "elsec")
	slug := tenant.MustSlug(tt.Slug)
	var voters []uuid.UUID
	for i := 0; i < 6; i++ {
		voters = append(voters, e.voter(t, tt, "Voter", nil))
	}
	d := e.election(t, tt, elections.New{}, spec{"Chair", 1, voters[:3]})
	_, err := e.a.Elections.Transition(e.ctx, slug, d.ID, elections.Open, "test")
	require.NoError(t, err)
	for i, v := range voters {
		require.NoError(t, e.vote(tt, d.ID, v, choose(d.Positions[0], i%3)))
	}
	db := dbtest.AdminDB(t)
	q := func(table, cols string) []string {
		t.Helper()
		rows, err := db.QueryContext(e.ctx, `SELECT `+cols+` FROM `+pgx.Identifier{tt.Schema, table}.Sanitize())
		require.NoError(t, err)
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			require.NoError(t, rows.Scan(&s))
			out = append(out, s)
		}
		return out
	}
	var ballotCols []string
	rows, err := db.QueryContext(e.ctx, `SELECT table_name || '.' || column_name FROM information_schema.columns
		WHERE table_schema = $1 AND table_name = 'election_ballots' ORDER BY 1`, tt.Schema)
	require.NoError(t, err)
	for rows.Next() {
		var c string
		require.NoError(t, rows.Scan(&c))
		ballotCols = append(ballotCols, c)
	}
	require.NoError(t, rows.Close())
	assert.Equal(t, []string{"election_ballots.choices", "election_ballots.election_id", "election_ballots.id",
		"election_ballots.sealed", "election_ballots.tenant_id"}, ballotCols,
		"no voter, no time, no sequence: nothing to join the roll on")
	before := q("election_ballots", "id::text")
	require.Len(t, before, 6)
	for _, id := range before {
		assert.Equal(t, uuid.Version(4), uuid.MustParse(id).Version(), "a random id, no time inside")
	}

	_, err = e.a.Elections.Transition(e.ctx, slug, d.ID, elections.Close, "test")
	require.NoError(t, err)
	after := q("election_ballots", "id::text")
	require.Len(t, after, 6)
	for _, id := range after {
		assert.NotContains(t, before, id, "sealed: every ballot has a fresh id")
	}
	assert.Equal(t, []string{"true"}, q("election_ballots", "DISTINCT sealed::text"))
	ballotTx := q("election_ballots", "DISTINCT xmin::text")
	rollTx := q("election_voters", "DISTINCT xmin::text")
	assert.Len(t, ballotTx, 1, "all ballots written by the closing transaction")
	assert.Len(t, rollTx, 6)
	assert.NotContains(t, rollTx, ballotTx[0])
	res, err := e.a.Elections.Results(e.ctx, slug, d.ID, admin)
	require.NoError(t, err)
	assert.Equal(t, recount(t, tt, d.ID), tally(res))
	assert.Equal(t, []int{2, 2, 2}, []int{res.Positions[0].Candidates[0].Votes, res.Positions[0].Candidates[1].Votes, res.Positions[0].Candidates[2].Votes})
	assert.True(t, res.Positions[0].Tie)
}

// Sealing in chunks (here of 2 ballots): every ballot is rewritten once,
// by the closing transaction, and the tally is the recount.
func TestSealInChunks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	elections.SetSealChunk(e.a.Elections, 2)
	tt := e.tenant(t, "elseal")
	slug := tenant.MustSlug(tt.Slug)
	var voters []uuid.UUID
	for i := 0; i < 7; i++ {
		voters = append(voters, e.voter(t, tt, "Voter", nil))
	}
	d := e.election(t, tt, elections.New{}, spec{"Board", 2, voters[:3]})
	_, err := e.a.Elections.Transition(e.ctx, slug, d.ID, elections.Open, "test")
	require.NoError(t, err)
	for i, v := range voters {
		require.NoError(t, e.vote(tt, d.ID, v, choose(d.Positions[0], i%3, (i+1)%3)))
	}
	db := dbtest.AdminDB(t)
	ballots := pgx.Identifier{tt.Schema, "election_ballots"}.Sanitize()
	ids := func() map[string]bool {
		rows, err := db.QueryContext(e.ctx, `SELECT id::text FROM `+ballots)
		require.NoError(t, err)
		defer rows.Close()
		out := map[string]bool{}
		for rows.Next() {
			var id string
			require.NoError(t, rows.Scan(&id))
			out[id] = true
		}
		return out
	}
	before := ids()
	closed, err := e.a.Elections.Transition(e.ctx, slug, d.ID, elections.Close, "test")
	require.NoError(t, err)
	assert.Equal(t, 7, *closed.Ballots)
	after := ids()
	require.Len(t, after, 7)
	for id := range after {
		assert.False(t, before[id], "ballot %s kept its id", id)
	}
	var unsealed, txs int
	require.NoError(t, db.QueryRowContext(e.ctx, `SELECT count(*) FILTER (WHERE NOT sealed), count(DISTINCT xmin::text) FROM `+ballots).
		Scan(&unsealed, &txs))
	assert.Zero(t, unsealed)
	assert.Equal(t, 1, txs)
	res, err := e.a.Elections.Results(e.ctx, slug, d.ID, admin)
	require.NoError(t, err)
	assert.Equal(t, recount(t, tt, d.ID), tally(res))
	assert.Equal(t, []string{"Voter:5:y", "Voter:5:y", "Voter:4:n"}, summary(res.Positions[0]))
}

// Drafts change until they open: positions and candidates come and go,
// refused with precise codes; members stay referenced.
func TestDraftEditing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tt := e.tenant(t, "eldraft")
	other := e.tenant(t, "eldrafto")
	slug := tenant.MustSlug(tt.Slug)
	m1, m2 := e.voter(t, tt, "One", nil), e.voter(t, tt, "Two", nil)
	idle, err := e.a.Members.Create(e.ctx, slug, membership.New{FullName: "Idle", Status: "inactive"})
	require.NoError(t, err)
	o := e.voter(t, other, "Other", nil)
	d := e.election(t, tt, elections.New{}, spec{"Chair", 1, []uuid.UUID{m1}})
	pos := d.Positions[0]

	_, err = e.a.Elections.AddCandidate(e.ctx, slug, d.ID, pos.ID, m1, "test")
	assert.ErrorIs(t, err, elections.ErrCandidateExists)
	_, err = e.a.Elections.AddCandidate(e.ctx, slug, d.ID, pos.ID, idle.ID, "test")
	assert.ErrorIs(t, err, elections.ErrMemberNotActive)
	_, err = e.a.Elections.AddCandidate(e.ctx, slug, d.ID, pos.ID, o, "test")
	assert.ErrorIs(t, err, elections.ErrMemberNotFound, "a member of another tenant")
	_, err = e.a.Elections.AddCandidate(e.ctx, slug, d.ID, uuid.New(), m2, "test")
	assert.ErrorIs(t, err, elections.ErrPositionNotFound)
	_, err = e.a.Elections.AddCandidate(e.ctx, slug, uuid.New(), pos.ID, m2, "test")
	assert.ErrorIs(t, err, elections.ErrNotFound)
	c2, err := e.a.Elections.AddCandidate(e.ctx, slug, d.ID, pos.ID, m2, "test")
	require.NoError(t, err)
	assert.Equal(t, "Two", c2.FullName)
	require.NoError(t, e.a.Elections.RemoveCandidate(e.ctx, slug, d.ID, pos.ID, c2.ID, "test"))
	assert.ErrorIs(t, e.a.Elections.RemoveCandidate(e.ctx, slug, d.ID, pos.ID, c2.ID, "test"), elections.ErrCandidateNotFound)

	// A member who stands cannot be deleted.
	assert.ErrorIs(t, e.a.Members.Delete(e.ctx, slug, m1), membership.ErrHasCards, "m1 has a card first")
	standing, err := e.a.Members.Create(e.ctx, slug, membership.New{FullName: "Standing"})
	require.NoError(t, err)
	_, err = e.a.Elections.AddCandidate(e.ctx, slug, d.ID, pos.ID, standing.ID, "test")
	require.NoError(t, err)
	assert.ErrorIs(t, e.a.Members.Delete(e.ctx, slug, standing.ID), membership.ErrInUse)

	empty, err := e.a.Elections.AddPosition(e.ctx, slug, d.ID, elections.NewPosition{Title: "Treasurer", Seats: 1}, "test")
	require.NoError(t, err)
	_, err = e.a.Elections.Transition(e.ctx, slug, d.ID, elections.Open, "test")
	assert.ErrorIs(t, err, elections.ErrIllegalTransition, "a position without candidates")
	require.NoError(t, e.a.Elections.RemovePosition(e.ctx, slug, d.ID, empty.ID, "test"))
	assert.ErrorIs(t, e.a.Elections.RemovePosition(e.ctx, slug, d.ID, empty.ID, "test"), elections.ErrPositionNotFound)

	past := time.Now().Add(-2 * time.Hour) // before the draft opens (a minute ago)
	_, err = e.a.Elections.Update(e.ctx, slug, d.ID, elections.Patch{ClosesAt: &past}, "test")
	assert.ErrorIs(t, err, elections.ErrInvalid, "closes before it opens")
	_, err = e.a.Elections.Update(e.ctx, slug, d.ID, elections.Patch{OpensAt: ptr(time.Now().Add(-3 * time.Hour)), ClosesAt: &past}, "test")
	require.NoError(t, err)
	_, err = e.a.Elections.Transition(e.ctx, slug, d.ID, elections.Open, "test")
	assert.ErrorIs(t, err, elections.ErrIllegalTransition, "its window is over")
	_, err = e.a.Elections.Update(e.ctx, slug, d.ID, elections.Patch{ScopeUnitID: membership.Nullable[int64]{Set: true, Valid: true, V: 9007199254740000}}, "test")
	assert.ErrorIs(t, err, elections.ErrUnknownGeo)
	_, err = e.a.Elections.Update(e.ctx, slug, uuid.New(), elections.Patch{Title: ptr("x")}, "test")
	assert.ErrorIs(t, err, elections.ErrNotFound)
	_, err = e.a.Elections.Update(e.ctx, slug, d.ID, elections.Patch{}, "test")
	assert.ErrorIs(t, err, elections.ErrInvalid)
}

// Closing while ballots are being cast: every ballot the service accepted is
// in the tally and every other one was refused as the election closed —
// closing waits for the ballots under way and later ones find it closed.
func TestCloseWhileVoting(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tt := e.tenant(t, "elrace")
	slug := tenant.MustSlug(tt.Slug)
	const n = 60
	voters := make([]uuid.UUID, n)
	for i := range voters {
		voters[i] = e.voter(t, tt, "Voter", nil)
	}
	d := e.election(t, tt, elections.New{}, spec{"Chair", 1, voters[:2]})
	_, err := e.a.Elections.Transition(e.ctx, slug, d.ID, elections.Open, "test")
	require.NoError(t, err)

	var accepted, refused atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, v := range voters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			time.Sleep(time.Duration(i) * 2 * time.Millisecond) // spread over the close
			err := e.vote(tt, d.ID, v, choose(d.Positions[0], i%2))
			switch {
			case err == nil:
				accepted.Add(1)
			case errors.Is(err, elections.ErrNotOpen):
				refused.Add(1)
			default:
				t.Errorf("ballot: %v", err)
			}
		}()
	}
	close(start)
	time.Sleep(50 * time.Millisecond)
	closed, err := e.a.Elections.Transition(e.ctx, slug, d.ID, elections.Close, "test")
	require.NoError(t, err)
	wg.Wait()
	assert.EqualValues(t, n, accepted.Load()+refused.Load())
	require.NotNil(t, closed.Ballots)
	assert.EqualValues(t, accepted.Load(), *closed.Ballots, "every accepted ballot, and only those, counted")
	res, err := e.a.Elections.Results(e.ctx, slug, d.ID, admin)
	require.NoError(t, err)
	sum := 0
	for _, c := range res.Positions[0].Candidates {
		sum += c.Votes
	}
	assert.EqualValues(t, accepted.Load(), sum)
	assert.Equal(t, recount(t, tt, d.ID), tally(res))
	t.Logf("%d accepted before the close, %d refused after", accepted.Load(), refused.Load())
}
