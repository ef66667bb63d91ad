package httpapi

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/gofiber/fiber/v2"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/apperr"
	"github.com/publicdigit/publicdigit/internal/pgroute"
)

// answer is how the API answers one error code.
type answer struct {
	status int
	title  string
	// detail, when set, replaces the error's own text: the router's errors
	// carry SQL and server internals. Other kinds' texts are written for
	// clients.
	detail string
	// retry answers with Retry-After: the client should try again shortly.
	retry bool
}

// answers is the one table from error codes (internal/apperr kinds) to
// HTTP answers. An error of no known code is a 500 whose cause is logged,
// never shown.
var answers = map[string]answer{
	// Tenants (internal/tenant).
	"invalid_slug":        {fiber.StatusBadRequest, "invalid tenant slug", "", false},
	"invalid_tenant":      {fiber.StatusBadRequest, "invalid tenant request", "", false},
	"tenant_not_found":    {fiber.StatusNotFound, "tenant not found", "", false},
	"tenant_exists":       {fiber.StatusConflict, "tenant already exists", "", false},
	"wrong_tenant_status": {fiber.StatusConflict, "not allowed in the tenant's status", "", false},
	"tenant_suspended":    {fiber.StatusForbidden, "tenant suspended", "the tenant is suspended", false},
	"tenant_not_ready": {fiber.StatusServiceUnavailable, "tenant not ready",
		"the tenant is still being provisioned; retry shortly", true},
	"tenant_busy": {fiber.StatusServiceUnavailable, "tenant busy",
		"another operation on the tenant is running; retry shortly", true},
	"tenant_limited": {fiber.StatusTooManyRequests, "too many requests",
		"the tenant has too many requests in flight; retry shortly", true},

	// Moves (internal/move).
	"same_placement":     {fiber.StatusConflict, "tenant already on that placement", "", false},
	"already_moving":     {fiber.StatusConflict, "tenant already moving elsewhere", "", false},
	"move_verify_failed": {fiber.StatusInternalServerError, "move failed verification; the tenant stays on its source", "", false},
	"logical_replication_unavailable": {fiber.StatusConflict, "logical replication unavailable",
		"the source server cannot stream this tenant's changes (wal_level, replication privilege, free slots, or a table without a primary key); move with mode lock", false},

	// Modules (internal/modules) and schemas (internal/schemaapply).
	"invalid_module":       {fiber.StatusBadRequest, "invalid module", "", false},
	"module_not_found":     {fiber.StatusNotFound, "module not found", "", false},
	"module_exists":        {fiber.StatusConflict, "module already exists", "", false},
	"module_installed":     {fiber.StatusConflict, "module already installed", "", false},
	"module_not_installed": {fiber.StatusNotFound, "module not installed", "", false},
	"module_has_data":      {fiber.StatusConflict, "module tables hold data", "", false},
	"module_required":      {fiber.StatusConflict, "module needs another module", "", false},
	"module_in_use":        {fiber.StatusConflict, "module needed by another module", "", false},
	"destructive_change":   {fiber.StatusConflict, "destructive schema change refused", "", false},

	// Tenant archives (internal/transfer, provision.Restore).
	"invalid_archive":            {fiber.StatusBadRequest, "invalid tenant archive", "", false},
	"archive_schema_unreachable": {fiber.StatusUnprocessableEntity, "the archive's schema cannot be reached here", "", false},
	"restore_unsupported":        {fiber.StatusNotImplemented, "import not supported by this configuration", "", false},

	// Geography, tokens, cursors.
	"unit_not_found":  {fiber.StatusNotFound, "geography unit not found", "", false},
	"invalid_query":   {fiber.StatusBadRequest, "invalid geography query", "", false},
	"invalid_import":  {fiber.StatusBadRequest, "invalid geography import", "", false},
	"unauthorized":    {fiber.StatusUnauthorized, "unauthorized", "", false},
	"token_not_found": {fiber.StatusNotFound, "token not found", "", false},
	"invalid_token":   {fiber.StatusBadRequest, "invalid token request", "", false},
	"invalid_cursor":  {fiber.StatusBadRequest, "invalid cursor", "", false},

	// The audit trail (internal/audit).
	"invalid_audit_query": {fiber.StatusBadRequest, "invalid audit query", "", false},

	// Membership and DigitalCard.
	"member_not_found":   {fiber.StatusNotFound, "member not found", "", false},
	"member_has_cards":   {fiber.StatusConflict, "member has cards", "", false},
	"email_taken":        {fiber.StatusConflict, "email already used", "", false},
	"unknown_geo_unit":   {fiber.StatusBadRequest, "unknown geography unit", "", false},
	"invalid_member":     {fiber.StatusBadRequest, "invalid member", "", false},
	"card_not_found":     {fiber.StatusNotFound, "card not found", "", false},
	"member_not_active":  {fiber.StatusConflict, "member not active", "", false},
	"illegal_transition": {fiber.StatusConflict, "illegal card transition", "", false},
	"invalid_card":       {fiber.StatusBadRequest, "invalid card", "", false},
	"member_in_use":      {fiber.StatusConflict, "member in use", "", false},

	// Elections.
	"election_not_found":          {fiber.StatusNotFound, "election not found", "", false},
	"position_not_found":          {fiber.StatusNotFound, "position not found", "", false},
	"candidate_not_found":         {fiber.StatusNotFound, "candidate not found", "", false},
	"invalid_election":            {fiber.StatusBadRequest, "invalid election", "", false},
	"invalid_ballot":              {fiber.StatusBadRequest, "invalid ballot", "", false},
	"election_locked":             {fiber.StatusConflict, "election no longer a draft", "", false},
	"illegal_election_transition": {fiber.StatusConflict, "illegal election transition", "", false},
	"election_not_open":           {fiber.StatusConflict, "election not open", "", false},
	"outside_voting_window":       {fiber.StatusConflict, "outside the voting window", "", false},
	"not_eligible":                {fiber.StatusForbidden, "member not eligible", "", false},
	"already_voted":               {fiber.StatusConflict, "already voted", "", false},
	"candidate_exists":            {fiber.StatusConflict, "candidate exists", "", false},
	"results_not_available":       {fiber.StatusConflict, "results not available", "", false},
	"results_not_published":       {fiber.StatusForbidden, "results not published", "", false},

	// The tenant router (internal/pgroute): fixed texts.
	"tenant_unavailable": {fiber.StatusServiceUnavailable, "tenant unavailable",
		"the tenant's data is not reachable right now; retry shortly", true},
	"retry": {fiber.StatusServiceUnavailable, "try again",
		"the tenant's data is busy (it may be moving); retry shortly", true},
	"timeout": {fiber.StatusServiceUnavailable, "timeout",
		"the request ran out of time (the database may be busy or restarting, or the tenant moving); retry shortly", true},
	"unavailable": {fiber.StatusServiceUnavailable, "database unavailable",
		"the database is not reachable right now; retry shortly", true},
	"conflict":     {fiber.StatusConflict, "conflict", "the change conflicts with existing data", false},
	"referenced":   {fiber.StatusConflict, "conflict", "the change would break a reference between records", false},
	"invalid_data": {fiber.StatusBadRequest, "invalid data", "a value was refused: out of range, or holding a NUL character", false},
	// pgroute.ErrPermission and ErrSessionStatement are bugs: 500, logged.
}

