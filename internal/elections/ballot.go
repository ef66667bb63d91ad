package elections

import (
	"context"
	"fmt"
	"sort"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// Choice is what a ballot chooses for one position: up to its seats
// candidates (none is a blank vote for that position).
type Choice struct {
	PositionID   uuid.UUID   `json:"position_id"`
	CandidateIDs []uuid.UUID `json:"candidate_ids"`
}

// Ballot is a member's vote.
type Ballot struct {
	MemberID uuid.UUID `json:"member_id"`
	Choices  []Choice  `json:"choices"`
}

// MaxChoices caps the candidates one ballot may name.
const MaxChoices = 1000

// Receipt acknowledges a counted ballot. It names no ballot: nothing a
// voter holds leads to what they chose.
type Receipt struct {
	ElectionID uuid.UUID `json:"election_id"`
	MemberID   uuid.UUID `json:"member_id"`
	Counted    bool      `json:"counted"`
}

// flatten checks the shape of a ballot and returns its choices as two
// parallel arrays (position, candidate).
func (b Ballot) flatten() ([]uuid.UUID, []uuid.UUID, error) {
	if b.MemberID == uuid.Nil {
		return nil, nil, fmt.Errorf("%w: member_id is required", ErrInvalidBallot)
	}
	var positions, candidates []uuid.UUID
	seenP, seenC := map[uuid.UUID]bool{}, map[uuid.UUID]bool{}
	for _, c := range b.Choices {
		if c.PositionID == uuid.Nil {
			return nil, nil, fmt.Errorf("%w: every choice needs a position_id", ErrInvalidBallot)
		}
		if seenP[c.PositionID] {
			return nil, nil, fmt.Errorf("%w: position %s is listed twice", ErrInvalidBallot, c.PositionID)
		}
		seenP[c.PositionID] = true
		for _, id := range c.CandidateIDs {
			if id == uuid.Nil || seenC[id] {
				return nil, nil, fmt.Errorf("%w: candidate %s is missing or chosen twice", ErrInvalidBallot, id)
			}
			seenC[id] = true
			positions, candidates = append(positions, c.PositionID), append(candidates, id)
			if len(candidates) > MaxChoices {
				return nil, nil, fmt.Errorf("%w: at most %d choices", ErrInvalidBallot, MaxChoices)
			}
		}
	}
	return positions, candidates, nil
}

// VoteSQL casts a ballot in one statement. Its CTEs read the election (with
// a share lock: closing waits for the ballots under way, and a ballot that
// waited on a closing finds the election closed), the member, the member's
// active card, the scope and the choices; if every check passes, the roll
// row is inserted — ON CONFLICT DO NOTHING on the roll's primary key, so a
// second ballot of the member (even a concurrent one, which waits for the
// first to commit) inserts nothing — and only then the ballot (with its
// choices) and the log entry. The last SELECT says which check failed.
//
// The ballot is anonymous: its id is random (gen_random_uuid, no time in
// it), and it carries no timestamp, no sequence number, nothing of the roll
// row; the log entry names the member, not the choices.
//
// $1 tenant, $2 election, $3 member, $4 positions, $5 candidates, $6 log
// entry id, $7 actor. Exported for the API benchmark's bare handler, which
// runs it schema-qualified.
const VoteSQL = `WITH e AS (
		SELECT id, status, opens_at <= now() AND now() < closes_at AS in_window, scope_unit_id
		  FROM elections WHERE tenant_id = $1 AND id = $2 FOR SHARE
	), m AS (
		SELECT id, status, geo_unit_id FROM members WHERE tenant_id = $1 AND id = $3
	), card AS (
		SELECT EXISTS (SELECT FROM digital_cards
		                WHERE tenant_id = $1 AND member_id = $3 AND status = 'active' AND expires_at > now()) AS ok
	), scope AS (
		SELECT e.scope_unit_id IS NULL
		    OR EXISTS (SELECT FROM election_scope_units s
		                WHERE s.tenant_id = $1 AND s.election_id = e.id AND s.geo_unit_id = m.geo_unit_id) AS ok
		  FROM e, m
	), ch AS (
		SELECT * FROM unnest($4::uuid[], $5::uuid[]) AS ch(position_id, candidate_id)
	), valid AS (
		SELECT (SELECT count(*) FROM ch JOIN election_candidates c
		            ON c.tenant_id = $1 AND c.election_id = $2 AND c.id = ch.candidate_id AND c.position_id = ch.position_id)
		         = cardinality($5::uuid[])
		   AND NOT EXISTS (SELECT FROM ch JOIN election_positions p ON p.tenant_id = $1 AND p.election_id = $2 AND p.id = ch.position_id
		                    GROUP BY p.id, p.seats HAVING count(*) > p.seats) AS ok
	), roll AS (
		INSERT INTO election_voters (tenant_id, election_id, member_id)
		SELECT $1, e.id, m.id FROM e, m, card, scope, valid
		 WHERE e.status = 'open' AND e.in_window AND m.status = 'active' AND card.ok AND scope.ok AND valid.ok
		ON CONFLICT (election_id, member_id) DO NOTHING
		RETURNING election_id
	), ballot AS (
		INSERT INTO election_ballots (tenant_id, election_id, choices)
		SELECT $1, election_id, $5::uuid[] FROM roll
	), act AS (
		INSERT INTO election_activities (id, tenant_id, election_id, action, actor, detail)
		SELECT $6, $1, election_id, 'ballot_cast', $7, jsonb_build_object('member_id', $3::uuid) FROM roll
	)
	SELECT e.status, e.in_window, m.status, (SELECT ok FROM card), (SELECT ok FROM scope), (SELECT ok FROM valid),
	       EXISTS (SELECT FROM roll)
	  FROM (SELECT) one LEFT JOIN e ON true LEFT JOIN m ON true`

// Vote casts a member's ballot in one statement (one round trip; see
// VoteSQL). It is refused, with nothing written, when the election is not
// open (ErrNotOpen; a draft is ErrNotFound to a non-admin), outside its
// window (ErrOutsideWindow), for an unknown member (ErrMemberNotFound), a
// member who may not vote — inactive, without an active card, or outside
// the scope (ErrNotEligible) —, for choices that are not candidates of that
// position of this election or exceed its seats (ErrInvalidBallot), and
// for a member who voted already (ErrAlreadyVoted).
func (s *Service) Vote(ctx context.Context, slug tenant.Slug, electionID uuid.UUID, in Ballot, v Viewer, actor string) (Receipt, error) {
	positions, candidates, err := in.flatten()
	if err != nil {
		return Receipt{}, err
	}
	// As text: the simple protocol cannot encode an array of uuid.UUID.
	ps, cs := uuidStrings(positions), uuidStrings(candidates)
	var status, memberStatus *string
	var inWindow, card, scope, valid *bool
	var counted bool
	err = s.router.Do(ctx, slug, func(b *pgroute.Batch) error {
		b.Queue(VoteSQL, b.Tenant().ID, electionID, in.MemberID, ps, cs, newID(), actorOrNil(actor)).
			QueryRow(func(row pgx.Row) error {
				return row.Scan(&status, &inWindow, &memberStatus, &card, &scope, &valid, &counted)
			})
		return nil
	})
	if err != nil {
		return Receipt{}, mapErr(err)
	}
	if counted {
		return Receipt{ElectionID: electionID, MemberID: in.MemberID, Counted: true}, nil
	}
	return Receipt{}, refusal(status, memberStatus, inWindow, card, scope, valid, v)
}

func uuidStrings(ids []uuid.UUID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

// refusal names why a ballot was not counted, from VoteSQL's last row.
func refusal(status, memberStatus *string, inWindow, card, scope, valid *bool, v Viewer) error {
	is := func(b *bool) bool { return b != nil && *b }
	switch {
	case status == nil || *status == StatusDraft && !v.Admin:
		return ErrNotFound
	case *status != StatusOpen:
		return fmt.Errorf("%w: it is %s", ErrNotOpen, *status)
	case !is(inWindow):
		return ErrOutsideWindow
	case memberStatus == nil:
		return ErrMemberNotFound
	case *memberStatus != "active":
		return fmt.Errorf("%w: the member is %s", ErrNotEligible, *memberStatus)
	case !is(card):
		return fmt.Errorf("%w: the member holds no active digital card", ErrNotEligible)
	case !is(scope):
		return fmt.Errorf("%w: the member's geography unit is outside the election's scope", ErrNotEligible)
	case !is(valid):
		return fmt.Errorf("%w: every choice must be a candidate of its position in this election, at most its seats per position", ErrInvalidBallot)
	}
	return ErrAlreadyVoted
}

// Results are an election's counts once it is closed.
type Results struct {
	ElectionID uuid.UUID `json:"election_id"`
	Status     string    `json:"status"`
	// Ballots is the number of ballots cast (blank ones included).
	Ballots   int              `json:"ballots"`
	Positions []PositionResult `json:"positions"`
}

// PositionResult is one position's count: its candidates by votes, most first.
type PositionResult struct {
	PositionID uuid.UUID `json:"position_id"`
	Title      string    `json:"title"`
	Seats      int       `json:"seats"`
	// Tie is set when candidates tie for the last seat: they are marked
	// tied, not elected, and the seat is left for the tenant to decide.
	Tie        bool              `json:"tie"`
	Candidates []CandidateResult `json:"candidates"`
}

// CandidateResult is one candidate's count.
type CandidateResult struct {
	CandidateID uuid.UUID `json:"candidate_id"`
	MemberID    uuid.UUID `json:"member_id"`
	FullName    string    `json:"full_name"`
	Votes       int       `json:"votes"`
	Elected     bool      `json:"elected"`
	Tied        bool      `json:"tied"`
}

// Decide fills seats from votes sorted most first: the first seats
// candidates are elected, unless the candidate after them has as many votes
// as the last of them — then every candidate with that many votes is tied
// (not elected), and those with more are elected.
func Decide(seats int, votes []int) (elected, tied []bool, tie bool) {
	elected, tied = make([]bool, len(votes)), make([]bool, len(votes))
	if len(votes) <= seats {
		for i := range elected {
			elected[i] = true
		}
		return elected, tied, false
	}
	last := votes[seats-1]
	tie = votes[seats] == last
	for i, n := range votes {
		switch {
		case n > last || !tie && i < seats:
			elected[i] = true
		case tie && n == last:
			tied[i] = true
		}
	}
	return elected, tied, tie
}

// Results returns the counts of a closed election, in one round trip: to
// the tenant's admins once closed, to everyone once published.
func (s *Service) Results(ctx context.Context, slug tenant.Slug, electionID uuid.UUID, v Viewer) (Results, error) {
	var e Election
	var positions []Position
	votes := map[uuid.UUID]int{}
	err := s.router.Do(ctx, slug, func(b *pgroute.Batch) error {
		tid := b.Tenant().ID
		e, votes = Election{}, map[uuid.UUID]int{}
		b.Queue(`SELECT `+columns+` FROM elections WHERE tenant_id = $1 AND id = $2`, tid, electionID).
			Query(func(rows pgx.Rows) error { return scanOne(rows, tid, &e) })
		queuePositions(b, tid, electionID, &positions)
		b.Queue(`SELECT candidate_id, votes FROM election_tallies WHERE tenant_id = $1 AND election_id = $2`, tid, electionID).
			Query(func(rows pgx.Rows) error {
				var id uuid.UUID
				var n int
				_, err := pgx.ForEachRow(rows, []any{&id, &n}, func() error { votes[id] = n; return nil })
				return err
			})
		return nil
	})
	switch {
	case err != nil:
		return Results{}, mapErr(err)
	case e.ID == uuid.Nil || e.Status == StatusDraft && !v.Admin:
		return Results{}, ErrNotFound
	case e.Status == StatusDraft || e.Status == StatusOpen:
		return Results{}, fmt.Errorf("%w: it is %s", ErrNoResults, e.Status)
	case e.Status == StatusClosed && !v.Admin:
		return Results{}, ErrNotPublished
	}
	r := Results{ElectionID: e.ID, Status: e.Status, Positions: []PositionResult{}}
	if e.Ballots != nil {
		r.Ballots = *e.Ballots
	}
	for _, p := range positions {
		pr := PositionResult{PositionID: p.ID, Title: p.Title, Seats: p.Seats, Candidates: []CandidateResult{}}
		for _, c := range p.Candidates {
			pr.Candidates = append(pr.Candidates, CandidateResult{CandidateID: c.ID, MemberID: c.MemberID,
				FullName: c.FullName, Votes: votes[c.ID]})
		}
		sort.SliceStable(pr.Candidates, func(i, j int) bool { return pr.Candidates[i].Votes > pr.Candidates[j].Votes })
		counts := make([]int, len(pr.Candidates))
		for i, c := range pr.Candidates {
			counts[i] = c.Votes
		}
		elected, tied, tie := Decide(p.Seats, counts)
		for i := range pr.Candidates {
			pr.Candidates[i].Elected, pr.Candidates[i].Tied = elected[i], tied[i]
		}
		pr.Tie = tie
		r.Positions = append(r.Positions, pr)
	}
	return r, nil
}

// SealChunk is how many ballots one sealing statement rewrites at most, so
// that each stays far below the statement timeout (about 0.2 s per 1,000
// ballots on a busy 2-core machine).
const SealChunk = 5000

// queueClose queues what closing does, after the election was locked: the
// status, the ballots sealed, the tally and the count of ballots (e gets
// the election as it ends up); ballots is how many there are.
//
// Sealing rewrites every ballot of the election under a fresh random id and
// in random order, in this transaction: the ballots then carry neither the
// transaction ids of the ballots' statements (which the roll's rows share)
// nor their physical order, so even PostgreSQL's own bookkeeping (xmin, the
// position of a row) no longer ties a ballot to a roll row; the dead
// versions go with the next vacuum. It takes one statement per chunk
// (SealChunk) ballots, each over a slice of the (random) id space, so that the slices
// are as unrelated to the order of voting as the ids are.
func queueClose(tx *pgroute.Tx, tid, id uuid.UUID, ballots, chunk int, e *Election) {
	tx.Queue(`UPDATE elections SET status = 'closed', closed_at = now(), updated_at = now()
		WHERE tenant_id = $1 AND id = $2`, tid, id)
	chunks := (ballots + chunk - 1) / chunk
	for k := 0; k < chunks; k++ {
		var hi *string
		if k+1 < chunks {
			s := idBound(k+1, chunks)
			hi = &s
		}
		tx.Queue(`WITH gone AS (
				DELETE FROM election_ballots
				 WHERE tenant_id = $1 AND election_id = $2 AND NOT sealed AND id >= $3::uuid AND ($4::uuid IS NULL OR id < $4::uuid)
				RETURNING choices
			)
			INSERT INTO election_ballots (id, tenant_id, election_id, choices, sealed)
			SELECT gen_random_uuid(), $1, $2, choices, true FROM gone ORDER BY random()`, tid, id, idBound(k, chunks), hi)
	}
	tx.Queue(`INSERT INTO election_tallies (tenant_id, election_id, position_id, candidate_id, votes)
		SELECT $1, $2, c.position_id, c.id, coalesce(n.votes, 0)
		  FROM election_candidates c
		  LEFT JOIN (SELECT x AS candidate_id, count(*) AS votes
		               FROM election_ballots b, unnest(b.choices) AS x
		              WHERE b.tenant_id = $1 AND b.election_id = $2 GROUP BY x) n ON n.candidate_id = c.id
		 WHERE c.tenant_id = $1 AND c.election_id = $2`, tid, id)
	tx.Queue(`UPDATE elections SET ballots = (SELECT count(*) FROM election_ballots WHERE tenant_id = $1 AND election_id = $2)
		WHERE tenant_id = $1 AND id = $2 RETURNING `+columns, tid, id).
		QueryRow(func(row pgx.Row) error { return scanElection(row, tid, e) })
}

// idBound is the lowest UUID of slice k of n equal slices of the id space
// (PostgreSQL orders uuids byte by byte).
func idBound(k, n int) string {
	var b uuid.UUID
	v := uint32(uint64(k) << 32 / uint64(n))
	b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
	return b.String()
}
