package httpapi

import (
	"strconv"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/publicdigit/publicdigit/internal/membership"
)

func (t *tenantAPI) createMember(c *fiber.Ctx) error {
	var body membership.New
	if err := DecodeJSON(c, &body); err != nil {
		return err
	}
	m, err := t.a.Members.Create(c.UserContext(), tenantOf(c), body)
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderLocation, location(c, "/members/"+m.ID.String()))
	return c.Status(fiber.StatusCreated).JSON(m)
}

func (t *tenantAPI) getMember(c *fiber.Ctx) error {
	id, err := uuidParam(c, "id")
	if err != nil {
		return err
	}
	m, err := t.a.Members.Get(c.UserContext(), tenantOf(c), id)
	if err != nil {
		return err
	}
	return c.JSON(m)
}

func (t *tenantAPI) listMembers(c *fiber.Ctx) error {
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	q := membership.ListQuery{Limit: limit, Status: c.Query("status")}
	geo := ""
	if raw := c.Query("geo_unit_id"); raw != "" {
		id, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || id < 1 {
			return BadRequest("query parameter geo_unit_id must be a geography unit id (a positive integer)")
		}
		q.GeoUnitID = &id
		geo = strconv.FormatInt(id, 10)
	}
	slug := tenantOf(c)
	// The cursor is bound to the tenant and to the filters (in canonical form).
	scope := cursorScope("members", slug.String(), "status="+q.Status, "geo_unit_id="+geo)
	if q.After, err = t.after(c, scope); err != nil {
		return err
	}
	ms, more, err := t.a.Members.List(c.UserContext(), slug, q)
	if err != nil {
		return err
	}
	return c.JSON(newPage(t.cursors, scope, ms, more, func(m membership.Member) uuid.UUID { return m.ID }))
}

// memberPatch is the body of PATCH …/members/{id}: absent fields stay; null
// clears email, phone and geo_unit_id, and is refused for the others.
type memberPatch struct {
	FullName  membership.Nullable[string] `json:"full_name"`
	Email     membership.Nullable[string] `json:"email"`
	Phone     membership.Nullable[string] `json:"phone"`
	Status    membership.Nullable[string] `json:"status"`
	GeoUnitID membership.Nullable[int64]  `json:"geo_unit_id"`
}

// patch is the membership change: null is refused for full_name and status.
func (b memberPatch) patch() (membership.Patch, error) {
	p := membership.Patch{Email: b.Email, Phone: b.Phone, GeoUnitID: b.GeoUnitID}
	for _, f := range []struct {
		name string
		v    membership.Nullable[string]
		to   **string
	}{{"full_name", b.FullName, &p.FullName}, {"status", b.Status, &p.Status}} {
		if f.v.Set && !f.v.Valid {
			return membership.Patch{}, BadRequest(f.name + " may not be null")
		}
		if f.v.Valid {
			v := f.v.V
			*f.to = &v
		}
	}
	return p, nil
}

func (t *tenantAPI) patchMember(c *fiber.Ctx) error {
	id, err := uuidParam(c, "id")
	if err != nil {
		return err
	}
	var body memberPatch
	if err := DecodeJSON(c, &body); err != nil {
		return err
	}
	p, err := body.patch()
	if err != nil {
		return err
	}
	m, err := t.a.Members.Update(c.UserContext(), tenantOf(c), id, p)
	if err != nil {
		return err
	}
	return c.JSON(m)
}

func (t *tenantAPI) deleteMember(c *fiber.Ctx) error {
	id, err := uuidParam(c, "id")
	if err != nil {
		return err
	}
	if err := t.a.Members.Delete(c.UserContext(), tenantOf(c), id); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}
