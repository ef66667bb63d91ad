# atlas.hcl — for DBAs who have the atlas CLI. `tenantctl schema …` does the
# same in-process without it (README, "Tenant schemas").
#
# DANGER: every URL in this file is scoped to ONE schema with search_path. A
# URL without a schema scope makes `atlas schema apply` diff the whole
# database and DROP EVERY OTHER TENANT'S SCHEMA. Never add an unscoped URL:
# internal/schemaapply/atlashcl_test.go fails the build if one appears.
#
#   atlas schema apply --env landlord
#   atlas schema apply --env tenant --var tenant=tenant_acme
#   atlas schema apply --env tenant --var tenant=tenant_acme \
#       --var modules=modules/events.hcl --var modules=modules/donations.hcl
#   atlas schema inspect --env tenants        (one env per tenant of the catalog)
#
# --var tenant is the tenant's schema name, tenant_<slug> (landlord.tenants.schema_name);
# the same value binds `variable "tenant"` in schema/tenant/core.hcl.
# --var modules lists the schema files of the tenant's installed modules, relative to
# schema/tenant/ (landlord.modules.schema_files).
# The community CLI refuses `schema apply` on a multi-env such as "tenants": apply
# one tenant per call, in a shell loop (README).
#
# Extensions (ltree, btree_gin), the tenant role and grants are not expressible
# here: `tenantctl db init` / `tenantctl schema apply` create them.

variable "url" {
  type        = string
  description = "direct admin connection (never PgBouncer) to the platform database, without search_path"
  default     = "postgres://pd_admin:pd_admin_dev@127.0.0.1:15432/publicdigit?sslmode=disable"
}

variable "dev_url" {
  type        = string
  description = "an empty scratch database with the ltree and btree_gin extensions, for normalization"
  default     = "postgres://pd_admin:pd_admin_dev@127.0.0.1:15432/publicdigit_atlas_dev?sslmode=disable"
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

# The tenants of the landlord catalog (schema placement, not deleted). The
# query reads the catalog only once it exists (query_to_xml runs it late), so
# that `--env landlord` still works on a database that has no catalog yet.
data "sql" "tenants" {
  url   = urlqueryset(var.url, "search_path", "landlord")
  query = <<-SQL
    SELECT (xpath('/row/s/text()', r))[1]::text
    FROM unnest(xpath('/table/row',
      CASE WHEN to_regclass('landlord.tenants') IS NULL THEN '<table/>'::xml
      ELSE query_to_xml('SELECT schema_name AS s FROM landlord.tenants
                          WHERE deleted_at IS NULL AND status <> ''deleted'' AND placement = ''schema''
                          ORDER BY schema_name', false, false, '')
      END)) AS r
  SQL
}

# One env per catalog tenant, each scoped to its schema. Its src is the core
# only: modules differ per tenant, so use the "tenant" env with --var modules
# to apply one. Multi-env commands (inspect, migrate-based workflows) loop here.
env "tenants" {
  for_each = toset(data.sql.tenants.values)
  url      = urlqueryset(var.url, "search_path", each.value)
  dev      = local.dev
  src      = "file://schema/tenant/core.hcl"
}
