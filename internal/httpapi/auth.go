package httpapi

import (
	"context"
	"errors"
	"math"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/audit"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

const localPrincipal = "principal"

// Auth is the bearer-token middleware.
type Auth struct {
	tokens *access.Service
	// failures limits failed authentications per client address (nil: no limit).
	failures *failureLimiter
	// timeout bounds a token lookup, also under a platform route's longer deadline.
	timeout time.Duration
}

// Required authenticates the request's bearer token (Authorization: Bearer
// <token>) and stores the principal (PrincipalOf); a missing, malformed,
// unknown, revoked or expired token is answered 401.
func (a Auth) Required() fiber.Handler {
	return func(c *fiber.Ctx) error {
		if err := a.authenticate(c); err != nil {
			return err
		}
		return c.Next()
	}
}

// Platform is Required plus: the token must be a platform token (else 403).
func (a Auth) Platform() fiber.Handler {
	return func(c *fiber.Ctx) error {
		if err := a.authenticate(c); err != nil {
			return err
		}
		p, _ := PrincipalOf(c)
		if !p.IsPlatform() {
			return forbidden("this route needs a platform token")
		}
		// Platform actions are recorded in the audit trail with their token.
		c.SetUserContext(audit.WithActor(c.UserContext(), audit.TokenActor(p.TokenID)))
		return c.Next()
	}
}

func (a Auth) authenticate(c *fiber.Ctx) error {
	if _, ok := PrincipalOf(c); ok {
		return nil // already authenticated by an outer group
	}
	h := c.Get(fiber.HeaderAuthorization)
	if h == "" {
		return unauthorized("missing bearer token (Authorization: Bearer <token>)")
	}
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return unauthorized("the Authorization header must be: Bearer <token>")
	}
	if a.tokens == nil {
		return unauthorized("invalid or revoked token")
	}
	token = strings.TrimSpace(token)
	p, ok := a.tokens.Cached(token)
	if !ok {
		addr := c.IP()
		if wait, blocked := a.failures.blocked(addr); blocked {
			return tooManyFailures(wait)
		}
		// The principal holds nothing borrowed from the request's buffers.
		ctx, cancel := context.WithTimeout(c.UserContext(), a.timeout)
		defer cancel()
		var err error
		p, err = a.tokens.Authenticate(ctx, token)
		if errors.Is(err, access.ErrUnauthenticated) {
			a.failures.fail(addr)
			return unauthorized("invalid or revoked token")
		}
		if err != nil {
			return err
		}
	}
	if p.Kind == access.KindTenant && p.TenantStatus == tenant.StatusSuspended {
		return detailed(tenant.ErrSuspended, "the token's tenant is suspended")
	}
	c.Locals(localPrincipal, p)
	return nil
}

// tooManyFailures answers an address that failed to authenticate too often:
// 429 until its window ends.
func tooManyFailures(wait time.Duration) *Problem {
	p := problem(fiber.StatusTooManyRequests, "too many failed authentications",
		"too many requests with invalid tokens from this address; retry later")
	p.Code = "too_many_auth_failures"
	p.retry = true
	p.retryAfter = int(math.Ceil(wait.Seconds()))
	return p
}

// PrincipalOf returns the authenticated principal of the request.
func PrincipalOf(c *fiber.Ctx) (access.Principal, bool) {
	p, ok := c.Locals(localPrincipal).(access.Principal)
	return p, ok
}

func unauthorized(detail string) *Problem {
	p := problem(fiber.StatusUnauthorized, "unauthorized", detail)
	p.Code = "unauthorized"
	return p
}

func forbidden(detail string) *Problem {
	p := problem(fiber.StatusForbidden, "forbidden", detail)
	p.Code = "forbidden"
	return p
}

// Forbidden is a 403 problem with the given detail (e.g. a tenant token on
// another tenant, or a suspended tenant).
func Forbidden(detail string) *Problem { return forbidden(detail) }
