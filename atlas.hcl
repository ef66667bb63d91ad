# atlas.hcl — for DBAs who have the atlas CLI. `tenantctl schema …` does the
# same in-process without it (README, "Tenant schemas"; docs/OPERATIONS.md).
#
# DANGER: every URL in this file is scoped to ONE schema with search_path. A
# URL without a schema scope makes `atlas schema apply` diff the whole
# database and DROP EVERY OTHER TENANT'S SCHEMA. Never add an unscoped URL:
# internal/schemaapply/atlashcl_test.go fails the build if one appears.
#
# Two envs, one schema each. The community CLI's `schema` commands (apply,
# inspect, diff) take exactly one env; an env with for_each (one env per
# tenant) is refused by them ("multiple envs found") and is looped over only
# by `migrate apply`, which this project does not use (no migration folder):
# so there is no all-tenants env here. For every tenant, loop in the shell
# (docs/OPERATIONS.md, "The atlas CLI").
#
#   atlas schema apply   --env landlord
#   atlas schema inspect --env landlord
#   atlas schema apply   --env tenant --var tenant=tenant_acme
#   atlas schema apply   --env tenant --var tenant=tenant_acme --var modules=modules/digital_cards.hcl --var modules=modules/elections.hcl
#   atlas schema inspect --env tenant --var tenant=tenant_acme
#
# --var tenant is the tenant's schema name, tenant_<slug> (`tenantctl tenant list`:
# SCHEMA); the same value binds `variable "tenant"` in schema/tenant/core.hcl.
# --var modules lists the schema files of the tenant's installed modules, relative to
# schema/tenant/ (`tenantctl tenant show <slug>`: modules; files modules/<name>.hcl).
#
# Extensions (ltree, btree_gin), the tenant role and grants are not expressible
# here: `tenantctl db init` / `tenantctl schema apply` create them.

variable "url" {
  type        = string
  description = "direct admin connection (never PgBouncer) to the platform database, without search_path"
  default     = "postgres://pd_admin@127.0.0.1:15432/publicdigit?sslmode=disable"
}

variable "dev_url" {
  type        = string
  description = "an empty scratch database with the ltree and btree_gin extensions, for normalization"
  default     = "postgres://pd_admin@127.0.0.1:15432/publicdigit_atlas_dev?sslmode=disable"
}

variable "tenant" {
  type        = string
  description = "the tenant schema, tenant_<slug>; required by --env tenant"
  default     = ""
}

variable "modules" {
  type        = list(string)
  description = "schema files of the tenant's modules, relative to schema/tenant/"
  default     = []
}

locals {
  # The dev database is scoped too: Atlas normalizes a scoped schema in the
  # dev URL's own (empty) schema.
  dev = urlqueryset(var.dev_url, "search_path", "public")
  # Without --var tenant, a name that matches no schema: never an unscoped URL
  # (and core.hcl itself then stops with "missing value for required variable").
  tenant = var.tenant != "" ? var.tenant : "tenant_unset"
  tenant_src = tolist(concat(
    ["file://schema/tenant/core.hcl"],
    [for m in var.modules : "file://schema/tenant/${m}"],
  ))
}

# The landlord catalog: schema "landlord" of the platform database.
env "landlord" {
  url = urlqueryset(var.url, "search_path", "landlord")
  dev = local.dev
  src = "file://schema/landlord.hcl"
}

# One tenant: --var tenant=tenant_<slug> [--var modules=modules/<name>.hcl …].
env "tenant" {
  url = urlqueryset(var.url, "search_path", local.tenant)
  dev = local.dev
  src = local.tenant_src
}