// retryAfterSeconds is the Retry-After of every retryable answer: a move's
// write pause, a provisioning and a pooler's reconnect all last about a second.
const retryAfterSeconds = "1"

// problemOf turns an error into the problem to answer, and whether its
// cause must be logged (every 5xx). Unknown errors become a 500 without
// internal text.
func problemOf(err error) (*Problem, bool) {
	var p *Problem
	var fe *fiber.Error
	switch {
	case errors.As(err, &p):
		cp := *p
		return &cp, cp.Status >= fiber.StatusInternalServerError
	case errors.As(err, &fe):
		return fiberProblem(fe), false
	}
	code := apperr.CodeOf(err)
	if code == "" {
		if k := outage(err); k != nil {
			code = k.Code()
		}
	}
	a, ok := answers[code]
	if !ok {
		p = problem(fiber.StatusInternalServerError, "internal error", "an unexpected error occurred; quote the request id when reporting it")
		p.Code = "internal"
		return p, true
	}
	p = &Problem{Type: "about:blank", Title: a.title, Status: a.status, Code: code, Detail: a.detail, retry: a.retry}
	if p.Detail == "" {
		p.Detail = err.Error()
	}
	return p, a.status >= fiber.StatusInternalServerError
}

// fiberProblem answers an error of Fiber's: a route or method that does not
// exist, or a request that fasthttp refused while reading it (its texts
// may quote the request: never shown).
func fiberProblem(fe *fiber.Error) *Problem {
	p := problem(fe.Code, statusTitle(fe.Code), fe.Message)
	switch fe.Code {
	case fiber.StatusRequestEntityTooLarge:
		p.Detail, p.Code = "request body too large", "body_too_large"
	case fiber.StatusNotFound:
		p.Detail, p.Code = "no such route", "route_not_found"
	case fiber.StatusMethodNotAllowed:
		p.Code = "method_not_allowed"
	case fiber.StatusRequestHeaderFieldsTooLarge:
		p.Detail = fmt.Sprintf("the request line and headers must fit in %d bytes", ReadBufferSize)
		p.Code, p.noInstance = "header_too_large", true
	case fiber.StatusRequestTimeout:
		p.Detail = "the request was not received in time"
		p.Code, p.noInstance = "request_timeout", true
	default:
		// fasthttp could not read the request (malformed request line or
		// headers); its message quotes the request.
		p = problem(fiber.StatusBadRequest, "bad request", "malformed HTTP request")
		p.Code, p.noInstance = "bad_request", true
	}
	return p
}

