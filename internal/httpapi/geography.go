package httpapi

import (
	"github.com/gofiber/fiber/v2"

	"github.com/publicdigit/publicdigit/internal/geography"
)

func (h *handlers) geographyRoutes(r fiber.Router) {
	r.Get("/units", h.listUnits)
	r.Get("/units/:id", h.getUnit)
}

type unitPage struct {
	Items []geography.Unit `json:"items"`
	// Next is the "after" of the next page; null on the last page.
	Next *int64 `json:"next"`
}

func (h *handlers) listUnits(c *fiber.Ctx) error {
	limit, err := QueryInt(c, "limit", geography.DefaultPage, 1, geography.MaxPage)
	if err != nil {
		return err
	}
	o := geography.ListOptions{Limit: limit}
	if p := c.Query("parent"); p != "" {
		id, err := geography.ParseID(p)
		if err != nil {
			return err
		}
		o.Parent = &id
	}
	o.Code = c.Query("code")
	if a := c.Query("after"); a != "" {
		if o.After, err = geography.ParseID(a); err != nil {
			return err
		}
	}
	page, err := h.a.Geography.List(c.UserContext(), o)
	if err != nil {
		return err
	}
	out := unitPage{Items: page.Units}
	if page.Next != 0 {
		out.Next = &page.Next
	}
	return c.JSON(out)
}

func (h *handlers) getUnit(c *fiber.Ctx) error {
	id, err := geography.ParseID(c.Params("id"))
	if err != nil {
		return err
	}
	limit, err := QueryInt(c, "descendants_limit", 200, 1, geography.MaxDescendants)
	if err != nil {
		return err
	}
	d, err := h.a.Geography.Detail(c.UserContext(), id, limit)
	if err != nil {
		return err
	}
	return c.JSON(d)
}
