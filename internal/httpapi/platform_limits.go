package httpapi

import (
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/publicdigit/publicdigit/internal/audit"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// limitsView is a tenant's limits: its own (null: the default) and the
// effective ones.
type limitsView struct {
	MaxConcurrentRequests *int   `json:"max_concurrent_requests"`
	StatementTimeoutMS    *int64 `json:"statement_timeout_ms"`
	Effective             struct {
		MaxConcurrentRequests int   `json:"max_concurrent_requests"`
		StatementTimeoutMS    int64 `json:"statement_timeout_ms"`
	} `json:"effective"`
}

func (h *handlers) limitsOf(t tenant.Tenant) limitsView {
	var v limitsView
	own := t.Limits()
	if own.MaxConcurrentRequests != 0 {
		n := own.MaxConcurrentRequests
		v.MaxConcurrentRequests = &n
	}
	if own.StatementTimeout != 0 {
		ms := own.StatementTimeout.Milliseconds()
		v.StatementTimeoutMS = &ms
	}
	eff := h.a.Limits.Effective(t)
	v.Effective.MaxConcurrentRequests = eff.MaxConcurrentRequests
	v.Effective.StatementTimeoutMS = eff.StatementTimeout.Milliseconds()
	return v
}

func (h *handlers) getLimits(c *fiber.Ctx) error {
	slug, err := slugParam(c)
	if err != nil {
		return err
	}
	t, err := h.a.Catalog.Get(c.UserContext(), slug)
	if err != nil {
		return err
	}
	return c.JSON(h.limitsOf(t))
}

// limitsPut is the body of PUT …/tenants/{slug}/limits: null or absent
// fields take the configured defaults.
type limitsPut struct {
	MaxConcurrentRequests *int   `json:"max_concurrent_requests"`
	StatementTimeoutMS    *int64 `json:"statement_timeout_ms"`
}

// limits checks the body and returns the tenant's limits it asks for.
func (b limitsPut) limits() (tenant.Limits, error) {
	var l tenant.Limits
	if b.MaxConcurrentRequests != nil {
		if *b.MaxConcurrentRequests < 1 {
			return l, BadRequest("max_concurrent_requests must be at least 1, or null for the default")
		}
		l.MaxConcurrentRequests = *b.MaxConcurrentRequests
	}
	if b.StatementTimeoutMS != nil {
		ms := *b.StatementTimeoutMS
		if ms < 1 || ms > tenant.MaxStatementTimeout.Milliseconds() {
			return l, BadRequest("statement_timeout_ms must be between 1 and " +
				strconv.FormatInt(tenant.MaxStatementTimeout.Milliseconds(), 10) + ", or null for the default")
		}
		l.StatementTimeout = time.Duration(ms) * time.Millisecond
	}
	return l, nil
}

// putLimits replaces a tenant's own limits. Every server applies them from
// its next request of the tenant (the change is announced).
func (h *handlers) putLimits(c *fiber.Ctx) error {
	slug, err := slugParam(c)
	if err != nil {
		return err
	}
	var body limitsPut
	if err := DecodeJSON(c, &body); err != nil {
		return err
	}
	l, err := body.limits()
	if err != nil {
		return err
	}
	t, err := h.a.Catalog.SetLimits(c.UserContext(), slug, l)
	if err != nil {
		return err
	}
	return c.JSON(h.limitsOf(t))
}

// auditPage is one page of the audit trail, newest first.
type auditPage struct {
	Items []audit.Entry `json:"items"`
	// Next is the "after" of the next page; null on the last page.
	Next *string `json:"next"`
}

// listAudit reads the audit trail in keyset pages, newest first, filtered
// by tenant slug and action. There is no route that changes it.
func (h *handlers) listAudit(c *fiber.Ctx) error {
	limit, err := QueryInt(c, "limit", audit.DefaultPage, 1, audit.MaxPage)
	if err != nil {
		return err
	}
	o := audit.ListOptions{Limit: limit}
	if a := c.Query("after"); a != "" {
		n, err := strconv.ParseInt(a, 10, 64)
		if err != nil || n < 1 {
			return BadRequest("query parameter after must be the next of a previous page")
		}
		o.Before = n
	}
	if s := c.Query("tenant"); s != "" {
		slug, err := tenant.ParseSlug(s)
		if err != nil {
			return err
		}
		o.Tenant = slug.String()
	}
	if a := c.Query("action"); a != "" {
		if !audit.IsAction(audit.Action(a)) {
			return BadRequest("query parameter action must be one of the audited actions, e.g. tenant.suspend")
		}
		o.Action = audit.Action(a)
	}
	page, err := h.a.Audit.List(c.UserContext(), o)
	if err != nil {
		return err
	}
	out := auditPage{Items: page.Entries}
	if page.Next != 0 {
		n := strconv.FormatInt(page.Next, 10)
		out.Next = &n
	}
	return c.JSON(out)
}