// outage returns the kind of an error that no service classified but that
// says the database is out of reach (ErrUnavailable) or the request ran out
// of time (ErrTimeout): the landlord queries of tokens, the catalog and
// geography, the admin connection and every pool acquisition return pgx's
// own errors, and a request's deadline (see deadline) ends any of them. nil
// for any other error: a bug, answered 500 and logged.
func outage(err error) *apperr.Kind {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return pgroute.ErrTimeout
	}
	switch k := apperr.KindOf(pgroute.Classify(err)); k {
	case pgroute.ErrUnavailable, pgroute.ErrTimeout:
		return k
	}
	return nil
}

// errorHandler is the only place errors become HTTP answers
// (application/problem+json); see answers.
func errorHandler(log zerolog.Logger) fiber.ErrorHandler {
	return func(c *fiber.Ctx, err error) error {
		if requestIDOf(c) == "" {
			// Errors raised before the middleware ran (e.g. body too large).
			setRequestID(c, newRequestID())
		}
		p, logCause := problemOf(err)
		if logCause {
			ev := log.Error()
			if p.Status == fiber.StatusServiceUnavailable {
				ev = log.Warn()
			}
			if t, ok := pgroute.TenantFromContext(c.UserContext()); ok {
				ev = ev.Str("tenant", t.Slug.String())
			}
			ev.Err(err).Str("request_id", requestIDOf(c)).Str("path", truncatePath(c.Path())).Str("code", p.Code).
				Int("status", p.Status).Msg("request failed")
		}
		if !p.noInstance {
			p.Instance = c.Path()
		}
		p.RequestID = requestIDOf(c)
		if p.Status == fiber.StatusUnauthorized {
			c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="publicdigit"`)
		}
		if p.retry {
			after := retryAfterSeconds
			if p.retryAfter > 0 {
				after = strconv.Itoa(p.retryAfter)
			}
			c.Set(fiber.HeaderRetryAfter, after)
		}
		c.Status(p.Status)
		return c.JSON(p, "application/problem+json")
	}
}

// withDetail is an error of a kind with a detail written for clients in
// place of the kind's own text.
type withDetail struct {
	kind   *apperr.Kind
	detail string
}

func (e *withDetail) Error() string { return e.detail }
func (e *withDetail) Unwrap() error { return e.kind }

// detailed returns an error of kind k whose text is detail.
func detailed(k *apperr.Kind, format string, args ...any) error {
	return &withDetail{kind: k, detail: fmt.Sprintf(format, args...)}
}
