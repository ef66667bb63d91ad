# One tenant's schema: identical in every tenant_<slug> schema, so a statement
# planned for one tenant is valid for all. Bind the schema name with the
# "tenant" variable: in-process by tenantctl / the applier, or with the atlas
# CLI as `--var tenant=tenant_<slug>`. Module files (modules/*.hcl) add their
# tables to the same schema.
#
# The core is Membership only: DigitalCard (modules/digital_cards.hcl) and
# Elections (modules/elections.hcl) are modules a tenant installs.
#
# Rules: every table carries tenant_id and every read checks it; status
# columns are text with a CHECK (no per-tenant enum types); foreign keys stay
# inside the tenant schema; landlord data (geography) is referenced by id
# only. A changed CHECK expression is not detected by Atlas: rename it (_v2).
# No schema-level attributes (the CLI's scoped apply refuses them).

variable "tenant" {
  type = string
}

schema "tenant" {
  name = var.tenant
}

# Membership.
table "members" {
  schema = schema.tenant
  column "id" {
    type    = uuid
    default = sql("gen_random_uuid()")
  }
  column "tenant_id" {
    type = uuid
  }
  column "full_name" {
    type = text
  }
  column "email" {
    type = text
    null = true
  }
  column "phone" {
    type = text
    null = true
  }
  column "status" {
    type    = text
    default = "active"
  }
  # A landlord geo_administrative_units id; validated by the API, no FK across schemas.
  column "geo_unit_id" {
    type = bigint
    null = true
  }
  column "joined_at" {
    type    = timestamptz
    default = sql("now()")
  }
  column "created_at" {
    type    = timestamptz
    default = sql("now()")
  }
  column "updated_at" {
    type    = timestamptz
    default = sql("now()")
  }
  primary_key {
    columns = [column.id]
  }
  index "members_tenant_status_idx" {
    columns = [column.tenant_id, column.status, column.id]
  }
  index "members_tenant_geo_idx" {
    columns = [column.tenant_id, column.geo_unit_id, column.id]
  }
  index "members_tenant_email_key" {
    unique  = true
    columns = [column.tenant_id, column.email]
    where   = "email IS NOT NULL"
  }
  check "members_status_check" {
    expr = "status IN ('active', 'inactive', 'suspended')"
  }
}
