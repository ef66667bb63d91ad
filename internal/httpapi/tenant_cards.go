package httpapi

import (
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/publicdigit/publicdigit/internal/cards"
)

// cardIssue is the body of POST …/cards. member_id is read as a string so a
// malformed one gets a precise answer.
type cardIssue struct {
	MemberID  string     `json:"member_id"`
	ExpiresAt *time.Time `json:"expires_at"`
}

func (b cardIssue) issue() (cards.Issue, error) {
	memberID, err := parseUUID("member_id", b.MemberID)
	if err != nil {
		return cards.Issue{}, err
	}
	return cards.Issue{MemberID: memberID, ExpiresAt: b.ExpiresAt}, nil
}

func (t *tenantAPI) issueCard(c *fiber.Ctx) error {
	var body cardIssue
	if err := DecodeJSON(c, &body); err != nil {
		return err
	}
	in, err := body.issue()
	if err != nil {
		return err
	}
	card, err := t.a.Cards.Issue(c.UserContext(), tenantOf(c), in, actor(c))
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderLocation, location(c, "/cards/"+card.ID.String()))
	return c.Status(fiber.StatusCreated).JSON(card)
}

func (t *tenantAPI) getCard(c *fiber.Ctx) error {
	id, err := uuidParam(c, "id")
	if err != nil {
		return err
	}
	card, err := t.a.Cards.Get(c.UserContext(), tenantOf(c), id)
	if err != nil {
		return err
	}
	return c.JSON(card)
}

func (t *tenantAPI) listCards(c *fiber.Ctx) error {
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	q := cards.ListQuery{Limit: limit, Status: c.Query("status")}
	member := ""
	if raw := c.Query("member_id"); raw != "" {
		id, err := parseUUID("member_id", raw)
		if err != nil {
			return err
		}
		q.MemberID = &id
		member = id.String()
	}
	slug := tenantOf(c)
	scope := cursorScope("cards", slug.String(), "status="+q.Status, "member_id="+member)
	if q.After, err = t.after(c, scope); err != nil {
		return err
	}
	cs, more, err := t.a.Cards.List(c.UserContext(), slug, q)
	if err != nil {
		return err
	}
	return c.JSON(newPage(t.cursors, scope, cs, more, func(c cards.Card) uuid.UUID { return c.ID }))
}

// transition serves POST …/cards/{id}/activate | revoke | expire: one
// transaction (lock, state machine, update and activity row).
func (t *tenantAPI) transition(action cards.Action) fiber.Handler {
	return func(c *fiber.Ctx) error {
		id, err := uuidParam(c, "id")
		if err != nil {
			return err
		}
		if err := emptyBody(c); err != nil {
			return err
		}
		card, err := t.a.Cards.Transition(c.UserContext(), tenantOf(c), id, action, actor(c))
		if err != nil {
			return err
		}
		return c.JSON(card)
	}
}

func (t *tenantAPI) listActivities(c *fiber.Ctx) error {
	id, err := uuidParam(c, "id")
	if err != nil {
		return err
	}
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	slug := tenantOf(c)
	scope := cursorScope("card_activities", slug.String(), id.String())
	after, err := t.after(c, scope)
	if err != nil {
		return err
	}
	as, more, err := t.a.Cards.Activities(c.UserContext(), slug, id, after, limit)
	if err != nil {
		return err
	}
	return c.JSON(newPage(t.cursors, scope, as, more, func(a cards.Activity) uuid.UUID { return a.ID }))
}

// cardValidate is the body of POST …/cards/validate.
type cardValidate struct {
	QRCode string `json:"qr_code"`
}

func (t *tenantAPI) validateCard(c *fiber.Ctx) error {
	var body cardValidate
	if err := DecodeJSON(c, &body); err != nil {
		return err
	}
	res, err := t.a.Cards.Validate(c.UserContext(), tenantOf(c), body.QRCode, actor(c))
	if err != nil {
		return err
	}
	return c.JSON(res)
}
