package httpapi

import (
	"github.com/gofiber/fiber/v2"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/geography"
	"github.com/publicdigit/publicdigit/internal/registry"
	"github.com/publicdigit/publicdigit/internal/tenancy"
	"github.com/publicdigit/publicdigit/internal/tenancy/move"
)

// platformErrors map the platform's sentinel errors; the first match wins.
var platformErrors = []ErrorMapping{
	{tenancy.ErrInvalidSlug, fiber.StatusBadRequest, "invalid tenant slug", "invalid_slug"},
	{tenancy.ErrInvalidTenant, fiber.StatusBadRequest, "invalid tenant request", "invalid_tenant"},
	{tenancy.ErrTenantNotFound, fiber.StatusNotFound, "tenant not found", "tenant_not_found"},
	{move.ErrSamePlacement, fiber.StatusConflict, "tenant already on that placement", "same_placement"},
	{move.ErrAlreadyMoving, fiber.StatusConflict, "tenant already moving elsewhere", "already_moving"},
	{move.ErrVerify, fiber.StatusInternalServerError, "move failed verification; the tenant stays on its source", "move_verify_failed"},
	{tenancy.ErrTenantExists, fiber.StatusConflict, "tenant already exists", "tenant_exists"},
	{tenancy.ErrWrongStatus, fiber.StatusConflict, "not allowed in the tenant's status", "wrong_tenant_status"},
	{registry.ErrInvalidModule, fiber.StatusBadRequest, "invalid module", "invalid_module"},
	{registry.ErrModuleNotFound, fiber.StatusNotFound, "module not found", "module_not_found"},
	{registry.ErrModuleExists, fiber.StatusConflict, "module already exists", "module_exists"},
	{registry.ErrAlreadyInstalled, fiber.StatusConflict, "module already installed", "module_installed"},
	{registry.ErrNotInstalled, fiber.StatusNotFound, "module not installed", "module_not_installed"},
	{registry.ErrModuleHasData, fiber.StatusConflict, "module tables hold data", "module_has_data"},
	{geography.ErrUnitNotFound, fiber.StatusNotFound, "geography unit not found", "unit_not_found"},
	{geography.ErrInvalidQuery, fiber.StatusBadRequest, "invalid geography query", "invalid_query"},
	{geography.ErrInvalidImport, fiber.StatusBadRequest, "invalid geography import", "invalid_import"},
	{access.ErrUnauthenticated, fiber.StatusUnauthorized, "unauthorized", "unauthorized"},
	{access.ErrTokenNotFound, fiber.StatusNotFound, "token not found", "token_not_found"},
	{access.ErrInvalidToken, fiber.StatusBadRequest, "invalid token request", "invalid_token"},
}
