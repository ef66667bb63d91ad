package httpapi

import (
	"fmt"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/publicdigit/publicdigit/internal/elections"
	"github.com/publicdigit/publicdigit/internal/membership"
)

// viewer is who reads elections: the tenant's admins see drafts and tallies.
func viewer(c *fiber.Ctx) elections.Viewer { return elections.Viewer{Admin: isAdmin(c)} }

func (t *tenantAPI) createElection(c *fiber.Ctx) error {
	var body elections.New
	if err := DecodeJSON(c, &body); err != nil {
		return err
	}
	e, err := t.a.Elections.Create(c.UserContext(), tenantOf(c), body, actor(c))
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderLocation, location(c, "/elections/"+e.ID.String()))
	return c.Status(fiber.StatusCreated).JSON(e)
}

func (t *tenantAPI) listElections(c *fiber.Ctx) error {
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	v := viewer(c)
	q := elections.ListQuery{Limit: limit, Status: c.Query("status")}
	slug := tenantOf(c)
	admin := "false"
	if v.Admin {
		admin = "true"
	}
	scope := cursorScope("elections", slug.String(), "status="+q.Status, "admin="+admin)
	if q.After, err = t.after(c, scope); err != nil {
		return err
	}
	es, more, err := t.a.Elections.List(c.UserContext(), slug, q, v)
	if err != nil {
		return err
	}
	return c.JSON(newPage(t.cursors, scope, es, more, func(e elections.Election) uuid.UUID { return e.ID }))
}

func (t *tenantAPI) getElection(c *fiber.Ctx) error {
	id, err := uuidParam(c, "id")
	if err != nil {
		return err
	}
	d, err := t.a.Elections.Get(c.UserContext(), tenantOf(c), id, viewer(c))
	if err != nil {
		return err
	}
	return c.JSON(d)
}

// electionPatch is the body of PATCH …/elections/{id}: absent fields stay;
// null clears scope_unit_id and is refused for the others.
type electionPatch struct {
	Title       membership.Nullable[string]    `json:"title"`
	Description membership.Nullable[string]    `json:"description"`
	OpensAt     membership.Nullable[time.Time] `json:"opens_at"`
	ClosesAt    membership.Nullable[time.Time] `json:"closes_at"`
	ScopeUnitID membership.Nullable[int64]     `json:"scope_unit_id"`
}

// patch is the election change: null is refused but for scope_unit_id.
func (b electionPatch) patch() (elections.Patch, error) {
	p := elections.Patch{ScopeUnitID: b.ScopeUnitID}
	if err := notNull("title", b.Title, &p.Title); err != nil {
		return elections.Patch{}, err
	}
	if err := notNull("description", b.Description, &p.Description); err != nil {
		return elections.Patch{}, err
	}
	if err := notNull("opens_at", b.OpensAt, &p.OpensAt); err != nil {
		return elections.Patch{}, err
	}
	if err := notNull("closes_at", b.ClosesAt, &p.ClosesAt); err != nil {
		return elections.Patch{}, err
	}
	return p, nil
}

func (t *tenantAPI) patchElection(c *fiber.Ctx) error {
	id, err := uuidParam(c, "id")
	if err != nil {
		return err
	}
	var body electionPatch
	if err := DecodeJSON(c, &body); err != nil {
		return err
	}
	p, err := body.patch()
	if err != nil {
		return err
	}
	e, err := t.a.Elections.Update(c.UserContext(), tenantOf(c), id, p, actor(c))
	if err != nil {
		return err
	}
	return c.JSON(e)
}

// notNull copies a field that may be absent but not null.
func notNull[T any](name string, v membership.Nullable[T], to **T) error {
	if v.Set && !v.Valid {
		return BadRequest(name + " may not be null")
	}
	if v.Valid {
		x := v.V
		*to = &x
	}
	return nil
}

func (t *tenantAPI) addPosition(c *fiber.Ctx) error {
	id, err := uuidParam(c, "id")
	if err != nil {
		return err
	}
	var body elections.NewPosition
	if err := DecodeJSON(c, &body); err != nil {
		return err
	}
	p, err := t.a.Elections.AddPosition(c.UserContext(), tenantOf(c), id, body, actor(c))
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(p)
}

func (t *tenantAPI) removePosition(c *fiber.Ctx) error {
	id, err := uuidParam(c, "id")
	if err != nil {
		return err
	}
	pid, err := uuidParam(c, "position")
	if err != nil {
		return err
	}
	if err := t.a.Elections.RemovePosition(c.UserContext(), tenantOf(c), id, pid, actor(c)); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

// candidateAdd is the body of POST …/positions/{position}/candidates.
type candidateAdd struct {
	MemberID string `json:"member_id"`
}

func (t *tenantAPI) addCandidate(c *fiber.Ctx) error {
	id, err := uuidParam(c, "id")
	if err != nil {
		return err
	}
	pid, err := uuidParam(c, "position")
	if err != nil {
		return err
	}
	var body candidateAdd
	if err := DecodeJSON(c, &body); err != nil {
		return err
	}
	member, err := parseUUID("member_id", body.MemberID)
	if err != nil {
		return err
	}
	cand, err := t.a.Elections.AddCandidate(c.UserContext(), tenantOf(c), id, pid, member, actor(c))
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(cand)
}

func (t *tenantAPI) removeCandidate(c *fiber.Ctx) error {
	id, err := uuidParam(c, "id")
	if err != nil {
		return err
	}
	pid, err := uuidParam(c, "position")
	if err != nil {
		return err
	}
	cid, err := uuidParam(c, "candidate")
	if err != nil {
		return err
	}
	if err := t.a.Elections.RemoveCandidate(c.UserContext(), tenantOf(c), id, pid, cid, actor(c)); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

// electionTransition serves POST …/elections/{id}/open | close | publish.
func (t *tenantAPI) electionTransition(action elections.Action) fiber.Handler {
	return func(c *fiber.Ctx) error {
		id, err := uuidParam(c, "id")
		if err != nil {
			return err
		}
		if err := emptyBody(c); err != nil {
			return err
		}
		e, err := t.a.Elections.Transition(c.UserContext(), tenantOf(c), id, action, actor(c))
		if err != nil {
			return err
		}
		return c.JSON(e)
	}
}

// ballotBody is the body of POST …/elections/{id}/ballots; ids are read as
// strings so that a malformed one gets a precise answer.
type ballotBody struct {
	MemberID string `json:"member_id"`
	Choices  []struct {
		PositionID   string   `json:"position_id"`
		CandidateIDs []string `json:"candidate_ids"`
	} `json:"choices"`
}

// ballot parses the ids of a ballot.
func (body ballotBody) ballot() (elections.Ballot, error) {
	var b elections.Ballot
	var err error
	if b.MemberID, err = parseUUID("member_id", body.MemberID); err != nil {
		return elections.Ballot{}, err
	}
	if len(body.Choices) > elections.MaxChoices {
		return elections.Ballot{}, BadRequest(fmt.Sprintf("a ballot names at most %d positions", elections.MaxChoices))
	}
	for _, ch := range body.Choices {
		pid, err := parseUUID("position_id", ch.PositionID)
		if err != nil {
			return elections.Ballot{}, err
		}
		choice := elections.Choice{PositionID: pid}
		for _, raw := range ch.CandidateIDs {
			cid, err := parseUUID("candidate_ids", raw)
			if err != nil {
				return elections.Ballot{}, err
			}
			choice.CandidateIDs = append(choice.CandidateIDs, cid)
		}
		b.Choices = append(b.Choices, choice)
	}
	return b, nil
}

func (t *tenantAPI) castBallot(c *fiber.Ctx) error {
	id, err := uuidParam(c, "id")
	if err != nil {
		return err
	}
	var body ballotBody
	if err := DecodeJSON(c, &body); err != nil {
		return err
	}
	b, err := body.ballot()
	if err != nil {
		return err
	}
	r, err := t.a.Elections.Vote(c.UserContext(), tenantOf(c), id, b, viewer(c), actor(c))
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(r)
}

func (t *tenantAPI) electionResults(c *fiber.Ctx) error {
	id, err := uuidParam(c, "id")
	if err != nil {
		return err
	}
	r, err := t.a.Elections.Results(c.UserContext(), tenantOf(c), id, viewer(c))
	if err != nil {
		return err
	}
	return c.JSON(r)
}

func (t *tenantAPI) electionActivities(c *fiber.Ctx) error {
	id, err := uuidParam(c, "id")
	if err != nil {
		return err
	}
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	slug := tenantOf(c)
	scope := cursorScope("election_activities", slug.String(), id.String())
	after, err := t.after(c, scope)
	if err != nil {
		return err
	}
	as, more, err := t.a.Elections.Activities(c.UserContext(), slug, id, after, limit)
	if err != nil {
		return err
	}
	return c.JSON(newPage(t.cursors, scope, as, more, func(a elections.Activity) uuid.UUID { return a.ID }))
}
